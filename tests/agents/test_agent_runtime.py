"""The agent runtime against a real hub (in-process, real Postgres and NATS) and a Docker Engine fake."""

import asyncio
import json
import os
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from hub_testing.tenants import fast_hub_settings, mint_token
from letsbe_agent.commands import CommandContext, Outcome
from letsbe_agent.runtime import AgentRuntime
from letsbe_agent.settings import AgentSettings
from letsbe_agent.usage import UsageLedger
from letsbe_contracts.enums import AgentKind
from letsbe_platform.testing import eventually


class SwitchableTransport(httpx.AsyncBaseTransport):
    """The hub as the agent sees it over the network: ``down = True`` is the hub being unreachable."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.down = False
        self.refused: list[str] = []  # the paths of the requests made while down

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused.append(request.url.path)
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def hub_settings(database_url, nats_url, bus_namespace):
    # A redelivery here is made by moving delivered_at back; an ack that a busy machine delays by a second must not
    # make one more.
    return fast_hub_settings(database_url, nats_url, bus_namespace, command_redeliver_seconds=3600)


@pytest.fixture
def agent_settings(tmp_path: Path, docker_fake) -> Callable[..., AgentSettings]:
    def make(**overrides) -> AgentSettings:
        values = {
            "hub_url": "http://hub",
            "state_dir": tmp_path / "state",
            "registration_token_file": tmp_path / "registration-token",
            "docker_socket": docker_fake.socket_path,
            "backoff_base_seconds": 0.05,
            "backoff_max_seconds": 0.3,
            "long_poll_seconds": 2,
            "update_poll_seconds": 0.05,
            "backup_status_path": tmp_path / "backup-status.json",
            "backup_lock_path": tmp_path / "backup.lock",
            "usage_ledger_path": tmp_path / "usage.sqlite3",
            "log_json": False,
        }
        return AgentSettings.model_validate(values | overrides)

    return make


class Agents:
    """Runs agent runtimes in the test's loop and stops them at the end."""

    def __init__(self, transport: SwitchableTransport):
        self.transport = transport
        self.tasks: list[tuple[AgentRuntime, asyncio.Task]] = []

    def start(self, settings: AgentSettings, kind: AgentKind = AgentKind.SAFETY_WRAPPER) -> AgentRuntime:
        agent = AgentRuntime(settings, kind=kind, version="1.0.0", hub_transport=self.transport)
        self.tasks.append((agent, asyncio.create_task(agent.run())))
        return agent

    async def stop(self, agent: AgentRuntime) -> None:
        for a, t in self.tasks:
            if a is agent:
                a.stop()
                await asyncio.wait_for(t, 10)


@pytest.fixture
async def agents(hub) -> AsyncIterator[Agents]:
    a = Agents(SwitchableTransport(hub._transport))
    yield a
    for agent, _task in a.tasks:
        agent.stop()
    await asyncio.gather(*(t for _, t in a.tasks), return_exceptions=True)


async def _enrolled(hub, admin, agents, settings, kind=AgentKind.SAFETY_WRAPPER, tenant_id=None):
    tenant_id, _, token = await mint_token(hub, admin, tenant_id)
    settings.registration_token_file.write_text(token)
    agent = agents.start(settings, kind)
    await asyncio.wait_for(agent.registered.wait(), 10)
    return tenant_id, agent


async def _command(hub, admin, tenant_id, type_, params=None, **extra) -> dict:
    body = {"type": type_, "params": params or {}, "deadline_seconds": 30} | extra
    r = await hub.post(f"/api/v1/admin/tenants/{tenant_id}/commands", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


async def _status(hub, admin, command_id) -> str:
    return (await hub.get(f"/api/v1/admin/commands/{command_id}", headers=admin)).json()["status"]


async def test_agent_registers_keeps_its_key_private_and_heartbeats_with_details(
    hub, admin, agents, agent_settings, docker_fake
):
    docker_fake.add_container("ghost", "ghost@sha256:" + "9" * 64, labels={"org.opencontainers.image.version": "5.1"})
    settings = agent_settings()
    tenant_id, _agent = await _enrolled(hub, admin, agents, settings)
    cred = settings.state_dir / "credential.json"
    assert stat.S_IMODE(os.stat(cred).st_mode) == 0o600
    assert not settings.registration_token_file.exists()  # the token is spent

    async def has_details():
        view = (await hub.get(f"/api/v1/admin/tenants/{tenant_id}", headers=admin)).json()
        a = view["agents"][0]
        if a["last_heartbeat_at"] is None:
            return None
        d = await hub.get(f"/api/v1/admin/tenants/{tenant_id}/agents/{a['agent_id']}/details", headers=admin)
        return d.json()["details"]

    details = await eventually(has_details)
    assert details["disk"]["total_bytes"] > 0 and 0 <= details["memory"]["percent"] <= 100
    assert details["versions"] == {"safety-wrapper": "1.0.0", "ghost": "5.1"}
    assert [(c["name"], c["state"], c["health"]) for c in details["containers"]] == [("ghost", "running", "healthy")]
    assert details["containers"][0]["image_digest"] == "sha256:" + "9" * 64


async def test_a_redelivered_command_is_acknowledged_not_run_again(hub, admin, agents, agent_settings, sessions):
    settings = agent_settings()
    runs = []

    async def count(ctx: CommandContext) -> Outcome:
        runs.append(ctx.command.id)
        return Outcome.succeeded(n=len(runs))

    tenant_id, agent = await _enrolled(hub, admin, agents, settings)
    agent.commands.register("count", count)
    cmd = await _command(hub, admin, tenant_id, "count")
    await eventually(lambda: _status_is(hub, admin, cmd["id"], "SUCCEEDED"))
    # The hub never saw the ack (say the answer was lost): it offers the command again.
    async with sessions() as s, s.begin():
        await s.execute(
            text("UPDATE hub.commands SET status='DELIVERED', delivered_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": cmd["id"]},
        )
    await eventually(lambda: _status_is(hub, admin, cmd["id"], "SUCCEEDED"))
    async with sessions() as s:
        deliveries = (
            await s.execute(text("SELECT deliveries FROM hub.commands WHERE id = :id"), {"id": cmd["id"]})
        ).scalar()
    assert deliveries == 2
    assert runs == [uuid.UUID(cmd["id"])]

    # The same after a restart of the agent: the journal on disk remembers.
    await agents.stop(agent)
    async with sessions() as s, s.begin():
        await s.execute(
            text("UPDATE hub.commands SET status='DELIVERED', delivered_at = now() - interval '1 hour' WHERE id = :id"),
            {"id": cmd["id"]},
        )
    again = agents.start(settings)
    again.commands.register("count", count)
    await eventually(lambda: _status_is(hub, admin, cmd["id"], "SUCCEEDED"))
    assert runs == [uuid.UUID(cmd["id"])]


async def test_a_result_with_terminal_escapes_and_nul_reaches_the_hub_printable(hub, admin, agents, agent_settings):
    async def noisy(ctx: CommandContext) -> Outcome:
        return Outcome.failed("exit 1: \x1b[31mERROR\x1b[0m\x00", log=["ok\tdone\r\n", "\x07bell"], **{"k\x1b": 1})

    tenant_id, agent = await _enrolled(hub, admin, agents, agent_settings())
    agent.commands.register("noisy", noisy)
    cmd = await _command(hub, admin, tenant_id, "noisy")
    await eventually(lambda: _status_is(hub, admin, cmd["id"], "FAILED"))
    shown = (await hub.get(f"/api/v1/admin/commands/{cmd['id']}", headers=admin)).json()
    assert shown["error"] == "exit 1: \ufffd[31mERROR\ufffd[0m\ufffd"
    assert shown["result"] == {"log": ["ok\tdone\r\n", "\ufffdbell"], "k\ufffd": 1}


async def _status_is(hub, admin, command_id, wanted):
    return await _status(hub, admin, command_id) == wanted


async def test_revoked_agent_deletes_its_credential_and_re_enrols_with_a_new_token(hub, admin, agents, agent_settings):
    settings = agent_settings()
    tenant_id, agent = await _enrolled(hub, admin, agents, settings)
    first = agent.credential.agent_id
    r = await hub.post(f"/api/v1/admin/tenants/{tenant_id}/agents/{first}/revoke", headers=admin)
    assert r.status_code == 204
    await eventually(lambda: not (settings.state_dir / "credential.json").exists())
    _, _, token = await mint_token(hub, admin, tenant_id)
    settings.registration_token_file.write_text(token)
    await eventually(lambda: agent.credential is not None and agent.credential.agent_id != first)
    view = (await hub.get(f"/api/v1/admin/tenants/{tenant_id}", headers=admin)).json()
    assert [a["agent_id"] for a in view["agents"]] == [str(agent.credential.agent_id)]


async def test_results_and_reports_made_while_the_hub_is_down_arrive_once_it_is_back(
    hub, admin, agents, agent_settings, sessions
):
    settings = agent_settings(report_backups=True, backup_check_at=time(0, 0))
    release = asyncio.Event()

    async def slow(ctx: CommandContext) -> Outcome:
        await release.wait()
        return Outcome.succeeded(done=True)

    settings.backup_status_path.write_text(
        '{"last_run": "2026-02-27T02:15:00Z", "duration_seconds": 342, "databases": {"ghost": {"status": "success",'
        ' "size_mb": 12}}, "remote_sync": {"status": "success", "uploaded_mb": 230}}'
    )
    # the backup report is made while the hub is away (registration happens first)
    tenant_id, agent = await _enrolled(hub, admin, agents, settings)
    agent.commands.register("slow", slow)
    cmd = await _command(hub, admin, tenant_id, "slow")
    await eventually(lambda: _status_is(hub, admin, cmd["id"], "RUNNING"))
    agents.transport.down = True
    release.set()
    await eventually(lambda: len(agent.buffer) >= 1)
    async with sessions() as s:
        seq_during = (
            await s.execute(text("SELECT last_seq FROM hub.agents WHERE tenant_id = :t"), {"t": tenant_id})
        ).scalar()
    refused_before = agents.transport.refused.count("/api/v1/tenant/heartbeat")
    await eventually(
        lambda: agents.transport.refused.count("/api/v1/tenant/heartbeat") >= refused_before + 3,
        "several failed heartbeats (backoff)",
        timeout=30,
    )
    agents.transport.down = False
    await eventually(lambda: _status_is(hub, admin, cmd["id"], "SUCCEEDED"))
    await eventually(lambda: len(agent.buffer) == 0)
    async with sessions() as s:
        transitions = (
            (
                await s.execute(
                    text("SELECT to_status FROM hub.command_transitions WHERE command_id = :id ORDER BY id"),
                    {"id": cmd["id"]},
                )
            )
            .scalars()
            .all()
        )
        backups = (await s.execute(text("SELECT count(*) FROM hub.backup_reports"))).scalar()
        seq_after = (
            await s.execute(text("SELECT last_seq FROM hub.agents WHERE tenant_id = :t"), {"t": tenant_id})
        ).scalar()
    assert transitions == ["QUEUED", "DELIVERED", "RUNNING", "SUCCEEDED"]
    assert backups == 1
    assert seq_after > seq_during  # heartbeats resumed

    # a result sent twice (the answer to the first was lost) is stored once
    agent._queue_result(uuid.UUID(cmd["id"]), {"status": "SUCCEEDED", "result": {"done": True}, "error": None})
    await agent.flush()
    async with sessions() as s:
        n = (
            await s.execute(
                text("SELECT count(*) FROM hub.command_transitions WHERE command_id = :id"), {"id": cmd["id"]}
            )
        ).scalar()
    assert n == 4


async def test_usage_is_reported_per_hour_once_and_late_usage_goes_as_the_next_sequence(
    hub, admin, agents, agent_settings, sessions
):
    settings = agent_settings(report_usage=True, usage_report_every_seconds=3600)
    ledger = UsageLedger(settings.usage_ledger_path)
    last_hour = datetime.now(UTC) - timedelta(hours=1)
    ledger.record(100, 40, "claude-sonnet", at=last_hour)
    ledger.record(50, 10, "claude-sonnet", at=last_hour)
    ledger.record(7, 3, "gpt-4o", at=last_hour)
    ledger.record(1, 1, "gpt-4o")  # this hour: not reported yet
    _tenant_id, agent = await _enrolled(hub, admin, agents, settings)

    async def rows():
        async with sessions() as s:
            return (
                await s.execute(text("SELECT sequence, tokens_in, tokens_out FROM hub.usage_reports ORDER BY sequence"))
            ).all()

    await eventually(lambda: _nonempty(rows))
    assert [tuple(r) for r in await rows()] == [(0, 157, 53)]
    ledger.record(10, 10, "gpt-4o", at=last_hour)  # a late call for that hour
    assert await agent.report_usage() == 1
    assert [tuple(r) for r in await rows()] == [(0, 157, 53), (1, 10, 10)]
    assert await agent.report_usage() == 0  # nothing left
    # a retry of a report the hub already has is acknowledged as a duplicate
    r = await hub.post(
        "/api/v1/tenant/usage",
        json={
            "hour": last_hour.isoformat(),
            "sequence": 1,
            "lines": [{"model": "x", "tokens_in": 9, "tokens_out": 9, "requests": 1}],
        },
        headers={"Authorization": f"Bearer {agent.credential.api_key}"},
    )
    assert r.json() == {"duplicate": True}
    assert len(await rows()) == 2


async def _nonempty(fn):
    return bool(await fn())


async def test_a_rollout_whose_image_fails_its_health_check_is_rolled_back_and_aborted(
    hub, admin, agents, agent_settings, docker_fake
):
    """Real agents, real Docker API calls (fake engine): the staging tenant's update rolls back, the gate aborts."""
    repo = "registry.letsbe.biz/letsbe/openclaw"
    old, new = repo + "@sha256:" + "a" * 64, repo + "@sha256:" + "b" * 64
    docker_fake.add_container("openclaw", old)
    docker_fake.fail_health(new)
    settings = agent_settings()
    staging_tenant, _ = await _enrolled(hub, admin, agents, settings)
    await hub.patch(f"/api/v1/admin/tenants/{staging_tenant}", json={"staging": True}, headers=admin)
    other_settings = agent_settings(state_dir=settings.state_dir.parent / "other")
    other_settings.registration_token_file.unlink(missing_ok=True)
    other_tenant, _ = await _enrolled(hub, admin, agents, other_settings)
    body = {
        "component": "openclaw",
        "image": repo,
        "digest": "sha256:" + "b" * 64,
        "version": "2.0.0",
        "min_healthy_seconds": 0.3,
        "deadline_seconds": 5,
        "stages": [{"name": "staging", "staging": True}, {"name": "all", "percent": 100}],
    }
    r = await hub.post("/api/v1/admin/rollouts", json=body, headers=admin)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]

    async def finished():
        v = (await hub.get(f"/api/v1/admin/rollouts/{rid}", headers=admin)).json()
        return v if v["status"] in ("ABORTED", "COMPLETED", "PAUSED") else None

    v = await eventually(finished, timeout=20)
    assert v["status"] == "ABORTED" and "1 of 1 updates failed" in v["reason"]
    page = (await hub.get(f"/api/v1/admin/rollouts/{rid}/targets", headers=admin)).json()
    targets = {t["tenant_id"]: t for t in page["items"]}
    assert targets[str(staging_tenant)]["status"] == "ROLLED_BACK"
    assert "health check" in targets[str(staging_tenant)]["detail"]
    assert targets[str(other_tenant)]["status"] == "CANCELLED"  # never touched
    assert docker_fake.by_name("openclaw")["Config"]["Image"] == old  # the staging tenant runs the old image again


async def test_rotate_credential_command_switches_the_agent_to_a_new_key(hub, admin, agents, agent_settings):
    settings = agent_settings()
    tenant_id, agent = await _enrolled(hub, admin, agents, settings)
    old_key = agent.credential.api_key
    cmd = await _command(hub, admin, tenant_id, "rotate-credential")
    await eventually(lambda: _status_is(hub, admin, cmd["id"], "SUCCEEDED"))
    saved = json.loads((settings.state_dir / "credential.json").read_text())
    assert saved["api_key"] != old_key and saved["api_key"] == agent.credential.api_key
    me = await hub.get("/api/v1/tenant/me", headers={"Authorization": f"Bearer {saved['api_key']}"})
    assert me.status_code == 200


async def test_rotating_a_credential_the_agent_does_not_hold_fails_and_keeps_its_key(
    hub, admin, agents, agent_settings
):
    settings = agent_settings()
    tenant_id, agent = await _enrolled(hub, admin, agents, settings)
    old_key = agent.credential.api_key
    # Sent to this agent explicitly: the hub would route an "llm-key" rotation to the Secrets Proxy.
    cmd = await _command(hub, admin, tenant_id, "rotate-credential", {"credential": "llm-key"}, agent="safety-wrapper")
    await eventually(lambda: _status_is(hub, admin, cmd["id"], "FAILED"))
    view = (await hub.get(f"/api/v1/admin/commands/{cmd['id']}", headers=admin)).json()
    assert "holds no 'llm-key' credential" in view["error"]
    assert agent.credential.api_key == old_key
    r = await hub.post(
        f"/api/v1/admin/tenants/{tenant_id}/commands",
        headers=admin,
        json={"type": "rotate-credential", "params": {"credential": "root-password"}},
    )
    assert r.status_code == 422  # not a credential the hub knows
