"""Restore, "the VPS is completely lost" and the Hetzner -> Netcup migration, as hub jobs in the sandbox: real
Postgres, the Hetzner fake over HTTP, lifecycle worker processes killed with SIGKILL in the middle (one while the
restore is under way, the next while the old server is being deleted).

What stands in: the tenant side. The jobs ask the provisioner (provision, backup, restore, verify over SSH) and the
DNS service (the switch) by ``TenantTaskRequestedV1`` events; here ``TenantSide`` reads those requests from
the hub's outbox and reports each *request id* done once, as those services do (the restore script itself, with
real data, runs in services/provisioner/tests/rendering/test_restore.py). So "exactly one restore, one DNS
switch" is checked as: one request id asked for per effect, however often the worker (re)asked, and the server
deleted once at the (fake) provider.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager

from hub_testing import hub_app
from hub_testing.orders import insert_order
from hub_testing.servers import FINGERPRINT, HETZNER_TOKEN, add_servers, servers_settings, staged, token
from letsbe_contracts import Region, Tier
from letsbe_contracts.events import TenantTaskReportedV1, TenantTaskRequestedV1
from letsbe_fakes import LoopbackServer
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_hub.lifecycle import endpoints as lifecycle_endpoints
from letsbe_hub.lifecycle import exchange, recovery, state
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.worker import JobRunner, build_providers
from letsbe_hub.orders.models import Order
from letsbe_hub.servers.models import MigrationProposal, Server
from letsbe_hub.tenants.models import BackupReportRow, Tenant
from letsbe_platform.db import unit_of_work
from letsbe_platform.testing import eventually

LEASE = 2.0


class TenantSide:
    """The provisioner's and the DNS service's part: each requested id is done once and reported."""

    def __init__(self, sessions):
        self.sessions = sessions
        self.done: dict[uuid.UUID, TenantTaskRequestedV1] = {}
        self.held: set[str] = set()  # kinds asked for but not answered yet: still under way on the tenant's side

    async def answer(self) -> int:
        n = 0
        for _, req in await staged(self.sessions, TenantTaskRequestedV1):
            if req.request_id in self.done or req.task.kind in self.held:
                continue
            self.done[req.request_id] = req
            now = datetime.now(UTC)
            detail = date.today().isoformat() if req.task.kind in ("backup", "restore") else None
            async with unit_of_work(self.sessions) as s:
                await exchange.on_report(
                    s,
                    TenantTaskReportedV1(
                        request_id=req.request_id, job_id=req.job_id, tenant_id=req.tenant_id, kind=req.task.kind,
                        attempt=req.attempt, status="SUCCEEDED", started_at=now, finished_at=now, detail=detail,
                    ),
                    now,
                )  # fmt: skip
            n += 1
        return n

    def actions(self) -> list[str]:
        return [r.task.kind for r in self.done.values()]


async def tenant_on_hetzner(sessions, provider) -> tuple[uuid.UUID, Server]:
    """An ACTIVE tenant (with its order) on a (fake) Hetzner server, IN_USE."""
    order_id = await insert_order(sessions, status="FULFILLED", tools=["nextcloud", "ghost"])
    alloc = await provider.allocate_server(Tier.BUILD, Region.EU, key=f"t-{order_id.hex[:12]}")
    async with unit_of_work(sessions) as s:
        server = Server(
            provider="hetzner", provider_ref=alloc.provider_ref, name=alloc.name, tier="build", region="eu",
            ipv4=str(alloc.ipv4), host_key_fingerprint=FINGERPRINT, status="IN_USE", order_id=order_id,
            tenant_id=order_id,
        )  # fmt: skip
        s.add(server)
        await s.flush()
        s.add(
            Tenant(id=order_id, order_id=order_id, domain=f"{order_id.hex[:8]}.example.com", tier="build",
                   region="eu", server_id=server.id, status="ACTIVE")
        )  # fmt: skip
    return order_id, server


@pytest.fixture
def slow_hetzner():
    fake = FakeHetzner(HETZNER_TOKEN, action_polls=1)
    with LoopbackServer(fake.app) as srv:
        yield fake, srv.url + "/v1"


@pytest_asyncio.fixture
async def runner(sessions, database_url, slow_hetzner):
    settings = servers_settings(
        database_url,
        hetzner_api_url=slow_hetzner[1],
        hetzner_api_token=HETZNER_TOKEN,
        lifecycle_lease_seconds=LEASE,
        lifecycle_retry_seconds=0.1,
        migration_rollback_window_hours=0,
        provider_action_timeout_seconds=30,
    )
    r = JobRunner(sessions, settings, build_providers(settings))
    yield r
    for p in r.providers.values():
        await p.aclose()


async def job_of(sessions, job_id) -> LifecycleJob:
    async with sessions() as s:
        return await s.get(LifecycleJob, job_id)


async def history(sessions, job_id) -> list[str]:
    from letsbe_hub.lifecycle import repository as repo

    async with sessions() as s:
        return [t.to_status for t in await repo.history(s, job_id)]


async def test_a_restore_asks_once_for_the_chosen_set_and_follows_its_report(sessions, runner):
    """API: the backups as reported, a restore started (bad input refused), its one operation, its end."""
    tenant_id, server = await tenant_on_hetzner(sessions, runner.providers["hetzner"])
    async with unit_of_work(sessions) as s:
        s.add(
            BackupReportRow(tenant_id=tenant_id, report_date=date(2026, 12, 1), agent_id=uuid.uuid4(),
                            checked_at=datetime.now(UTC), status={"databases": {"nextcloud": {"status": "success"}}})
        )  # fmt: skip
    admin = await token(sessions)
    app = hub_app(runner.settings, routers=lifecycle_endpoints.routers)
    async with (
        LifespanManager(app) as m,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://h") as api,
    ):
        base = f"/api/v1/admin/lifecycle/tenants/{tenant_id}"
        r = await api.get(f"{base}/backups", headers=admin)
        assert r.status_code == 200 and [b["backup_set"] for b in r.json()["items"]] == ["2026-12-01"]
        for body, code in [({"backup_set": "yesterday"}, 422), ({"tool": "odoo"}, 409), ({"tool": "NEXT"}, 422)]:
            bad = await api.post(f"{base}/restore", json=body, headers=admin)
            assert bad.status_code == code, bad.text
            assert bad.headers["content-type"] == "application/problem+json"
        r = await api.post(f"{base}/restore", json={"backup_set": "2026-12-01", "tool": "nextcloud"}, headers=admin)
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        busy = await api.post(f"{base}/restore", json={}, headers=admin)
        assert busy.status_code == 409, "one restore of a tenant at a time"

        side = TenantSide(sessions)
        await runner.run_once()
        await runner.run_once()  # asked again while under way: the same operation
        requests = [e.task for _, e in await staged(sessions, TenantTaskRequestedV1)]
        assert [(e.kind, e.backup_set, e.tool, e.server.server_id) for e in requests] == [
            ("restore", "2026-12-01", "nextcloud", server.id)
        ]
        assert await side.answer() == 1
        await eventually(lambda: _ran(runner), "the reported restore finishes the job")
        done = (await api.get(f"/api/v1/admin/lifecycle/jobs/{job_id}", headers=admin)).json()
    assert done["status"] == "SUCCEEDED" and done["data"]["duration_seconds"] is not None
    assert [h["to_status"] for h in done["history"]] == ["RESTORING", "SUCCEEDED"]
    assert "nextcloud restored from" in done["history"][-1]["reason"]


async def _ran(runner) -> bool:
    await runner.run_once()
    async with runner.sessions() as s:
        from sqlalchemy import select

        return (await s.execute(select(LifecycleJob.status))).scalar_one() == "SUCCEEDED"


def worker_process(database_url: str, hetzner_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LETSBE_HUB_HETZNER_API_URL": hetzner_url,
        "LETSBE_HUB_HETZNER_API_TOKEN": HETZNER_TOKEN,
        "LETSBE_HUB_LIFECYCLE_LEASE_SECONDS": str(LEASE),
        "LETSBE_HUB_LIFECYCLE_POLL_SECONDS": "0.1",
        "LETSBE_HUB_PROVIDER_POLL_SECONDS": "0.05",
        "LETSBE_HUB_MIGRATION_ROLLBACK_WINDOW_HOURS": "0",
        "LETSBE_HUB_LOG_JSON": "false",
    }
    return subprocess.Popen([sys.executable, "-m", "letsbe_hub.lifecycle"], env=env)


@pytest.mark.parametrize("kind", ["recover", "migrate"])
async def test_a_worker_killed_mid_job_still_ends_with_one_restore_one_dns_switch_one_server_deleted(
    kind, sessions, database_url, runner, slow_hetzner
):
    fake, url = slow_hetzner
    tenant_id, lost = await tenant_on_hetzner(sessions, runner.providers["hetzner"])
    (pool,) = await add_servers(sessions, 1)  # the Netcup server it moves to
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as s:
        if kind == "recover":
            job, _ = await recovery.start_recovery(s, tenant_id, actor="test", reason=None, now=now)
        else:
            proposal = MigrationProposal(
                id=uuid.uuid4(), period=now.strftime("%Y-%m"), tenant_id=tenant_id, from_server_id=lost.id,
                to_server_id=pool.id, tier="build", region="eu", monthly_saving_eur=Decimal("12.50"),
            )  # fmt: skip
            s.add(proposal)
            await s.flush()
            job, _ = await recovery.start_migration(s, proposal.id, actor="test", now=now)
    side = TenantSide(sessions)
    side.held.add("restore")  # the restore is under way on the new server when the first worker is killed
    fake.action_seconds = 3.0  # the old server's deletion runs 3 s: time to kill the second worker in it

    async def killed_once(what: str, check) -> None:
        proc = worker_process(database_url, url)
        try:

            async def reached() -> bool:
                await side.answer()
                return await check()

            await eventually(reached, what, timeout=60, every=0.1)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    async def restoring() -> bool:
        asked = [e.task.kind for _, e in await staged(sessions, TenantTaskRequestedV1)]
        return "restore" in asked and (await job_of(sessions, job.id)).status == "RESTORING"

    async def deleting() -> bool:
        return len(fake.deleted) == 1

    started = time.monotonic()
    await killed_once("the restore asked for", restoring)
    side.held.clear()
    await killed_once("the worker's delete of the old server", deleting)
    killed = await job_of(sessions, job.id)
    assert killed.status == "RELEASING_OLD" and killed.lease_owner is not None

    async def finished() -> bool:
        await side.answer()
        await runner.run_once()
        return (await job_of(sessions, job.id)).status == state.SUCCEEDED

    await eventually(finished, "the job finished by another worker", timeout=60, every=0.2)
    took = time.monotonic() - started

    done = await job_of(sessions, job.id)
    want = ["provision", "restore", "switch-dns"] if kind == "recover" else [
        "provision", "backup", "restore", "verify", "switch-dns"
    ]  # fmt: skip
    assert side.actions() == want, "each operation asked for once (one id), whatever the worker repeated"
    requests = [e.task for _, e in await staged(sessions, TenantTaskRequestedV1)]
    assert len(requests) == len(want)
    assert {e.server.server_id for e in requests if e.kind != "backup"} == {pool.id}
    assert [d["id"] for d in fake.deleted] == [int(lost.provider_ref)], "the old server deleted once"
    assert sum(1 for m, _ in fake.requests if m == "DELETE") == 1
    async with sessions() as s:
        tenant = await s.get(Tenant, tenant_id)
        assert tenant.server_id == pool.id
        assert (await s.get(Order, tenant.order_id)).server_target["server_id"] == str(pool.id)
        assert (await s.get(Server, pool.id)).status == "IN_USE"
        assert (await s.get(Server, lost.id)).status == "RETIRED"
    steps = await history(sessions, job.id)
    assert steps == [state.FIRST[kind], *{
        "recover": ["PROVISIONING", "RESTORING", "SWITCHING_DNS", "RELEASING_OLD"],
        "migrate": ["BACKING_UP", "RESTORING", "VERIFYING", "SWITCHING_DNS", "ROLLBACK_WINDOW", "RELEASING_OLD"],
    }[kind], "SUCCEEDED"]  # fmt: skip
    assert done.data["duration_seconds"] is not None
    if kind == "migrate":
        assert done.data["downtime_seconds"] is not None and done.data["downtime_seconds"] >= 0
        assert requests[1].kind == "backup" and requests[1].stop_tools and requests[1].server.server_id == lost.id
    print(f"{kind}: {took:.1f}s in the sandbox, workers killed in the restore and in the old server's deletion")


async def test_the_migration_policy_starts_each_proposal_of_the_month_once(sessions, runner):
    tenant_id, source = await tenant_on_hetzner(sessions, runner.providers["hetzner"])
    (netcup,) = await add_servers(sessions, 1)
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as s:
        s.add(
            MigrationProposal(
                id=uuid.uuid4(), period=now.strftime("%Y-%m"), tenant_id=tenant_id, from_server_id=source.id,
                to_server_id=netcup.id, tier="build", region="eu", monthly_saving_eur=Decimal("12.50"),
            )
        )  # fmt: skip
    for expected in (1, 0):  # planned again (another replica, the next tick): nothing new
        async with unit_of_work(sessions) as s:
            assert await recovery.start_proposed_migrations(s, now) == expected
    async with sessions() as s:
        assert (await s.get(Server, netcup.id)).status == "RESERVED"
        from sqlalchemy import select

        jobs = (await s.execute(select(LifecycleJob).where(LifecycleJob.tenant_id == tenant_id))).scalars().all()
    assert [(j.kind, j.status, j.requested_by) for j in jobs] == [("migrate", "PROVISIONING", "migration-policy")]
