"""Lifecycle jobs end to end in the hub: real Postgres, the Hetzner fake over HTTP, an injected clock.

What is not run here: stopping the agents' containers and a final backup *on the server* (the hub holds no SSH
key; that part needs the provisioner's SSH path and the real test VPS). Decommission revokes the agents'
credentials at once (they can no longer act through the hub) and keeps the server untouched for the export window.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy import select, update

from hub_testing import hub_app
from hub_testing.servers import HETZNER_TOKEN, hub_settings, staged, token
from hub_testing.tenants import enroll
from letsbe_contracts import Region, Tier
from letsbe_contracts.events import AlertRaisedV1, AlertResolvedV1, LifecycleJobChangedV1
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_hub.lifecycle import endpoints as lifecycle_endpoints
from letsbe_hub.lifecycle import service
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.worker import JobRunner, build_providers
from letsbe_hub.servers.models import Server
from letsbe_hub.tenants import endpoints as tenant_endpoints
from letsbe_hub.tenants.models import Tenant
from letsbe_platform.db import unit_of_work


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings(database_url: str, fake_hetzner: tuple[FakeHetzner, str]):
    return hub_settings(
        database_url,
        hetzner_api_url=fake_hetzner[1],
        hetzner_api_token=HETZNER_TOKEN,
        hetzner_ssh_keys=["letsbe-ops"],
        decommission_export_window_hours=48,
        lifecycle_retry_seconds=1,
        lifecycle_max_attempts=2,
    )


@pytest_asyncio.fixture
async def api(settings):
    app = hub_app(settings, routers=[*tenant_endpoints.routers, *lifecycle_endpoints.routers])
    async with LifespanManager(app) as m:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://hub") as client:
            yield client


@pytest_asyncio.fixture
async def runner(sessions, settings):
    r = JobRunner(sessions, settings, build_providers(settings), clock=Clock(datetime.now(UTC)))
    yield r
    for p in r.providers.values():
        await p.aclose()


async def tenant_on_hetzner(api, admin, sessions, runner) -> tuple[uuid.UUID, Server]:
    """An ACTIVE tenant whose server is a (fake) Hetzner server, IN_USE."""
    agent = await enroll(api, admin)
    alloc = await runner.providers["hetzner"].allocate_server(
        Tier.BUILD, Region.EU, key=f"t-{agent.tenant_id.hex[:12]}"
    )
    async with unit_of_work(sessions) as s:
        server = Server(
            provider="hetzner",
            provider_ref=alloc.provider_ref,
            name=alloc.name,
            tier="build",
            region="eu",
            ipv4=str(alloc.ipv4),
            host_key_fingerprint="SHA256:" + "Q" * 43,
            status="IN_USE",
            order_id=agent.tenant_id,
            tenant_id=agent.tenant_id,
        )
        s.add(server)
        await s.flush()
        await s.execute(update(Tenant).where(Tenant.id == agent.tenant_id).values(server_id=server.id))
    return agent.tenant_id, server


async def job(api, admin, job_id: Any) -> dict[str, Any]:
    r = await api.get(f"/api/v1/admin/lifecycle/jobs/{job_id}", headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


async def drain(runner: JobRunner) -> int:
    n = 0
    while await runner.run_once():
        n += 1
    return n


@pytest_asyncio.fixture
async def admin(sessions):
    return await token(sessions)


# --- decommission -----------------------------------------------------------------------------------------------------


async def test_decommission_deletes_the_hetzner_server_once_after_the_export_window(
    api, admin, sessions, runner, fake_hetzner
):
    fake, _ = fake_hetzner
    tenant_id, server = await tenant_on_hetzner(api, admin, sessions, runner)
    requested = datetime.now(UTC)
    r = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin, json={"reason": "unpaid"})
    again = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    assert r.status_code == again.status_code == 200, r.text
    job_id = r.json()["decommission_job_id"]
    assert job_id and again.json()["decommission_job_id"] == job_id  # one job per tenant

    got = await job(api, admin, job_id)
    assert got["status"] == "EXPORT_WINDOW" and got["kind"] == "decommission"
    window_end = datetime.fromisoformat(got["due_at"])
    assert timedelta(hours=47.9) < window_end - requested < timedelta(hours=48.1)

    # Inside the export window the server (and the data on it) stays.
    runner.clock.now = window_end - timedelta(minutes=1)
    assert await drain(runner) == 0
    assert int(server.provider_ref) in fake.servers and fake.deleted == []

    runner.clock.now = window_end + timedelta(seconds=1)
    assert await drain(runner) == 1
    assert await drain(runner) == 0  # nothing left to do: no second delete
    assert [d["id"] for d in fake.deleted] == [int(server.provider_ref)]

    got = await job(api, admin, job_id)
    assert got["status"] == "SUCCEEDED"
    assert [h["to_status"] for h in got["history"]] == ["EXPORT_WINDOW", "RELEASING_SERVER", "SUCCEEDED"]
    assert "deleted" in got["history"][-1]["reason"]
    async with sessions() as s:
        assert (await s.get(Server, server.id)).status == "RETIRED"
    changes = [e.to_status for _, e in await staged(sessions, LifecycleJobChangedV1)]
    assert changes == ["EXPORT_WINDOW", "RELEASING_SERVER", "SUCCEEDED"]


async def test_a_server_already_gone_at_the_provider_counts_as_released(api, admin, sessions, runner, fake_hetzner):
    fake, _ = fake_hetzner
    tenant_id, server = await tenant_on_hetzner(api, admin, sessions, runner)
    r = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    await runner.providers["hetzner"].deallocate_server(server.provider_ref)  # deleted by hand in the console
    runner.clock.now = datetime.fromisoformat((await job(api, admin, r.json()["decommission_job_id"]))["due_at"])
    assert await drain(runner) == 1
    got = await job(api, admin, r.json()["decommission_job_id"])
    assert got["status"] == "SUCCEEDED" and "already gone" in got["history"][-1]["reason"]
    assert len(fake.deleted) == 1


async def test_a_failing_provider_is_retried_then_the_job_fails_and_an_operator_retry_finishes_it(
    api, admin, sessions, runner, fake_hetzner
):
    fake, _ = fake_hetzner
    tenant_id, server = await tenant_on_hetzner(api, admin, sessions, runner)
    r = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    job_id = r.json()["decommission_job_id"]
    runner.clock.now = datetime.fromisoformat((await job(api, admin, job_id))["due_at"])
    # Every try of the provider client's retries answers 503 (two attempts of the job).
    fake.inject("GET", f"/v1/servers/{server.provider_ref}", 503, times=2 * 3)
    assert await drain(runner) == 1
    first = await job(api, admin, job_id)
    assert first["status"] == "RELEASING_SERVER" and first["attempts"] == 1 and "503" in (first["last_error"] or "")
    runner.clock.now += timedelta(seconds=1.5)
    assert await drain(runner) == 1
    failed = await job(api, admin, job_id)
    assert failed["status"] == "FAILED" and fake.deleted == []

    fake.clear_injections()
    retried = await api.post(f"/api/v1/admin/lifecycle/jobs/{job_id}/retry", headers=admin)
    assert retried.status_code == 200 and retried.json()["status"] == "RELEASING_SERVER"
    assert (await api.post(f"/api/v1/admin/lifecycle/jobs/{job_id}/retry", headers=admin)).status_code == 409
    runner.clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert await drain(runner) == 1
    assert (await job(api, admin, job_id))["status"] == "SUCCEEDED" and len(fake.deleted) == 1


# --- snapshots ----------------------------------------------------------------------------------------------------


def test_slots_are_stable_per_tenant_and_spread_over_the_day():
    day = date(2026, 12, 2)
    tenants = [uuid.uuid4() for _ in range(200)]
    slots = [service.slot_of(t, day) for t in tenants]
    assert all(s.date() == day for s in slots)
    assert [service.slot_of(t, day) for t in tenants] == slots
    assert service.slot_of(tenants[0], date(2026, 12, 3)) - slots[0] == timedelta(days=1)
    hours = {s.hour for s in slots}
    assert len(hours) >= 20  # 200 tenants land in (nearly) every hour, not all at midnight


async def test_daily_snapshots_keep_three_and_delete_the_oldest_after_a_new_one(
    api, admin, sessions, runner, fake_hetzner
):
    fake, _ = fake_hetzner
    tenant_id, server = await tenant_on_hetzner(api, admin, sessions, runner)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for day in range(5):
        midnight = start + timedelta(days=day)
        runner.clock.now = midnight
        async with unit_of_work(sessions) as s:
            await service.plan_snapshots(s, runner.clock.now)
            await service.plan_snapshots(s, runner.clock.now)  # a second replica planning too: one job
        slot = service.slot_of(tenant_id, midnight.date())
        runner.clock.now = slot - timedelta(seconds=1)
        assert await drain(runner) == 0  # not before the tenant's slot
        runner.clock.now = slot
        assert await drain(runner) == 1

    ours = [i for i in fake.images.values() if i["created_from"]["id"] == int(server.provider_ref)]
    assert [i["description"] for i in ours] == [
        service.snapshot_name(tenant_id, (start + timedelta(days=d)).date()) for d in (2, 3, 4)
    ]
    assert len(fake.deleted_images) == 2
    async with sessions() as s:
        jobs = (
            (await s.execute(select(LifecycleJob).where(LifecycleJob.kind == "snapshot").order_by(LifecycleJob.due_at)))
            .scalars()
            .all()
        )
    assert [j.status for j in jobs] == ["PRUNED", "PRUNED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]


async def test_a_failed_snapshot_raises_an_alert_and_the_next_success_resolves_it(
    api, admin, sessions, runner, fake_hetzner
):
    fake, _ = fake_hetzner
    tenant_id, _server = await tenant_on_hetzner(api, admin, sessions, runner)
    midnight = datetime(2030, 2, 1, tzinfo=UTC)
    runner.clock.now = midnight
    async with unit_of_work(sessions) as s:
        await service.plan_snapshots(s, midnight)
    runner.clock.now = service.slot_of(tenant_id, midnight.date())
    fake.inject("POST", r".*/actions/create_image", 503, times=2 * 3)
    assert await drain(runner) == 1
    runner.clock.now += timedelta(seconds=2)
    assert await drain(runner) == 1
    alerts = [e for _, e in await staged(sessions, AlertRaisedV1)]
    assert len(alerts) == 1 and alerts[0].rule == "snapshot.failed" and alerts[0].tenant_id == tenant_id
    fake.clear_injections()

    runner.clock.now = midnight + timedelta(days=1)
    async with unit_of_work(sessions) as s:
        await service.plan_snapshots(s, runner.clock.now)
    runner.clock.now = service.slot_of(tenant_id, runner.clock.now.date())
    assert await drain(runner) == 1
    resolved = [e for _, e in await staged(sessions, AlertResolvedV1)]
    assert [e.alert_id for e in resolved] == [alerts[0].alert_id]


async def test_a_netcup_pool_server_is_drained_not_deleted(api, admin, sessions, runner):
    agent = await enroll(api, admin)
    async with unit_of_work(sessions) as s:
        server = Server(
            provider="netcup",
            provider_ref="4711",
            name="v2202512345",
            tier="build",
            region="eu",
            ipv4="127.0.0.1",
            host_key_fingerprint="SHA256:" + "Q" * 43,
            status="IN_USE",
            order_id=agent.tenant_id,
            tenant_id=agent.tenant_id,
        )
        s.add(server)
    # The tenant row does not name its server here: the job finds the one held for the tenant's order.
    r = await api.post(f"/api/v1/admin/tenants/{agent.tenant_id}/decommission", headers=admin)
    job_id = r.json()["decommission_job_id"]
    assert (await api.post(f"/api/v1/admin/lifecycle/jobs/{job_id}/run-now", headers=admin)).status_code == 200
    runner.clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert await drain(runner) == 1
    got = await job(api, admin, job_id)
    assert got["status"] == "SUCCEEDED" and got["server_id"] == str(server.id)
    assert "drained" in got["history"][-1]["reason"]
    async with sessions() as s:
        assert (await s.get(Server, server.id)).status == "DRAINING"  # out of the pool until wiped and checked


async def test_two_runners_share_the_due_jobs_without_doing_one_twice(api, admin, sessions, settings, fake_hetzner):
    fake, _ = fake_hetzner
    runners = [JobRunner(sessions, settings, build_providers(settings)) for _ in range(2)]
    try:
        servers = [(await tenant_on_hetzner(api, admin, sessions, runners[0]))[1] for _ in range(6)]
        now = datetime.now(UTC)
        async with unit_of_work(sessions) as s:
            for server in servers:
                await service.state.create(
                    s,
                    kind="snapshot",
                    key=service.snapshot_key(server.id, now.date()),
                    tenant_id=server.tenant_id,
                    server_id=server.id,
                    due_at=now,
                    actor="test",
                    data={"day": now.date().isoformat(), "name": service.snapshot_name(server.id, now.date())},
                )

        async def work(r: JobRunner) -> int:
            return await drain(r)

        done = await asyncio.gather(*(work(r) for r in runners))
        assert sum(done) == 6
        assert sum(1 for m, p in fake.requests if m == "POST" and p.endswith("/create_image")) == 6
        assert len(fake.images) == 6
    finally:
        for r in runners:
            for p in r.providers.values():
                await p.aclose()


async def test_a_planned_snapshot_of_a_released_server_is_cancelled_not_failed(
    api, admin, sessions, runner, fake_hetzner
):
    fake, _ = fake_hetzner
    tenant_id, _server = await tenant_on_hetzner(api, admin, sessions, runner)
    midnight = datetime(2030, 3, 1, tzinfo=UTC)
    async with unit_of_work(sessions) as s:
        assert await service.plan_snapshots(s, midnight) == 1
    r = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    assert await api.post(f"/api/v1/admin/lifecycle/jobs/{r.json()['decommission_job_id']}/run-now", headers=admin)
    runner.clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert await drain(runner) == 1  # the server is deleted
    runner.clock.now = service.slot_of(tenant_id, midnight.date())
    assert await drain(runner) == 1
    snaps = (await api.get(f"/api/v1/admin/lifecycle/jobs?tenant_id={tenant_id}&kind=snapshot", headers=admin)).json()
    assert [j["status"] for j in snaps] == ["CANCELLED"]
    assert not any(p.endswith("/create_image") for _, p in fake.requests)
    assert not await staged(sessions, AlertRaisedV1)
