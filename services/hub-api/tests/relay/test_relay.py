"""The chat relay: a customer's app and their tenant's agent talk over WebSockets through the hub, with
real hub processes on a real NATS, real WebSocket clients (the ``websockets`` library) on both ends.

The tenant end here is a test client holding a Safety Wrapper's credential that answers deterministically ("echo:
<text>"), standing in for the agent; services/safety-wrapper/tests/relay runs the real Safety Wrapper.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import ServiceProcess

ADMIN = "lbh_test-admin-token-0123456789abcdef"
MAX_BYTES, MAX_UNACKED = 4096, 8
Hubs = Callable[[int], Awaitable[list[ServiceProcess]]]


@pytest_asyncio.fixture
async def start_hubs(service_env, processes) -> Hubs:
    async def start(n: int) -> list[ServiceProcess]:
        env = service_env | {"LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN, "LETSBE_HUB_LOG_LEVEL": "WARNING",
                             "LETSBE_HUB_RELAY_MAX_MESSAGE_BYTES": str(MAX_BYTES),
                             "LETSBE_HUB_RELAY_MAX_UNACKED": str(MAX_UNACKED),
                             "LETSBE_HUB_RELAY_SLOW_CONSUMER_SECONDS": "1",
                             "LETSBE_HUB_RELAY_ALLOWED_ORIGINS": '["https://app.example.com"]'}
        hubs = []
        for _ in range(n):  # one after the other: each creates the bootstrap token if it is not there
            hubs.append(ServiceProcess("letsbe_hub", env, port_env="LETSBE_HUB_PORT").start())
            processes.append(hubs[-1])
            await hubs[-1].wait_ready(timeout=60)
        return hubs

    return start


def ws_url(hub: ServiceProcess, path: str = "/api/v1/customer/ws") -> str:
    return hub.url.replace("http://", "ws://") + path


async def tenant(hub: ServiceProcess) -> tuple[uuid.UUID, str, str]:
    """A tenant with a registered Safety Wrapper (its API key) and a customer app token."""
    tenant_id = uuid.uuid4()
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        r = await admin.post(f"/api/v1/admin/tenants/{tenant_id}/registration-tokens",
                             json={"domain": f"t{tenant_id.hex[:8]}.example.com", "order_id": str(tenant_id),
                                   "tier": "build", "region": "eu"})
        assert r.status_code == 201, r.text
        r = await admin.post("/api/v1/tenant/register", json={
            "registration_token": r.json()["token"], "agent": "safety-wrapper", "version": "1.0.0",
            "hostname": "vps"})
        assert r.status_code == 201, r.text
        agent_key = r.json()["api_key"]
        r = await admin.post(f"/api/v1/admin/tenants/{tenant_id}/customer-app-tokens", json={"label": "phone"})
        assert r.status_code == 201, r.text
        assert r.json()["token"].startswith("lbc_")
    return tenant_id, agent_key, r.json()["token"]


async def open_relay(url: str, token: str, after: int | None = None, **kw: Any) -> ClientConnection:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, **kw)
    await ws.send(json.dumps({"type": "hello", "after": after}))
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    return ws


async def frame(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


class EchoAgent:
    """The tenant end: answers each customer message with "echo: <text>" (reply_to its id), acks it."""

    def __init__(self, url: str, key: str):
        self.url, self.key = url, key
        self.task: asyncio.Task[None] | None = None
        self.handled: list[int] = []

    async def _run(self) -> None:
        async with await open_relay(self.url, self.key, after=0) as ws:
            async for raw in ws:
                f = json.loads(raw)
                if f["type"] == "message":
                    self.handled.append(f["id"])
                    await ws.send(json.dumps({"type": "message", "id": f"answer-{f['id']}",
                                              "text": "echo: " + f["text"], "reply_to": f["id"]}))
                    await ws.send(json.dumps({"type": "ack", "id": f["id"]}))

    async def __aenter__(self) -> EchoAgent:
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_a_customer_on_one_replica_talks_to_the_agent_on_the_other_and_resumes_without_loss_or_repeats(
    start_hubs: Hubs,
):
    a, b = await start_hubs(2)
    _, agent_key, app_token = await tenant(a)
    async with EchoAgent(ws_url(b, "/api/v1/tenant/relay/ws"), agent_key) as agent:
        ws = await open_relay(ws_url(a), app_token)
        answers: dict[int, dict[str, Any]] = {}  # by the id of the customer message answered
        seqs = {}
        for i in range(5):
            await ws.send(json.dumps({"type": "message", "id": f"m{i}", "text": f"hello {i}"}))
        while len(answers) < 5 or len(seqs) < 5:
            f = await frame(ws)
            if f["type"] == "accepted":
                seqs[f["id"]] = f["seq"]
            else:
                assert f["type"] == "message", f
                answers[f["reply_to"]] = f
        assert [answers[seqs[f"m{i}"]]["text"] for i in range(5)] == [f"echo: hello {i}" for i in range(5)]
        ids = sorted(a["id"] for a in answers.values())
        assert [answers[seqs[f"m{i}"]]["id"] for i in range(5)] == ids  # answers come in order

        # Acknowledge the first three only, send two more, and drop the connection without reading their answers.
        await ws.send(json.dumps({"type": "ack", "id": ids[2]}))
        for i in (5, 6):
            await ws.send(json.dumps({"type": "message", "id": f"m{i}", "text": f"hello {i}"}))
        accepted: list[dict[str, Any]] = []
        while len(accepted) < 2:  # an answer may come in between: it is read again after the resume
            f = await frame(ws)
            accepted += [f] if f["type"] == "accepted" else []
        await eventually(lambda: len(agent.handled) == 7, "the agent got all seven", timeout=20)
        await ws.close()

        # Resume on the other replica from the last acknowledged id: the rest, in order, once each.
        ws = await open_relay(ws_url(b), app_token, after=ids[2])
        # m6 again (its acceptance "lost"): stored once, the same id as the first time.
        resent = next(f for f in accepted if f["id"] == "m6")
        await ws.send(json.dumps({"type": "message", "id": "m6", "text": "hello 6"}))
        got: list[dict[str, Any]] = []
        again = None
        while len(got) < 4 or again is None:
            f = await frame(ws)
            if f["type"] == "accepted":
                again = f
            else:
                got.append(f)
        assert again["seq"] == resent["seq"]
        assert [f["text"] for f in got] == ["echo: hello 3", "echo: hello 4", "echo: hello 5", "echo: hello 6"]
        assert [f["id"] for f in got] == sorted(f["id"] for f in got) and got[0]["id"] > ids[2]
        with pytest.raises(TimeoutError):  # nothing more: no repeat of m6's answer
            await frame(ws, timeout=1.5)
        assert len(agent.handled) == 7 and len(set(agent.handled)) == 7
        await ws.close()


async def test_a_customer_reaches_only_their_own_tenant(start_hubs: Hubs):
    (hub,) = await start_hubs(1)
    t1, key1, token1 = await tenant(hub)
    _, key2, token2 = await tenant(hub)
    async with EchoAgent(ws_url(hub, "/api/v1/tenant/relay/ws"), key1):
        ws2 = await open_relay(ws_url(hub), token2)
        ws1 = await open_relay(ws_url(hub), token1)
        await ws1.send(json.dumps({"type": "message", "id": "secret", "text": "for tenant 1"}))
        assert (await frame(ws1))["type"] == "accepted"
        assert (await frame(ws1))["text"] == "echo: for tenant 1"
        with pytest.raises(TimeoutError):
            await frame(ws2, timeout=1.5)  # tenant 2's customer sees nothing of it
        # Tenant 2's agent does not get tenant 1's customer messages either.
        agent2 = await open_relay(ws_url(hub, "/api/v1/tenant/relay/ws"), key2, after=0)
        with pytest.raises(TimeoutError):
            await frame(agent2, timeout=1.5)
        for ws in (ws1, ws2, agent2):
            await ws.close()

    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        issued = (await admin.post(f"/api/v1/admin/tenants/{t1}/customer-app-tokens", json={})).json()
        assert (await admin.delete(f"/api/v1/admin/tenants/{t1}/customer-app-tokens/{issued['id']}")).status_code == 204
        assert (await admin.post(f"/api/v1/admin/tenants/{uuid.uuid4()}/customer-app-tokens",
                                 json={})).status_code == 404
    refused = [
        ("no token", ws_url(hub), {}, None),
        ("unknown token", ws_url(hub), {"Authorization": "Bearer lbc_nope"}, None),
        ("revoked token", ws_url(hub), {"Authorization": f"Bearer {issued['token']}"}, None),
        ("the agent key on the customer socket", ws_url(hub), {"Authorization": f"Bearer {key1}"}, None),
        ("a customer token on the agent socket", ws_url(hub, "/api/v1/tenant/relay/ws"),
         {"Authorization": f"Bearer {token1}"}, None),
        ("a page on another origin", ws_url(hub), {"Authorization": f"Bearer {token1}"}, "https://evil.example.com"),
    ]
    for what, url, headers, origin in refused:
        with pytest.raises(InvalidStatus) as exc:
            await connect(url, additional_headers=headers, origin=origin)
        assert exc.value.response.status_code == 403, what
    ok = await open_relay(ws_url(hub), token1, origin="https://app.example.com")  # an allowed page
    await ok.close()


async def closed_with(ws: ClientConnection) -> tuple[int, list[dict[str, Any]]]:
    frames = []
    with pytest.raises(ConnectionClosed) as exc:
        while True:
            frames.append(await frame(ws))
    assert exc.value.rcvd is not None
    return exc.value.rcvd.code, frames


async def test_bad_frames_oversized_messages_and_slow_consumers_are_closed_and_nothing_is_relayed(start_hubs: Hubs):
    (hub,) = await start_hubs(1)
    _, agent_key, token = await tenant(hub)
    agent = await open_relay(ws_url(hub, "/api/v1/tenant/relay/ws"), agent_key)
    bad = [
        ("not JSON", "hello?", 4400),
        ("unknown type", json.dumps({"type": "shout", "text": "x"}), 4400),
        ("extra field", json.dumps({"type": "message", "id": "x", "text": "x", "to": "other-tenant"}), 4400),
        ("empty text", json.dumps({"type": "message", "id": "x", "text": ""}), 4400),
        ("bad id", json.dumps({"type": "message", "id": "a b", "text": "x"}), 4400),
        ("second hello", json.dumps({"type": "hello"}), 4400),
        ("too big", json.dumps({"type": "message", "id": "big", "text": "x" * MAX_BYTES}), 1009),
        ("binary", b"\x00\x01", 1003),
    ]
    for what, data, code in bad:
        ws = await open_relay(ws_url(hub), token)
        await ws.send(data)
        got, frames = await closed_with(ws)
        assert got == code, what
        if code == 4400:
            assert frames and frames[-1]["type"] == "error", what
    with pytest.raises(TimeoutError):
        await frame(agent, timeout=1.5)  # none of it reached the agent
    ws = await open_relay(ws_url(hub), token)
    await ws.send(json.dumps({"type": "notahello"}))  # a wrong first frame
    assert (await closed_with(ws))[0] == 4400

    # A customer that reads but never acknowledges gets MAX_UNACKED messages, then is closed with 4408...
    slow = await open_relay(ws_url(hub), token)
    for i in range(MAX_UNACKED + 2):
        await agent.send(json.dumps({"type": "message", "id": f"a{i}", "text": f"answer {i}"}))
    code, frames = await closed_with(slow)
    assert code == 4408
    assert [f["text"] for f in frames] == [f"answer {i}" for i in range(MAX_UNACKED)]
    # ...and resumes from its last acknowledged id (none: from the start of this test's conversation): a backlog
    # larger than the window comes window by window as it acknowledges, all of it, in order.
    again = await open_relay(ws_url(hub), token, after=0)
    texts = []
    while len(texts) < MAX_UNACKED + 2:
        f = await frame(again)
        texts.append(f["text"])
        await again.send(json.dumps({"type": "ack", "id": f["id"]}))
    assert texts == [f"answer {i}" for i in range(MAX_UNACKED + 2)]
    await again.close()
    await agent.close()
