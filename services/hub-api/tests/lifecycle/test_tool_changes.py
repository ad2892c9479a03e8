"""Tools added to or removed from a live tenant, in the hub: the checks before a job exists (catalog, present or
absent, the tier's memory budget, one change at a time, a live tenant, the IT agent's approval), and the job's walk
through its phases on the reports of the services that own them, with the tenant's tool list changed only when the
job succeeds. Real Postgres; the DNS service's and provisioner's reports are delivered to the hub's handler as the
bus would. (The phases themselves run in the sandbox end-to-end test, tests/e2e/test_tool_changes.py.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select, update

from hub_testing import hub_app
from hub_testing.approvals import decide
from hub_testing.orders import insert_order
from hub_testing.servers import servers_settings, staged, token
from hub_testing.tenants import enroll
from letsbe_contracts import load_catalog
from letsbe_contracts.approvals import call_hash
from letsbe_contracts.events import TenantTaskReportedV1, TenantTaskRequestedV1
from letsbe_hub.approvals import endpoints as approval_endpoints
from letsbe_hub.lifecycle import endpoints as lifecycle_endpoints
from letsbe_hub.lifecycle import exchange, tools
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.worker import JobRunner
from letsbe_hub.orders.models import Order
from letsbe_hub.servers.models import Server
from letsbe_hub.tenants import endpoints as tenant_endpoints
from letsbe_hub.tenants.models import Tenant
from letsbe_platform.db import unit_of_work


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings(database_url: str):
    return servers_settings(
        database_url, lifecycle_retry_seconds=1, lifecycle_max_attempts=2, tenant_task_timeout_seconds=60
    )


@pytest_asyncio.fixture
async def api(settings):
    routers = [*tenant_endpoints.routers, *lifecycle_endpoints.routers, *approval_endpoints.routers]
    app = hub_app(settings, routers=routers)
    async with LifespanManager(app) as m:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=m.app), base_url="http://hub") as client:
            yield client


@pytest_asyncio.fixture
async def admin(sessions):
    return await token(sessions)


@pytest.fixture
def runner(sessions, settings):
    return JobRunner(sessions, settings, {}, clock=Clock())


async def live_tenant(api, admin, sessions, tools_: list[str], tier: str = "lite") -> Any:
    """An ACTIVE tenant (its Safety Wrapper enrolled) of a FULFILLED order, on an IN_USE server."""
    agent = await enroll(api, admin)
    await insert_order(sessions, "FULFILLED", id=agent.tenant_id, tier=tier, tools=tools_, domain=agent.domain)
    async with unit_of_work(sessions) as s:
        server = Server(
            provider="hetzner", provider_ref=str(agent.tenant_id.int % 10**9), name="t", tier=tier, region="eu",
            ipv4="127.0.0.9", host_key_fingerprint="SHA256:" + "Q" * 43, status="IN_USE", order_id=agent.tenant_id,
            tenant_id=agent.tenant_id,
        )  # fmt: skip
        s.add(server)
        await s.flush()
        await s.execute(update(Tenant).where(Tenant.id == agent.tenant_id).values(server_id=server.id))
    return agent


async def tools_of(sessions, tenant_id) -> list[str]:
    async with sessions() as s:
        return list((await s.get(Order, tenant_id)).tools)


async def jobs_of(sessions, tenant_id) -> int:
    async with sessions() as s:
        return (await s.execute(select(func.count()).where(LifecycleJob.tenant_id == tenant_id))).scalar_one()


async def get_job(sessions, job_id) -> LifecycleJob:
    async with sessions() as s:
        return await s.get(LifecycleJob, uuid.UUID(str(job_id)))


async def report(sessions, job_id, phase: str, attempt: int, status: str = "SUCCEEDED", **kw: Any) -> bool:
    """A phase's report (of its ``attempt``-th ask) as the bus delivers it to the hub's handler."""
    job = await get_job(sessions, job_id)
    kind = tools.TASKS[phase]
    event = TenantTaskReportedV1(
        request_id=exchange.request_id(job.id, kind, attempt), job_id=job.id, tenant_id=job.tenant_id, kind=kind,
        attempt=attempt, status=status, **kw,
    )  # fmt: skip
    async with unit_of_work(sessions) as s:
        return await exchange.on_report(s, event, datetime.now(UTC))


async def step(runner: JobRunner) -> None:
    runner.clock.now = datetime.now(UTC) + timedelta(seconds=1)  # past the due time a report sets
    while await runner.run_once():
        pass


async def asks(sessions, job_id) -> list[tuple[str, int]]:
    phases = {kind: phase for phase, kind in tools.TASKS.items()}
    asked = await staged(sessions, TenantTaskRequestedV1)
    return [(phases[e.task.kind], e.attempt) for _, e in asked if e.job_id == job_id]


# --- the checks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "problem"),
    [
        ("POST", "tools", {"tool": "no_such_tool"}, 422, "unprocessable"),
        ("POST", "tools", {"tool": "ghost"}, 409, "tool-already-present"),
        ("POST", "tools", {"tool": "certbot"}, 422, "unprocessable"),  # infrastructure, not a selectable tool
        ("POST", "tools", {}, 422, None),
        ("POST", "tools", {"tool": "umami", "extra": 1}, 422, None),
        ("POST", "tools", {"tool": "stalwart"}, 409, "mail-tool-fixed"),
        ("DELETE", "tools/umami", None, 409, "tool-absent"),
        ("DELETE", "tools/no_such_tool", None, 422, "unprocessable"),
    ],
)
async def test_a_bad_tool_change_is_refused_with_a_problem_and_changes_nothing(
    api, admin, sessions, method, path, body, status, problem
):
    agent = await live_tenant(api, admin, sessions, ["ghost", "nextcloud"])
    r = await api.request(method, f"/api/v1/admin/tenants/{agent.tenant_id}/{path}", json=body, headers=admin)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if problem:
        assert r.json()["type"].endswith(problem), r.json()
    assert await jobs_of(sessions, agent.tenant_id) == 0
    assert await tools_of(sessions, agent.tenant_id) == ["ghost", "nextcloud"]


async def test_only_a_live_tenant_with_no_unfinished_change_gets_a_tool_change(api, admin, sessions):
    r = await api.post(f"/api/v1/admin/tenants/{uuid.uuid4()}/tools", json={"tool": "umami"}, headers=admin)
    assert r.status_code == 404
    agent = await live_tenant(api, admin, sessions, ["ghost"])
    async with unit_of_work(sessions) as s:
        await s.execute(update(Tenant).where(Tenant.id == agent.tenant_id).values(status="DECOMMISSIONED"))
    r = await api.post(f"/api/v1/admin/tenants/{agent.tenant_id}/tools", json={"tool": "umami"}, headers=admin)
    assert r.status_code == 409 and r.json()["type"].endswith("tenant-not-live"), r.text

    agent = await live_tenant(api, admin, sessions, ["ghost"])
    r = await api.post(f"/api/v1/admin/tenants/{agent.tenant_id}/tools", json={"tool": "umami"}, headers=admin)
    assert r.status_code == 202, r.text
    r = await api.delete(f"/api/v1/admin/tenants/{agent.tenant_id}/tools/ghost", headers=admin)
    assert r.status_code == 409 and r.json()["type"].endswith("tool-change-in-progress"), r.text
    assert await jobs_of(sessions, agent.tenant_id) == 1


def test_the_memory_budget_is_the_calculators_rule_against_the_tier():
    catalog = load_catalog()
    tiers = [t.model_copy(update={"ram_mb": 4096}) if t.tier == "lite" else t for t in catalog.tiers]
    small = catalog.model_copy(update={"tiers": tuple(tiers)})
    # 1536 overhead + nextcloud 768 + chatwoot 1024 = 3328 MB: fits 4096; + odoo 1280 = 4608 MB does not.
    tools.check_budget("lite", ["nextcloud", "chatwoot"], small)
    with pytest.raises(tools.OverMemoryBudget) as refused:
        tools.check_budget("lite", ["nextcloud", "chatwoot", "odoo"], small)
    assert refused.value.status_code == 409
    assert refused.value.extra["needed_mb"] == 4608 and refused.value.extra["budget_mb"] == 4096
    assert refused.value.extra["recommended_tier"] == "build"  # what the calculator would sell instead
    tools.check_budget("lite", ["nextcloud", "chatwoot", "odoo"])  # the real catalog's lite tier: fits


# --- the job ------------------------------------------------------------------------------------------------------


async def test_adding_a_tool_walks_dns_then_stack_and_changes_the_tool_list_only_on_success(
    api, admin, sessions, runner
):
    agent = await live_tenant(api, admin, sessions, ["ghost"])
    r = await api.post(f"/api/v1/admin/tenants/{agent.tenant_id}/tools", json={"tool": "umami"}, headers=admin)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["kind"] == "tool-change" and r.json()["data"]["tools_after"] == ["ghost", "umami"]

    await step(runner)
    assert (await get_job(sessions, job_id)).status == "DNS"
    [asked] = [ev for _, ev in await staged(sessions, TenantTaskRequestedV1)]
    task = asked.task
    assert task.kind == "tool-dns" and task.order.tools == ("ghost", "umami") and task.action == "add"
    assert task.tool == "umami" and str(task.server.ipv4) == "127.0.0.9"
    await step(runner)  # no report yet: nothing is asked again before the timeout
    assert await asks(sessions, asked.job_id) == [("DNS", 1)]

    assert not await report(sessions, job_id, "STACK", 1)  # not the phase it is in: dropped
    assert await report(sessions, job_id, "DNS", 1, changes=("A umami.example: created",))
    await step(runner)
    assert (await get_job(sessions, job_id)).status == "STACK"
    assert await asks(sessions, asked.job_id) == [("DNS", 1), ("STACK", 1)]
    assert await tools_of(sessions, agent.tenant_id) == ["ghost"]  # not before the job succeeds

    assert not await report(sessions, job_id, "DNS", 1)  # a late repeat of DNS's report changes nothing
    assert await report(sessions, job_id, "STACK", 1, changes=("wrote /opt/letsbe/stacks/umami/docker-compose.yml",))
    await step(runner)
    done = await get_job(sessions, job_id)
    assert done.status == "SUCCEEDED" and done.finished_at is not None
    assert await tools_of(sessions, agent.tenant_id) == ["ghost", "umami"]
    history = (await api.get(f"/api/v1/admin/lifecycle/jobs/{job_id}", headers=admin)).json()["history"]
    assert [h["to_status"] for h in history] == ["REQUESTED", "DNS", "STACK", "SUCCEEDED"]
    assert "A umami.example: created" in history[2]["reason"]
    assert "umami added" in history[3]["reason"] and "stacks/umami/docker-compose.yml" in history[3]["reason"]


async def test_removing_a_tool_backs_it_up_first_and_a_failed_phase_is_asked_again(api, admin, sessions, runner):
    agent = await live_tenant(api, admin, sessions, ["ghost", "umami"])
    r = await api.delete(f"/api/v1/admin/tenants/{agent.tenant_id}/tools/ghost", headers=admin)
    assert r.status_code == 202, r.text
    job_id = uuid.UUID(r.json()["job_id"])
    await step(runner)
    assert (await get_job(sessions, job_id)).status == "FINAL_BACKUP"

    assert await report(sessions, job_id, "FINAL_BACKUP", 1, status="FAILED", detail="ssh: connection refused")
    await step(runner)  # a failed attempt: retried after the backoff, asking again with a new attempt number
    failed = await get_job(sessions, job_id)
    assert failed.status == "FINAL_BACKUP" and failed.attempts == 1 and "connection refused" in failed.last_error
    runner.clock.now = datetime.now(UTC) + timedelta(seconds=5)
    while await runner.run_once():
        pass
    assert await asks(sessions, job_id) == [("FINAL_BACKUP", 1), ("FINAL_BACKUP", 2)]
    assert not await report(sessions, job_id, "STACK", 2)
    assert not await report(sessions, job_id, "FINAL_BACKUP", 1)  # the failed attempt's report again: not acted on
    await step(runner)
    assert (await get_job(sessions, job_id)).status == "FINAL_BACKUP"

    for phase in ("FINAL_BACKUP", "STACK", "DNS"):
        attempt = 2 if phase == "FINAL_BACKUP" else 1
        assert await report(sessions, job_id, phase, attempt)
        await step(runner)
    assert (await get_job(sessions, job_id)).status == "SUCCEEDED"
    assert await asks(sessions, job_id) == [("FINAL_BACKUP", 1), ("FINAL_BACKUP", 2), ("STACK", 1), ("DNS", 1)]
    assert await tools_of(sessions, agent.tenant_id) == ["umami"]


async def test_a_phase_that_keeps_failing_fails_the_job_and_a_retry_resumes_there(api, admin, sessions, runner):
    agent = await live_tenant(api, admin, sessions, ["ghost"])
    r = await api.post(f"/api/v1/admin/tenants/{agent.tenant_id}/tools", json={"tool": "umami"}, headers=admin)
    job_id = uuid.UUID(r.json()["job_id"])
    await step(runner)
    for attempt in (1, 2):  # lifecycle_max_attempts=2
        assert await report(sessions, job_id, "DNS", attempt, status="FAILED", detail="zone not found")
        for _ in range(2):  # the failed attempt, then (after the backoff) the next ask
            runner.clock.now += timedelta(seconds=30)
            while await runner.run_once():
                pass
    failed = await get_job(sessions, job_id)
    assert failed.status == "FAILED" and failed.failed_from == "DNS"
    assert await tools_of(sessions, agent.tenant_id) == ["ghost"]
    r = await api.post(f"/api/v1/admin/tenants/{agent.tenant_id}/tools", json={"tool": "umami"}, headers=admin)
    assert r.status_code == 409 and r.json()["type"].endswith("tool-change-in-progress")

    r = await api.post(f"/api/v1/admin/lifecycle/jobs/{job_id}/retry", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "DNS", r.text
    await step(runner)
    assert (await asks(sessions, job_id))[-1] == ("DNS", 3)


# --- the IT agent's path ------------------------------------------------------------------------------------------


async def test_the_it_agent_changes_a_tool_only_with_a_consumed_approval_of_that_call(api, admin, sessions):
    agent = await live_tenant(api, admin, sessions, ["ghost"])
    url = "/api/v1/tenant/tool-changes"
    r = await api.post(url, json={"action": "add", "tool": "umami"}, headers=agent.headers)
    assert r.status_code == 409 and r.json()["type"].endswith("approval-missing"), r.text

    digest = call_hash("letsbe", "tools.add", {"tool": "umami"})
    body = {"tool": "letsbe", "action": "tools.add", "risk_class": "RED", "args_hash": digest,
            "args_preview": {"tool": "umami"}, "reasons": ["adds a tool"], "ttl_seconds": 900}  # fmt: skip
    approval = (await api.post("/api/v1/tenant/approvals", json=body, headers=agent.headers)).json()
    assert (await decide(api, admin, approval["id"])).status_code == 200
    r = await api.post(url, json={"action": "add", "tool": "umami"}, headers=agent.headers)
    assert r.status_code == 409, "approved but not consumed by the wrapper yet"
    r = await api.post(
        f"/api/v1/tenant/approvals/{approval['id']}/consume", json={"args_hash": digest}, headers=agent.headers
    )
    assert r.status_code == 200, r.text

    wrong = await api.post(url, json={"action": "add", "tool": "listmonk"}, headers=agent.headers)
    assert wrong.status_code == 409 and wrong.json()["type"].endswith("approval-missing")
    r = await api.post(url, json={"action": "add", "tool": "umami"}, headers=agent.headers)
    assert r.status_code == 202, r.text
    assert r.json()["data"]["approval_id"] == approval["id"]
    assert r.json()["requested_by"] == f"agent:{agent.agent_id}"
    assert await jobs_of(sessions, agent.tenant_id) == 1
