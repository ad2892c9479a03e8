"""A customer chats with their tenant's agent: a real WebSocket client on the hub's customer socket, a real hub
process, the real Safety Wrapper process holding the relay's outbound connection, and in place of OpenClaw's gateway
the sandbox's stand-in for its chat API (``letsbe_sandbox.openclaw``, which answers deterministically: no model).
A customer reconnect and a Safety Wrapper restart happen in the middle: nothing is lost, nothing is answered twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect

from letsbe_fakes import LoopbackServer
from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import ServiceProcess
from letsbe_sandbox.openclaw import answer, create_app

ADMIN = "lbh_test-admin-token-0123456789abcdef"
GATEWAY_TOKEN = "openclaw-gateway-token-for-the-relay-test"


class Counting:
    """The stand-in gateway, counting the chat calls it answers."""

    def __init__(self) -> None:
        self.app = create_app(GATEWAY_TOKEN)
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.calls.append(scope["path"])
        await self.app(scope, receive, send)


async def hello(url: str, token: str, after: int | None) -> ClientConnection:
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    await ws.send(json.dumps({"type": "hello", "after": after}))
    assert json.loads(await ws.recv())["type"] == "ready"
    return ws


# Frames read while waiting for another kind, per connection, in the order they came.
_unread: dict[int, list[dict[str, Any]]] = {}


async def next_frame(ws: ClientConnection, kind: str) -> dict[str, Any]:
    unread = _unread.setdefault(id(ws), [])
    for f in unread:
        if f["type"] == kind:
            unread.remove(f)
            return f
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if f["type"] == kind:
            return f
        unread.append(f)


async def test_a_customer_chats_with_the_tenant_agent_through_the_hub_across_reconnects_and_a_restart(
    service_env, processes, tmp_path
):
    hub = ServiceProcess("letsbe_hub", service_env | {"LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN,
                                                      "LETSBE_HUB_LOG_LEVEL": "WARNING"},
                         port_env="LETSBE_HUB_PORT").start()
    processes.append(hub)
    await hub.wait_ready()
    tenant = uuid.uuid4()
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        r = await admin.post(f"/api/v1/admin/tenants/{tenant}/registration-tokens",
                             json={"domain": "chat.example.com", "order_id": str(tenant), "tier": "build",
                                   "region": "eu"})
        assert r.status_code == 201, r.text
        registration = r.json()["token"]
        r = await admin.post(f"/api/v1/admin/tenants/{tenant}/customer-app-tokens", json={"label": "phone"})
        assert r.status_code == 201, r.text
        app_token = r.json()["token"]
    gateway = Counting()
    with LoopbackServer(gateway) as claw:
        env = {
            "LETSBE_SW_HUB_URL": hub.url, "LETSBE_SW_REGISTRATION_TOKEN": registration,
            "LETSBE_SW_STATE_DIR": str(tmp_path / "sw"), "LETSBE_SW_TOOLS_DIR": str(tmp_path / "tools"),
            "LETSBE_SW_USAGE_LEDGER_PATH": str(tmp_path / "u.db"),
            "LETSBE_SW_DOCKER_SOCKET": str(tmp_path / "no-docker.sock"),
            "LETSBE_SW_BACKUP_STATUS_PATH": str(tmp_path / "backup-status.json"),
            "LETSBE_SW_CHAT_URL": f"{claw.url}/v1/chat/completions", "LETSBE_SW_CHAT_TOKEN": GATEWAY_TOKEN,
            "LETSBE_SW_BACKOFF_MAX_SECONDS": "1",
        }
        sw = ServiceProcess("letsbe_safety_wrapper", env, port_env="LETSBE_SW_PORT").start()
        processes.append(sw)
        await sw.wait_ready()

        url = hub.url.replace("http://", "ws://") + "/api/v1/customer/ws"
        ws = await hello(url, app_token, None)
        answers: dict[int, dict[str, Any]] = {}
        sent: dict[str, int] = {}

        async def say(ws: ClientConnection, i: int) -> None:
            await ws.send(json.dumps({"type": "message", "id": f"m{i}", "text": f"question {i}"}))
            sent[f"m{i}"] = (await next_frame(ws, "accepted"))["seq"]

        for i in range(3):
            await say(ws, i)
        while len(answers) < 3:
            f = await next_frame(ws, "message")
            answers[f["reply_to"]] = f
        assert [answers[sent[f"m{i}"]]["text"] for i in range(3)] == [answer(f"question {i}") for i in range(3)]
        last = max(f["id"] for f in answers.values())
        await ws.send(json.dumps({"type": "ack", "id": last}))

        # The customer asks again and drops the connection before the answer comes; the Safety Wrapper restarts.
        await say(ws, 3)
        await ws.close()
        state = tmp_path / "sw" / "relay.json"
        await eventually(lambda: state.exists() and json.loads(state.read_text())["after"] == sent["m3"],
                         "the fourth question answered", timeout=30)
        sw.kill()
        ws = await hello(url, app_token, last)
        await say(ws, 4)  # waits in the hub while no Safety Wrapper is connected
        sw = ServiceProcess("letsbe_safety_wrapper", env, port_env="LETSBE_SW_PORT").start()
        processes.append(sw)
        await sw.wait_ready()
        rest = [await next_frame(ws, "message") for _ in range(2)]
        assert [(f["reply_to"], f["text"]) for f in rest] == [
            (sent["m3"], answer("question 3")), (sent["m4"], answer("question 4"))]
        assert rest[0]["id"] > last
        await ws.send(json.dumps({"type": "ack", "id": rest[-1]["id"]}))
        assert len(gateway.calls) == 5  # each question went to the agent once: the restart resumed after m3
        await ws.close()
