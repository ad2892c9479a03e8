"""Commands: queueing, delivery (heartbeat and long-poll), ack, results, expiry, and tenant isolation."""

import asyncio
import time

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from hub_testing.tenants import enroll, fast_hub_settings
from letsbe_hub.app import create_app
from letsbe_hub.commands import service
from letsbe_hub.commands.worker import waker_of
from letsbe_platform.testing import eventually

DIGEST = "sha256:" + "c" * 64


@pytest.fixture
def hub_settings(database_url, nats_url, bus_namespace):
    # Redelivery is shown by moving delivered_at back, not by waiting: an interval no slow heartbeat reaches.
    return fast_hub_settings(database_url, nats_url, bus_namespace, command_redeliver_seconds=3600)


async def _queue(hub, admin, tenant_id, type_="restart", params=None, **extra):
    body = {"type": type_, "params": params if params is not None else {"containers": ["ghost"]}} | extra
    return await hub.post(f"/api/v1/admin/tenants/{tenant_id}/commands", json=body, headers=admin)


async def _beat(hub, agent, seq):
    r = await hub.post("/api/v1/tenant/heartbeat", json={"seq": seq, "version": "1.0.0"}, headers=agent.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_tenant_credential_reaches_only_its_own_commands(hub, admin):
    a = await enroll(hub, admin)
    b = await enroll(hub, admin)
    cmd_b = (await _queue(hub, admin, b.tenant_id)).json()

    assert (await hub.get("/api/v1/tenant/commands", headers=a.headers)).json() == {"commands": []}
    assert (await _beat(hub, a, 1))["commands"] == []
    for path, body in (
        (f"/api/v1/tenant/commands/{cmd_b['id']}/ack", None),
        (f"/api/v1/tenant/commands/{cmd_b['id']}/result", {"status": "SUCCEEDED"}),
    ):
        r = await hub.post(path, json=body, headers=a.headers)
        assert r.status_code == 404, r.text
    # B's command is untouched and B gets it
    got = (await hub.get("/api/v1/tenant/commands", headers=b.headers)).json()["commands"]
    assert [c["id"] for c in got] == [cmd_b["id"]]


async def test_commands_go_to_the_agent_that_runs_them(hub, admin):
    sw = await enroll(hub, admin)
    sp = await enroll(hub, admin, tenant_id=sw.tenant_id, agent="secrets-proxy")
    params = {"component": "safety-wrapper", "image": "registry.letsbe.biz/letsbe/safety-wrapper", "digest": DIGEST}
    update_sw = (await _queue(hub, admin, sw.tenant_id, "update", params | {"version": "1.1.0"})).json()
    assert update_sw["agent"] == "secrets-proxy"  # an agent never replaces its own container
    assert (await _beat(hub, sw, 1))["commands"] == []
    assert [c["id"] for c in (await _beat(hub, sp, 1))["commands"]] == [update_sw["id"]]


async def _delivered_long_ago(sessions, command_id):
    """As if the redelivery interval had passed since the command was delivered (no waiting for the clock)."""
    async with sessions() as s, s.begin():
        await s.execute(
            text("UPDATE hub.commands SET delivered_at = now() - interval '1 day' WHERE id = :i"), {"i": command_id}
        )


async def test_heartbeat_carries_pending_commands_and_an_unacked_one_is_delivered_again(hub, admin, sessions):
    a = await enroll(hub, admin)
    cmd = (await _queue(hub, admin, a.tenant_id)).json()
    first = await _beat(hub, a, 1)
    assert [c["id"] for c in first["commands"]] == [cmd["id"]]
    assert first["commands"][0]["params"] == {"containers": ["ghost"], "timeout_seconds": 10}
    assert (await _beat(hub, a, 2))["commands"] == []  # delivered, waiting for the ack
    await _delivered_long_ago(sessions, cmd["id"])
    assert [c["id"] for c in (await _beat(hub, a, 3))["commands"]] == [cmd["id"]]
    ack = await hub.post(f"/api/v1/tenant/commands/{cmd['id']}/ack", headers=a.headers)
    assert ack.json() == {"run": True, "status": "RUNNING"}
    await _delivered_long_ago(sessions, cmd["id"])
    assert (await _beat(hub, a, 4))["commands"] == []  # running: never redelivered


async def test_same_idempotency_key_queues_one_command(hub, admin):
    a = await enroll(hub, admin)
    one = await _queue(hub, admin, a.tenant_id, idempotency_key="restart-ghost-1")
    two = await _queue(hub, admin, a.tenant_id, idempotency_key="restart-ghost-1")
    assert one.status_code == two.status_code == 201
    assert one.json()["id"] == two.json()["id"]


async def test_invalid_parameters_of_a_known_type_are_refused_and_nothing_is_queued(hub, admin, sessions):
    a = await enroll(hub, admin)
    r = await _queue(hub, admin, a.tenant_id, "update", {"component": "openclaw", "image": "x", "digest": "latest"})
    assert r.status_code == 422
    assert "digest" in r.json()["detail"]
    async with sessions() as s:
        assert (await s.execute(text("SELECT count(*) FROM hub.commands"))).scalar() == 0
    assert (await _queue(hub, admin, "00000000-0000-0000-0000-000000000001")).status_code == 404


async def test_results_are_idempotent_and_a_different_outcome_later_is_a_conflict(hub, admin):
    a = await enroll(hub, admin)
    cmd = (await _queue(hub, admin, a.tenant_id)).json()
    await hub.get("/api/v1/tenant/commands", headers=a.headers)
    await hub.post(f"/api/v1/tenant/commands/{cmd['id']}/ack", headers=a.headers)
    url = f"/api/v1/tenant/commands/{cmd['id']}/result"
    ok = {"status": "SUCCEEDED", "result": {"restarted": ["ghost"]}}
    assert (await hub.post(url, json=ok, headers=a.headers)).status_code == 200
    assert (await hub.post(url, json=ok, headers=a.headers)).status_code == 200
    r = await hub.post(url, json={"status": "FAILED", "error": "x"}, headers=a.headers)
    assert r.status_code == 409
    assert r.json()["status"] == 409 and r.json()["current_status"] == "SUCCEEDED"  # RFC 9457's status: HTTP's
    view = (await hub.get(f"/api/v1/admin/commands/{cmd['id']}", headers=admin)).json()
    assert view["status"] == "SUCCEEDED" and view["result"] == {"restarted": ["ghost"]}
    assert [(t["from_status"], t["to_status"]) for t in view["transitions"]] == [
        (None, "QUEUED"),
        ("QUEUED", "DELIVERED"),
        ("DELIVERED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]


async def test_a_cancelled_command_is_not_run(hub, admin):
    a = await enroll(hub, admin)
    cmd = (await _queue(hub, admin, a.tenant_id)).json()
    await hub.get("/api/v1/tenant/commands", headers=a.headers)
    r = await hub.post(f"/api/v1/admin/commands/{cmd['id']}/cancel", headers=admin)
    assert r.json()["status"] == "CANCELLED"
    ack = await hub.post(f"/api/v1/tenant/commands/{cmd['id']}/ack", headers=a.headers)
    assert ack.json() == {"run": False, "status": "CANCELLED"}
    assert (await hub.post(f"/api/v1/admin/commands/{cmd['id']}/cancel", headers=admin)).status_code == 409


async def test_overdue_commands_time_out(hub, admin, sessions):
    a = await enroll(hub, admin)
    running = (await _queue(hub, admin, a.tenant_id)).json()
    expired = (await _queue(hub, admin, a.tenant_id, idempotency_key="other")).json()
    await hub.get("/api/v1/tenant/commands", headers=a.headers)
    await hub.post(f"/api/v1/tenant/commands/{running['id']}/ack", headers=a.headers)
    async with sessions() as s, s.begin():
        await s.execute(
            text("UPDATE hub.commands SET deadline_at = now() - interval '1 second' WHERE id = :i"),
            {"i": running["id"]},
        )
        await s.execute(
            text("UPDATE hub.commands SET expires_at = now() - interval '1 second' WHERE id = :i"), {"i": expired["id"]}
        )
    views = []

    async def both_timed_out() -> bool:  # the deadline sweep runs every 0.5 s here
        views[:] = [
            (await hub.get(f"/api/v1/admin/commands/{c['id']}", headers=admin)).json() for c in (running, expired)
        ]
        return all(v["status"] == "TIMED_OUT" for v in views)

    await eventually(both_timed_out, "both commands timed out", timeout=30)
    assert [v["status"] for v in views] == ["TIMED_OUT", "TIMED_OUT"]
    assert views[0]["transitions"][-1]["reason"] == "no result before the deadline"
    assert views[1]["transitions"][-1]["reason"] == "expired before it ran"


@pytest.fixture
async def hub_app(hub_settings):
    """The hub in-process like ``hub``, the app at hand too; a waiting long-poll looks again only at its end."""
    app = create_app(hub_settings.model_copy(update={"command_long_poll_recheck_seconds": 60}))
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client, app


async def test_long_poll_returns_as_soon_as_a_command_is_queued(hub_app, admin):
    hub, app = hub_app
    a = await enroll(hub, admin)
    poll = asyncio.create_task(hub.get("/api/v1/tenant/commands?wait=30", headers=a.headers, timeout=60))
    waker = waker_of(app.state.runtime)
    # Queued once the poll has subscribed (before its first look): found by a look or woken, it answers at once.
    await eventually(lambda: str(a.tenant_id) in waker._subscribers, "the long-poll waiting")
    cmd = (await _queue(hub, admin, a.tenant_id)).json()
    queued = time.monotonic()  # from here: how long queueing took on a loaded machine is not the poll's doing
    r = await poll
    assert [c["id"] for c in r.json()["commands"]] == [cmd["id"]]
    assert time.monotonic() - queued < 10  # woken: unwoken, it would look again only at its end, 30 s on


async def test_a_command_queued_between_a_look_and_the_wait_still_wakes_the_long_poll(hub_app, admin, monkeypatch):
    hub, _ = hub_app
    a = await enroll(hub, admin)
    looked, queued = asyncio.Event(), asyncio.Event()
    pull = service.pull

    async def first_look_then_queue(*args, **kwargs):
        found = await pull(*args, **kwargs)
        if not looked.is_set():
            looked.set()
            await queued.wait()  # the command commits after this look read nothing and before the poll waits
        return found

    monkeypatch.setattr(service, "pull", first_look_then_queue)
    poll = asyncio.create_task(hub.get("/api/v1/tenant/commands?wait=30", headers=a.headers, timeout=60))
    await asyncio.wait_for(looked.wait(), 30)
    cmd = (await _queue(hub, admin, a.tenant_id)).json()
    queued.set()
    started = time.monotonic()
    r = await poll
    assert [c["id"] for c in r.json()["commands"]] == [cmd["id"]]
    assert time.monotonic() - started < 10  # its notification came before the wait: missed, 30 s on


async def test_long_poll_without_commands_waits_and_returns_empty(hub_app, admin):
    hub, _ = hub_app
    a = await enroll(hub, admin)
    started = time.monotonic()
    r = await hub.get("/api/v1/tenant/commands?wait=1", headers=a.headers, timeout=90)
    assert r.json() == {"commands": []}
    # It waits its second, and ends then: the re-check here is 60 s, which a poll ignoring its wait would sit out.
    assert 0.9 <= time.monotonic() - started < 30


async def test_a_waiting_long_poll_answers_as_soon_as_the_hub_begins_to_shut_down(hub_app, admin):
    """uvicorn waits for open requests before the app stops: a long-poll sitting out its wait (30 s here, re-check
    60 s) would hold every shutdown and redeploy of the hub that long, for each tenant polling it."""
    hub, app = hub_app
    a = await enroll(hub, admin)
    poll = asyncio.create_task(hub.get("/api/v1/tenant/commands?wait=30", headers=a.headers, timeout=60))
    waker = waker_of(app.state.runtime)
    await eventually(lambda: str(a.tenant_id) in waker._subscribers, "the long-poll waiting")
    app.state.runtime.stopping.set()  # what the server does first when its shutdown begins (letsbe_platform.serve)
    r = await asyncio.wait_for(poll, 20)
    assert r.status_code == 200 and r.json() == {"commands": []}
