"""Stripe webhook processing latency (seed §9.3) and throughput, against a same-process baseline.

    .venv/bin/letsbe-devstack run -- .venv/bin/python bench/stripe_webhook.py [--write] [--orders 300]

The hub runs in-process (its orders workers and outbox relay included) on a fresh database; requests go through
the ASGI app (no sockets), so what is measured is the hub's own work. One webhook = verify the Stripe signature,
store the event id, confirm the order (two compare-and-set transitions with history), stage order-created and two
order-status-changed events, commit. The baseline is GET /readyz, one Postgres round trip through the same app.
Reported: p50/p95 latency of both sequentially and the ratio, then events/s with 1 and 8 concurrent senders.
With --write the results are appended to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "services/hub-api/tests/support"))  # hub_testing: the hub's test support


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[max(0, int(len(values) * p) - 1)] * 1000


async def _orders(client, fake, n: int, auth: dict) -> list[dict]:
    out = []
    for i in range(n):
        body = {
            "customer_name": "Bench",
            "customer_email": "bench@example.com",
            "domain": f"bench-{i}-{uuid.uuid4().hex[:6]}.example",
            "tier": "build",
            "region": "eu",
            "tools": ["nextcloud", "ghost"],
        }
        r = await client.post("/api/v1/admin/orders", json=body, headers=auth)
        assert r.status_code == 201, r.text
        out.append(fake.complete(r.json()["checkout_session_id"]))
    return out


async def main(args: argparse.Namespace) -> dict[str, float]:
    import logging

    import asyncpg
    import httpx
    from asgi_lifespan import LifespanManager

    from hub_testing import hub_app
    from hub_testing.orders import RunningStripe, orders_settings, token
    from letsbe_fakes import LoopbackServer
    from letsbe_fakes.stripe import StripeFake
    from letsbe_hub.auth.scopes import Scope
    from letsbe_hub.orders import wiring
    from letsbe_platform import migrations
    from letsbe_platform.db import make_engine, make_session_factory, plain_url

    logging.disable(logging.INFO)
    admin = plain_url(os.environ["DATABASE_URL"]).rsplit("/", 1)[0] + "/postgres"
    name = f"bench_webhook_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = admin.rsplit("/", 1)[0] + "/" + name
    ns = f"bench{uuid.uuid4().hex[:8]}"
    fake = StripeFake(webhook_secret="whsec_bench")
    try:
        await migrations.upgrade_async(url, ["hub"])
        engine = make_engine(url, pool_size=2)
        auth = {"Authorization": f"Bearer {await token(make_session_factory(engine), [Scope.ORDERS_WRITE])}"}
        await engine.dispose()
        with LoopbackServer(fake.app) as srv:
            settings = orders_settings(
                url, os.environ["NATS_URL"], ns, RunningStripe(fake, srv.url), None, stripe_webhook_secret="whsec_bench"
            )
            app = hub_app(settings, workers=wiring.start)
            async with (
                LifespanManager(app) as m,
                httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://hub") as client,
            ):
                events = await _orders(client, fake, args.orders * 3 + 20, auth)

                async def post(event: dict) -> float:
                    body, headers = fake.signed(event)
                    t = time.perf_counter()
                    r = await client.post("/api/v1/public/stripe/webhook", content=body, headers=headers)
                    elapsed = time.perf_counter() - t
                    assert r.status_code == 200 and r.json()["outcome"] == "confirmed", r.text
                    return elapsed

                async def ready() -> float:
                    t = time.perf_counter()
                    assert (await client.get("/readyz")).status_code == 200
                    return time.perf_counter() - t

                for e in events[:20]:  # warm-up: pools, statement caches
                    await post(e)
                    await ready()
                events = events[20:]
                base = [await ready() for _ in range(args.orders)]
                seq = [await post(e) for e in events[: args.orders]]

                async def throughput(batch: list[dict], senders: int) -> float:
                    queue = list(batch)

                    async def sender() -> None:
                        while queue:
                            await post(queue.pop())

                    t = time.perf_counter()
                    await asyncio.gather(*(sender() for _ in range(senders)))
                    return len(batch) / (time.perf_counter() - t)

                one = await throughput(events[args.orders : args.orders * 2], 1)
                eight = await throughput(events[args.orders * 2 :], 8)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    return {
        "base_p50": statistics.median(base) * 1000,
        "base_p95": _pct(base, 0.95),
        "p50": statistics.median(seq) * 1000,
        "p95": _pct(seq, 0.95),
        "one": one,
        "eight": eight,
        "n": args.orders,
        "load": os.getloadavg()[0],
    }


def report(r: dict[str, float]) -> str:
    return f"""

## Hub: Stripe webhook processing latency (`bench/stripe_webhook.py`)

Run: `.venv/bin/letsbe-devstack run -- .venv/bin/python bench/stripe_webhook.py --write` on {os.cpu_count()} cores,
embedded Postgres 16 and NATS (devstack) on the same machine, the hub in-process (ASGI, no sockets) with its
orders workers and outbox relay running. One webhook = verify the signature, store the event id, confirm the
order (2 compare-and-set transitions + history), stage order-created + 2 order-status-changed events, commit.
Baseline = `GET /readyz` (one Postgres round trip) through the same app, same process. {int(r["n"])} requests each.
Load average during the run: {r["load"]:.1f} (other work on the machine inflates both columns).

| | p50 | p95 | p50 vs baseline |
|---|---|---|---|
| baseline `GET /readyz` | {r["base_p50"]:.1f} ms | {r["base_p95"]:.1f} ms | 1.00x |
| `checkout.session.completed` | {r["p50"]:.1f} ms | {r["p95"]:.1f} ms | {r["p50"] / r["base_p50"]:.2f}x |

Throughput: {r["one"]:.0f} events/s with one sender, {r["eight"]:.0f} events/s with 8 concurrent senders
({r["eight"] / r["one"]:.2f}x). The webhook is about 17 SQL round trips in one transaction (event-id claim, order
look-up under its stream lock, two audited compare-and-set transitions, three outbox rows, notifications), so the
ratio is roughly the round-trip count; signature check and parsing are ~0.5 ms. Stripe waits up to 20 s for an
answer and sends orders, not floods, so the margin is large; `hub_stripe_webhook_duration_seconds` tracks the
same span in production.
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--write", action="store_true")
    a = parser.parse_args()
    if not (os.environ.get("DATABASE_URL") and os.environ.get("NATS_URL")):
        sys.exit("DATABASE_URL / NATS_URL are not set: run under `letsbe-devstack run --`")
    res = asyncio.run(main(a))
    text = report(res)
    print(text)
    if a.write:
        with open(REPO / "docs/benchmarks.md", "a") as fh:
            fh.write(text)
