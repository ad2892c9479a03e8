"""Console benchmark: each page's latency with 10,000 tenants and 100,000 orders in the database (target: p95 under
200 ms).

    .venv/bin/letsbe-devstack run -- .venv/bin/python bench/console.py [--write] [--orders 100000] [--tenants 10000]

Seeds the hub's schema with SQL (orders in every state with a transition each, tenants with two agents each,
alerts, approvals, servers, agents' disk/memory, LLM usage and backup reports; one order with a full provisioning
log of 1,000 lines), starts the whole hub in this process (its workers too) and signs an operator in through the
sign-in form. Then each page is fetched ``--requests`` times, one after another, through the app (httpx's ASGI
transport: no network, the page's whole server time: session, account, queries, template). Reported per page:
median, p95 and max. With --write the table goes into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 200.0
MARK = "<!-- console-bench -->"


SEED = [
    "TRUNCATE hub.orders, hub.order_transitions, hub.provisioning_progress, hub.tenants, hub.agents, hub.alerts, "
    "hub.approvals, hub.servers, hub.agent_details, hub.llm_usage, hub.backup_reports CASCADE",
    # Orders over the last year, in every state (most FULFILLED, as in a running business); domains under a few
    # parent domains so a suffix search finds many.
    """INSERT INTO hub.orders (id, customer_name, customer_email, domain, tier, region, tools, automation_mode,
                              status, amount_cents, currency, created_by, created_at, updated_at)
       SELECT gen_random_uuid(), 'Customer ' || i, 'owner' || i || '@example' || (i % 50) || '.com',
              'shop' || i || '.example' || (i % 50) || '.com', 'build', 'eu', '{nextcloud,ghost}', 'AUTO',
              (ARRAY['FULFILLED','FULFILLED','FULFILLED','FULFILLED','FULFILLED','FULFILLED','CANCELLED',
                     'FAILED','PENDING_PAYMENT','PROVISIONING'])[1 + i % 10],
              4900, 'eur', 'operator:bench', now() - (i * interval '5 minutes'), now() - (i * interval '5 minutes')
       FROM generate_series(1, :orders) AS i""",
    """INSERT INTO hub.order_transitions (order_id, from_status, to_status, actor, reason, at)
       SELECT id, NULL, 'PENDING_PAYMENT', 'operator:bench', 'order created', created_at FROM hub.orders""",
    """INSERT INTO hub.tenants (id, order_id, domain, tier, region, status, staging, created_at, updated_at)
       SELECT id, id, domain, tier, region, 'ACTIVE', false, created_at, created_at
       FROM hub.orders WHERE status = 'FULFILLED' ORDER BY created_at DESC LIMIT :tenants""",
    """INSERT INTO hub.agents (id, tenant_id, kind, domain, version, hostname, last_heartbeat_at, last_seq)
       SELECT gen_random_uuid(), t.id, k.kind, t.domain, '1.4.0', 'vps', now() - (random() * interval '2 minutes'), 1
       FROM hub.tenants t CROSS JOIN (VALUES ('safety-wrapper'), ('secrets-proxy')) AS k(kind)""",
    """INSERT INTO hub.alerts (alert_id, tenant_id, rule, severity, status, summary, first_seen, last_seen, count)
       SELECT gen_random_uuid(), id, 'disk.usage', (ARRAY['soft','medium','hard'])[1 + (row_number() OVER ()) % 3],
              (ARRAY['open','resolved'])[1 + (row_number() OVER ()) % 2], 'disk 91 % used', now(), now(), 1
       FROM hub.tenants LIMIT 2000""",
    """INSERT INTO hub.approvals (id, tenant_id, agent_id, tool, action, risk_class, args_hash, args_preview, reasons,
                                 status, expires_at)
       SELECT gen_random_uuid(), id, id, 'ghost', 'posts.delete', 'CRITICAL_RED', md5(id::text) || md5(domain),
              '{"id": "42"}', '{"deletes a post"}', 'PENDING', now() + interval '1 day'
       FROM hub.tenants LIMIT 500""",
    # What the fleet list shows per tenant: the Safety Wrapper's latest disk/memory, LLM tokens metered every hour
    # of the month so far (up to 12 models' worth of rows a day), a backup report for each of the last 30 days.
    """INSERT INTO hub.agent_details (agent_id, tenant_id, details, updated_at)
       SELECT id, tenant_id, jsonb_build_object(
                'disk', jsonb_build_object('path', '/', 'total_bytes', 85899345920, 'used_bytes', 42949672960,
                                           'percent', 50.0),
                'memory', jsonb_build_object('total_bytes', 8589934592, 'available_bytes', 4294967296,
                                             'percent', 50.0)), now()
       FROM hub.agents WHERE kind = 'safety-wrapper'""",
    """INSERT INTO hub.llm_usage (tenant_id, hour, model, tokens_in, tokens_out, requests)
       SELECT t.id, date_trunc('hour', now()) - h * interval '1 hour', 'gpt-4o', 1000, 250, 3
       FROM hub.tenants t CROSS JOIN generate_series(0, 47) AS h""",
    """INSERT INTO hub.backup_reports (tenant_id, report_date, agent_id, checked_at, status, problem)
       SELECT t.id, current_date - d, t.id, now(), NULL, NULL
       FROM hub.tenants t CROSS JOIN generate_series(0, 29) AS d""",
    # The inventory: one server per tenant plus a spare pool.
    """INSERT INTO hub.servers (id, provider, provider_ref, name, tier, region, ipv4, ssh_port, ssh_user,
                               host_key_fingerprint, status, order_id, tenant_id)
       SELECT gen_random_uuid(), 'netcup', 'nc' || row_number() OVER (), 'netcup-' || row_number() OVER (), 'build',
              'eu', '192.0.2.1', 22, 'letsbe', 'SHA256:' || repeat('Q', 43), 'IN_USE', id, id FROM hub.tenants""",
    """INSERT INTO hub.servers (id, provider, provider_ref, name, tier, region, ipv4, ssh_port, ssh_user,
                               host_key_fingerprint, status)
       SELECT gen_random_uuid(), 'netcup', 'spare' || i, 'spare-' || i, 'build', 'eu', '192.0.2.2', 22, 'letsbe',
              'SHA256:' || repeat('Q', 43), 'AVAILABLE' FROM generate_series(1, 20) AS i""",
]


async def seed(sessions, orders: int, tenants: int) -> str:
    """Returns the id of the order with a long provisioning log."""
    from sqlalchemy import text

    async with sessions() as s, s.begin():
        for stmt in SEED:
            await s.execute(text(stmt), {"orders": orders, "tenants": tenants})
        order_id = (await s.execute(text("SELECT id FROM hub.orders ORDER BY created_at DESC LIMIT 1"))).scalar_one()
        await s.execute(text(
            """INSERT INTO hub.provisioning_progress (order_id, job_id, kind, step, dedup_key, payload, at)
               SELECT :o, :o, 'log', 1 + i / 100, 'bench:' || i, jsonb_build_object('seq', i, 'step', 1 + i / 100,
                      'line', 'wrote /opt/letsbe/stacks/file' || i || '.yml'), now()
               FROM generate_series(1, 1000) AS i"""), {"o": order_id})
    async with sessions() as s:
        await s.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        await s.execute(text("VACUUM ANALYZE"))
    return str(order_id)


async def measure(client, path: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        r = await client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[-500:])
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    import httpx
    import pyotp
    from asgi_lifespan import LifespanManager
    from cryptography.fernet import Fernet
    from pydantic import SecretStr
    from sqlalchemy import text

    from letsbe_hub.app import create_app
    from letsbe_hub.auth.scopes import Scope
    from letsbe_hub.config import HubSettings
    from letsbe_hub.operators import service as operators
    from letsbe_platform import migrations
    from letsbe_platform.db import make_engine, make_session_factory

    url = os.environ["DATABASE_URL"]
    await migrations.upgrade_async(url, ["hub"])
    key = Fernet.generate_key().decode()
    settings = HubSettings.model_validate({
        "DATABASE_URL": url, "NATS_URL": os.environ["NATS_URL"], "log_level": "WARNING", "log_json": False,
        "operator_totp_key": key, "public_url": "https://hub",
    })
    engine = make_engine(url, pool_size=2)
    sessions = make_session_factory(engine)
    print(f"seeding {args.orders:,} orders, {args.tenants:,} tenants …", file=sys.stderr)
    order_id = await seed(sessions, args.orders, args.tenants)
    async with sessions() as s, s.begin():
        await s.execute(text("DELETE FROM hub.operators WHERE name = 'bench'"))
        created = await operators.create(s, "bench", "bench password 123", list(Scope), key=SecretStr(key))
    totp = pyotp.TOTP(urllib.parse.parse_qs(urllib.parse.urlparse(created.provisioning_uri).query)["secret"][0])
    async with sessions() as s:
        tenant_id = (await s.execute(text("SELECT id FROM hub.tenants LIMIT 1"))).scalar()
        server_id = (await s.execute(text("SELECT id FROM hub.servers LIMIT 1"))).scalar()
    await engine.dispose()

    app = create_app(settings)
    pages = {
        "overview": "/console/",
        "orders (newest)": "/console/orders",
        "orders, state FAILED": "/console/orders?status=FAILED",
        "orders, domain suffix search": "/console/orders?q=example7.com",
        "orders, email search": "/console/orders?q=owner99999@example49.com",
        "order with 1,000 log lines": f"/console/orders/{order_id}",
        "alerts (open)": "/console/alerts",
        "approvals (pending)": "/console/approvals",
        "rollouts": "/console/rollouts",
        "fleet (tenants)": "/console/tenants",
        "fleet, domain search": "/console/tenants?domain=example7.com",
        "tenant": f"/console/tenants/{tenant_id}",
        "servers": "/console/servers",
        "servers, state AVAILABLE": "/console/servers?status=AVAILABLE",
        "server": f"/console/servers/{server_id}",
        "costs and migrations": "/console/servers/costs",
    }
    rows = []
    async with LifespanManager(app, startup_timeout=60):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://hub") as client:
            r = await client.post("/console/sign-in", headers={"Origin": "https://hub"}, data={
                "name": "bench", "password": "bench password 123", "code": totp.now()})
            assert r.status_code == 303, r.text
            for name, path in pages.items():
                await measure(client, path, 3)  # warm: plans cached, pools filled
                times = sorted(await measure(client, path, args.requests))
                p95 = times[max(0, round(0.95 * len(times)) - 1)]
                rows.append((name, statistics.median(times), p95, times[-1]))
                print(f"{name:32} median {rows[-1][1]:7.1f} ms  p95 {p95:7.1f} ms  max {times[-1]:7.1f} ms",
                      file=sys.stderr)
    load = os.getloadavg()[0]
    table = [
        MARK,
        "## Console: page latency with 10,000 tenants and 100,000 orders (`bench/console.py`)",
        "",
        f"Run: `.venv/bin/letsbe-devstack run -- .venv/bin/python bench/console.py --write` ({args.orders:,} orders, "
        f"{args.tenants:,} tenants with 2 agents each, their disk/memory, 48 hours of LLM usage and 30 backup reports "
        f"each, a server each and 20 spare, 2,000 alerts, 500 pending approvals; {args.requests} requests "
        f"per page one after another, through the ASGI app with the hub's workers running; 2 cores, Python "
        f"{platform.python_version()}, embedded Postgres 16; 1-minute load average {load:.1f} at the end). "
        f"Target: p95 under {TARGET_MS:.0f} ms.",
        "",
        "| page | median | p95 | max | p95 under 200 ms |",
        "|---|---|---|---|---|",
        *[f"| {n} | {m:.1f} ms | {p:.1f} ms | {x:.1f} ms | {'yes' if p < TARGET_MS else '**no**'} |"
          for n, m, p, x in rows],
        "",
        "The rollouts page (an empty list here) is the floor of any page: session and account lookups, the layout. "
        "A run on a shared machine carries its load in every figure: compare against that floor.",
        "",
    ]
    text = "\n".join(table)
    print(text)
    if args.write:
        doc = REPO / "docs" / "benchmarks.md"
        current = doc.read_text()
        # The earlier run's section: the marker, its heading, and everything up to the next section.
        earlier = re.escape(MARK) + r"\n## [^\n]*\n.*?(?=\n<!-- |\n## |\Z)"
        current = re.sub(earlier, "", current, flags=re.S).rstrip() + "\n\n"
        doc.write_text(current + text)


if __name__ == "__main__":
    asyncio.run(main())
