"""Lifecycle jobs end to end in the hub: real Postgres, the Hetzner and Netcup fakes over HTTP, an injected clock.

The server tasks of a decommission (final backup, stopping the agents) run on the provisioner, which holds the SSH
key (services/provisioner/tests/jobs/test_server_tasks.py); here the tests deliver its reports to the hub's handler
as the bus would. Decommission revokes the agents' credentials at once (they can no longer act through the hub).
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
from hub_testing.servers import HETZNER_TOKEN, servers_settings, staged, token
from hub_testing.tenants import enroll
from letsbe_contracts import Region, Tier
from letsbe_contracts.events import (
    AlertRaisedV1,
    AlertResolvedV1,
    LifecycleJobChangedV1,
    TenantTaskReportedV1,
    TenantTaskRequestedV1,
)
from letsbe_fakes import LoopbackServer
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_fakes.netcup import FakeNetcup
from letsbe_fakes.ssh_target import SshTarget
from letsbe_hub.lifecycle import endpoints as lifecycle_endpoints
from letsbe_hub.lifecycle import exchange, service, state
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.worker import JobRunner, build_providers
from letsbe_hub.servers.models import Server
from letsbe_hub.tenants import endpoints as tenant_endpoints
from letsbe_hub.tenants.models import Tenant
from letsbe_platform.db import unit_of_work
from letsbe_platform.testing import free_port


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


NETCUP_TOKEN = "netcup-offline-refresh-token"


@pytest.fixture
def fake_netcup():
    fake = FakeNetcup(NETCUP_TOKEN, install_seconds=0.3)
    with LoopbackServer(fake.app) as srv:
        yield fake, srv.url


@pytest.fixture
def settings(database_url: str, fake_hetzner: tuple[FakeHetzner, str], fake_netcup: tuple[FakeNetcup, str]):
    return servers_settings(
        database_url,
        hetzner_api_url=fake_hetzner[1],
        hetzner_api_token=HETZNER_TOKEN,
        hetzner_ssh_keys=["letsbe-ops"],
        netcup_api_url=fake_netcup[1] + "/scp-core",
        netcup_token_url=fake_netcup[1] + "/realms/scp/protocol/openid-connect/token",
        netcup_refresh_token=NETCUP_TOKEN,
        netcup_ssh_key_ids=[7],
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


async def requests(sessions, tenant_id, task: str) -> list[TenantTaskRequestedV1]:
    asked = await staged(sessions, TenantTaskRequestedV1)
    return [e for _, e in asked if (e.tenant_id, e.task.kind) == (tenant_id, task)]


async def deliver(sessions, runner, event: TenantTaskReportedV1) -> bool:
    async with unit_of_work(sessions) as s:
        return await exchange.on_report(s, event, runner.clock.now)


async def provisioner_reports(
    sessions, runner, tenant_id, task: str, status: str = "SUCCEEDED", result: dict | None = None, **extra: Any
) -> bool:
    """What the provisioner sends back for the last request of ``task`` (services/provisioner: server_tasks)."""
    asked = (await requests(sessions, tenant_id, task))[-1]
    default = {"last_run": "2030-01-01T00:00:00Z", "duration_seconds": 12.0, "databases": {},
               "remote_sync": {"status": "success"}} if task == "final-backup" else {"stopped": ["safety-wrapper"]}
    event = TenantTaskReportedV1(
        request_id=asked.request_id,
        job_id=asked.job_id,
        tenant_id=tenant_id,
        kind=task,
        attempt=asked.attempt,
        status=status,
        result=result if result is not None else default,
        **extra,
    )
    return await deliver(sessions, runner, event)


async def through_the_server_tasks(api, admin, sessions, runner, tenant_id) -> str:
    """Decommission the tenant, let the final backup and the agents' stop be reported; returns the job id."""
    r = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    job_id = r.json()["decommission_job_id"]
    runner.clock.now = datetime.now(UTC)
    for task in ("final-backup", "stop-agents"):
        assert await drain(runner) == 1
        assert await provisioner_reports(sessions, runner, tenant_id, task)
    assert await drain(runner) == 1
    assert (await job(api, admin, job_id))["status"] == "EXPORT_WINDOW"
    return job_id


# --- decommission -----------------------------------------------------------------------------------------------------


async def test_decommission_backs_up_then_stops_the_agents_then_deletes_the_hetzner_server_once(
    api, admin, sessions, runner, fake_hetzner
):
    fake, _ = fake_hetzner
    tenant_id, server = await tenant_on_hetzner(api, admin, sessions, runner)
    requested = datetime.now(UTC)
    r = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin, json={"reason": "unpaid"})
    again = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    runner.clock.now = datetime.now(UTC)
    assert r.status_code == again.status_code == 200, r.text
    job_id = r.json()["decommission_job_id"]
    assert job_id and again.json()["decommission_job_id"] == job_id  # one job per tenant

    got = await job(api, admin, job_id)
    assert got["status"] == "FINAL_BACKUP" and got["kind"] == "decommission"
    window_end = datetime.fromisoformat(got["data"]["export_until"])
    assert timedelta(hours=47.9) < window_end - requested < timedelta(hours=48.1)

    # The final backup is asked for at once, once; nothing else happens until it is reported.
    assert await drain(runner) == 1
    assert await drain(runner) == 0
    assert len(await requests(sessions, tenant_id, "final-backup")) == 1
    assert await requests(sessions, tenant_id, "stop-agents") == []
    assert (await job(api, admin, job_id))["status"] == "FINAL_BACKUP"

    assert await provisioner_reports(sessions, runner, tenant_id, "final-backup")
    assert await drain(runner) == 1  # the report made the job due: on to stopping the agents
    assert (await job(api, admin, job_id))["status"] == "STOPPING_AGENTS"
    assert len(await requests(sessions, tenant_id, "stop-agents")) == 1
    assert await provisioner_reports(sessions, runner, tenant_id, "stop-agents", result={"stopped": ["safety-wrapper"]})
    assert await drain(runner) == 1
    got = await job(api, admin, job_id)
    assert got["status"] == "EXPORT_WINDOW" and datetime.fromisoformat(got["due_at"]) == window_end

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
    steps = ["FINAL_BACKUP", "STOPPING_AGENTS", "EXPORT_WINDOW", "RELEASING_SERVER", "SUCCEEDED"]
    assert [h["to_status"] for h in got["history"]] == steps
    assert "final backup taken at 2030-01-01T00:00:00Z (off-site: success)" in got["history"][1]["reason"]
    assert "deleted" in got["history"][-1]["reason"]
    async with sessions() as s:
        assert (await s.get(Server, server.id)).status == "RETIRED"
    changes = [e.to_status for _, e in await staged(sessions, LifecycleJobChangedV1)]
    assert changes == steps


async def test_a_tenant_without_a_server_only_waits_for_the_export_window(api, admin, sessions, runner):
    agent = await enroll(api, admin)
    r = await api.post(f"/api/v1/admin/tenants/{agent.tenant_id}/decommission", headers=admin)
    got = await job(api, admin, r.json()["decommission_job_id"])
    assert got["status"] == "EXPORT_WINDOW" and got["server_id"] is None
    assert await staged(sessions, TenantTaskRequestedV1) == []


async def test_a_failed_final_backup_is_asked_again_then_fails_the_job_and_a_retry_asks_once_more(
    api, admin, sessions, runner
):
    tenant_id, _server = await tenant_on_hetzner(api, admin, sessions, runner)
    r = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    job_id = r.json()["decommission_job_id"]
    runner.clock.now = datetime.now(UTC)
    assert await drain(runner) == 1
    assert await provisioner_reports(sessions, runner, tenant_id, "final-backup", "FAILED", detail="ghost: dump failed")
    assert await drain(runner) == 1  # a failed attempt: asked again after the retry delay
    first = await job(api, admin, job_id)
    assert first["status"] == "FINAL_BACKUP" and first["attempts"] == 1 and "ghost: dump failed" in first["last_error"]
    runner.clock.now += timedelta(seconds=1.5)
    assert await drain(runner) == 1
    asked = await requests(sessions, tenant_id, "final-backup")
    # The same job's final backup: the provisioner keys it by the job, so the server takes it once.
    assert len(asked) == 2 and asked[0].job_id == asked[1].job_id and asked[0].request_id != asked[1].request_id
    assert await provisioner_reports(sessions, runner, tenant_id, "final-backup", "FAILED", detail="still failing")
    assert await drain(runner) == 1
    failed = await job(api, admin, job_id)
    assert failed["status"] == "FAILED" and failed["history"][-1]["from_status"] == "FINAL_BACKUP"
    assert await requests(sessions, tenant_id, "stop-agents") == []  # the agents are never stopped without a backup

    retried = await api.post(f"/api/v1/admin/lifecycle/jobs/{job_id}/retry", headers=admin)
    assert retried.status_code == 200 and retried.json()["status"] == "FINAL_BACKUP"
    runner.clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert await drain(runner) == 1
    assert len(await requests(sessions, tenant_id, "final-backup")) == 3
    assert await provisioner_reports(sessions, runner, tenant_id, "final-backup")
    assert await drain(runner) == 1
    assert (await job(api, admin, job_id))["status"] == "STOPPING_AGENTS"


async def test_a_report_nobody_asked_for_changes_nothing(api, admin, sessions, runner):
    tenant_id, _server = await tenant_on_hetzner(api, admin, sessions, runner)
    r = await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    runner.clock.now = datetime.now(UTC)
    assert await drain(runner) == 1
    before = await job(api, admin, r.json()["decommission_job_id"])
    [asked] = await requests(sessions, tenant_id, "final-backup")
    report = TenantTaskReportedV1(
        request_id=asked.request_id, job_id=asked.job_id, tenant_id=tenant_id, kind="final-backup", attempt=1,
        status="SUCCEEDED",
    )  # fmt: skip
    stray = [
        report.model_copy(update={"request_id": uuid.uuid4()}),  # not the request asked for
        report.model_copy(update={"tenant_id": uuid.uuid4()}),  # another tenant's
        report.model_copy(update={"job_id": uuid.uuid4()}),  # no such job
        report.model_copy(update={"kind": "stop-agents"}),  # a stop reported before it was asked for
    ]
    for event in stray:
        assert await deliver(sessions, runner, event) is False
    assert await job(api, admin, r.json()["decommission_job_id"]) == before
    assert await drain(runner) == 0


async def test_a_late_repeat_of_a_report_does_not_end_the_export_window(api, admin, sessions, runner):
    tenant_id, _server = await tenant_on_hetzner(api, admin, sessions, runner)
    job_id = await through_the_server_tasks(api, admin, sessions, runner, tenant_id)
    before = await job(api, admin, job_id)
    for task in ("final-backup", "stop-agents"):  # e.g. the answers to asks that were overdue
        assert await provisioner_reports(sessions, runner, tenant_id, task) is False
    after = await job(api, admin, job_id)
    assert after["status"] == "EXPORT_WINDOW" and after["due_at"] == before["due_at"]
    assert await drain(runner) == 0


async def test_a_server_task_report_overdue_is_asked_for_again(api, admin, sessions, runner, settings):
    tenant_id, _server = await tenant_on_hetzner(api, admin, sessions, runner)
    await api.post(f"/api/v1/admin/tenants/{tenant_id}/decommission", headers=admin)
    runner.clock.now = datetime.now(UTC)
    assert await drain(runner) == 1
    runner.clock.now += timedelta(seconds=settings.tenant_task_timeout_seconds + 1)
    assert await drain(runner) == 1
    asked = await requests(sessions, tenant_id, "final-backup")
    assert len(asked) == 2 and len({a.job_id for a in asked}) == 1 and [a.attempt for a in asked] == [1, 2]


@pytest.mark.parametrize(
    ("status", "to"),
    [("FINAL_BACKUP", "EXPORT_WINDOW"), ("FINAL_BACKUP", "RELEASING_SERVER"), ("STOPPING_AGENTS", "REINSTALLING"),
     ("EXPORT_WINDOW", "PREFLIGHT"), ("REINSTALLING", "SUCCEEDED"), ("PREFLIGHT", "REINSTALLING"),
     ("SUCCEEDED", "FINAL_BACKUP")],
)  # fmt: skip
async def test_decommission_steps_cannot_be_skipped(sessions, status, to):
    """No transition leaves out a step: the agents are never stopped before the backup, a reinstalled server never
    rejoins the pool without its preflight, a finished job never starts again."""
    async with unit_of_work(sessions) as s:
        created, _ = await state.create(
            s,
            kind=state.DECOMMISSION,
            key=f"decommission:{uuid.uuid4()}",
            tenant_id=uuid.uuid4(),
            server_id=None,
            due_at=datetime.now(UTC),
            actor="test",
            status=status if status != "SUCCEEDED" else None,
        )
    async with unit_of_work(sessions) as s:
        if status == "SUCCEEDED":
            for step in ("STOPPING_AGENTS", "EXPORT_WINDOW", "RELEASING_SERVER", "SUCCEEDED"):
                await state.transition(s, created.id, step, actor="test")
    with pytest.raises(state.IllegalJobTransition):
        async with unit_of_work(sessions) as s:
            await state.transition(s, created.id, to, actor="test")
    async with sessions() as s:
        assert (await s.get(LifecycleJob, created.id)).status == status


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "NO_SUCH_STATE"])
async def test_a_job_cannot_begin_in_an_idle_or_unknown_state(sessions, status):
    with pytest.raises(ValueError, match="cannot begin"):
        async with unit_of_work(sessions) as s:
            await state.create(
                s,
                kind=state.DECOMMISSION,
                key=f"decommission:{uuid.uuid4()}",
                tenant_id=uuid.uuid4(),
                server_id=None,
                due_at=datetime.now(UTC),
                actor="test",
                status=status,
            )


async def test_a_server_already_gone_at_the_provider_counts_as_released(api, admin, sessions, runner, fake_hetzner):
    fake, _ = fake_hetzner
    tenant_id, server = await tenant_on_hetzner(api, admin, sessions, runner)
    job_id = await through_the_server_tasks(api, admin, sessions, runner, tenant_id)
    await runner.providers["hetzner"].deallocate_server(server.provider_ref)  # deleted by hand in the console
    runner.clock.now = datetime.fromisoformat((await job(api, admin, job_id))["due_at"])
    assert await drain(runner) == 1
    got = await job(api, admin, job_id)
    assert got["status"] == "SUCCEEDED" and "already gone" in got["history"][-1]["reason"]
    assert len(fake.deleted) == 1


async def test_a_failing_provider_is_retried_then_the_job_fails_and_an_operator_retry_finishes_it(
    api, admin, sessions, runner, fake_hetzner
):
    fake, _ = fake_hetzner
    tenant_id, server = await tenant_on_hetzner(api, admin, sessions, runner)
    job_id = await through_the_server_tasks(api, admin, sessions, runner, tenant_id)
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


async def netcup_tenant(api, admin, sessions, fake: FakeNetcup, target: SshTarget) -> tuple[uuid.UUID, Server]:
    agent = await enroll(api, admin)
    fake.add_server(4711, ipv4=target.host)
    async with unit_of_work(sessions) as s:
        server = Server(
            provider="netcup",
            provider_ref="4711",
            name="v2202512345",
            tier="build",
            region="eu",
            ipv4=target.host,
            ssh_port=target.port,
            host_key_fingerprint="SHA256:" + "Q" * 43,  # the key of the install the tenant had
            status="IN_USE",
            order_id=agent.tenant_id,
            tenant_id=agent.tenant_id,
        )
        s.add(server)
    return agent.tenant_id, server


async def test_a_netcup_pool_server_is_wiped_reinstalled_and_preflighted_back_into_the_pool(
    api, admin, sessions, runner, fake_netcup, ssh_target
):
    fake, _ = fake_netcup
    # The tenant row does not name its server here: the job finds the one held for the tenant's order.
    tenant_id, server = await netcup_tenant(api, admin, sessions, fake, ssh_target)
    job_id = await through_the_server_tasks(api, admin, sessions, runner, tenant_id)
    runner.clock.now = datetime.fromisoformat((await job(api, admin, job_id))["due_at"])
    assert await drain(runner) == 1
    assert await drain(runner) == 0

    got = await job(api, admin, job_id)
    assert got["status"] == "SUCCEEDED" and got["server_id"] == str(server.id), got
    assert [h["to_status"] for h in got["history"]][-4:] == ["EXPORT_WINDOW", "REINSTALLING", "PREFLIGHT", "SUCCEEDED"]
    assert "back in the pool" in got["history"][-1]["reason"]
    [install] = fake.installs
    assert install["serverId"] == 4711 and install["setup"]["imageFlavourId"] == 12  # Debian 12
    assert install["setup"]["sshKeyIds"] == [7]
    assert fake.servers[4711]["serverLiveInfo"]["state"] == "RUNNING"
    async with sessions() as s:
        back = await s.get(Server, server.id)
    assert back.status == "AVAILABLE" and back.tenant_id is None and back.order_id is None
    assert back.host_key_fingerprint == ssh_target.fingerprint  # the new install's key, read by the preflight


async def test_a_reinstalled_server_that_does_not_answer_ssh_stays_out_of_the_pool(
    api, admin, sessions, runner, fake_netcup, ssh_target, settings
):
    fake, _ = fake_netcup
    tenant_id, server = await netcup_tenant(api, admin, sessions, fake, ssh_target)
    job_id = await through_the_server_tasks(api, admin, sessions, runner, tenant_id)
    async with unit_of_work(sessions) as s:  # the new install does not come up: nothing answers SSH there
        await s.execute(update(Server).where(Server.id == server.id).values(ssh_port=free_port()))
    # Each preflight gives up after the SSH wait: 0.5 s here instead of the test settings' 5 s (it waits twice below).
    runner.settings = runner.settings.model_copy(update={"ssh_ready_timeout_seconds": 0.5})
    runner.clock.now = datetime.fromisoformat((await job(api, admin, job_id))["due_at"])
    assert await drain(runner) == 1
    got = await job(api, admin, job_id)
    assert got["status"] == "PREFLIGHT" and "not reachable" in got["last_error"]
    assert len(fake.installs) == 1
    runner.clock.now += timedelta(seconds=1.5)
    assert await drain(runner) == 1
    got = await job(api, admin, job_id)
    assert got["status"] == "FAILED" and got["history"][-1]["from_status"] == "PREFLIGHT" and len(fake.installs) == 1
    async with sessions() as s:
        assert (await s.get(Server, server.id)).status == "DRAINING"  # never handed out unchecked


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
    job_id = await through_the_server_tasks(api, admin, sessions, runner, tenant_id)
    assert await api.post(f"/api/v1/admin/lifecycle/jobs/{job_id}/run-now", headers=admin)
    runner.clock.now = datetime.now(UTC) + timedelta(seconds=1)
    assert await drain(runner) == 1  # the server is deleted
    runner.clock.now = service.slot_of(tenant_id, midnight.date())
    assert await drain(runner) == 1
    snaps = (await api.get(f"/api/v1/admin/lifecycle/jobs?tenant_id={tenant_id}&kind=snapshot", headers=admin)).json()
    assert [j["status"] for j in snaps] == ["CANCELLED"]
    assert not any(p.endswith("/create_image") for _, p in fake.requests)
    assert not await staged(sessions, AlertRaisedV1)
