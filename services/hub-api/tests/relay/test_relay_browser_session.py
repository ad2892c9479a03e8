"""The chat relay from the portal: a signed-in customer's browser opens the customer socket with its session cookie
and ``?tenant_id=`` of one of its own tenants; another customer's tenant, no Origin, or a dead session is refused."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hub_testing.customers import sign_in
from hub_testing.orders import insert_order, smtp_server  # noqa: F401 - fixture
from letsbe_platform.testing.processes import ServiceProcess

from .test_relay import ADMIN, EchoAgent, frame, ws_url

ORIGIN = "https://app.example.com"


async def _tenant_of(sessions, email: str) -> uuid.UUID:
    """The id of this customer's fulfilled order, which is its tenant's id too."""
    return await insert_order(sessions, status="FULFILLED", customer_email=email)


async def _agent_key(hub: ServiceProcess, tenant_id: uuid.UUID) -> str:
    """The tenant's Safety Wrapper registered: its API key."""
    async with httpx.AsyncClient(base_url=hub.url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        token = (await admin.post(f"/api/v1/admin/tenants/{tenant_id}/registration-tokens",
                                  json={"domain": f"t{tenant_id.hex[:8]}.example.com", "order_id": str(tenant_id),
                                        "tier": "build", "region": "eu"})).json()["token"]  # fmt: skip
        r = await admin.post(
            "/api/v1/tenant/register",
            json={"registration_token": token, "agent": "safety-wrapper", "version": "1.0.0", "hostname": "vps"},
        )
        assert r.status_code == 201, r.text
        return r.json()["api_key"]


async def test_a_signed_in_customer_chats_with_their_own_tenant_from_the_browser(
    service_env,
    processes,
    sessions,
    smtp_server,  # noqa: F811
):
    env = service_env | {
        "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN,
        "LETSBE_HUB_LOG_LEVEL": "WARNING",
        "LETSBE_HUB_RELAY_ALLOWED_ORIGINS": json.dumps([ORIGIN]),
        "LETSBE_HUB_WEB_COOKIE_SECURE": "false",  # plain http on loopback
        "LETSBE_HUB_SMTP_HOST": "127.0.0.1",
        "LETSBE_HUB_SMTP_PORT": str(smtp_server.port),
        "LETSBE_HUB_SMTP_STARTTLS": "false",
        "LETSBE_HUB_MAIL_FROM": "LetsBe <hello@letsbe.test>",
    }
    hub = ServiceProcess("letsbe_hub", env, port_env="LETSBE_HUB_PORT").start()
    processes.append(hub)
    await hub.wait_ready(timeout=60)
    mine = await _tenant_of(sessions, "ada@example.com")
    theirs = await _tenant_of(sessions, "bob@example.com")
    async with httpx.AsyncClient(base_url=hub.url) as browser:
        await sign_in(browser, smtp_server, "ada@example.com")
        value = next(c.value for c in browser.cookies.jar if c.name == "letsbe_customer_session")
        cookie = f"letsbe_customer_session={value}"

    async with EchoAgent(ws_url(hub, "/api/v1/tenant/relay/ws"), await _agent_key(hub, mine)):
        ws = await connect(ws_url(hub) + f"?tenant_id={mine}", additional_headers={"Cookie": cookie}, origin=ORIGIN)
        await ws.send(json.dumps({"type": "hello", "after": None}))
        assert (await frame(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "id": "q1", "text": "hello from the portal"}))
        assert (await frame(ws))["type"] == "accepted"
        assert (await frame(ws))["text"] == "echo: hello from the portal"
        await ws.close()

    refused = [
        ("another customer's tenant", f"?tenant_id={theirs}", cookie, ORIGIN),
        ("an unknown tenant", f"?tenant_id={uuid.uuid4()}", cookie, ORIGIN),
        ("no tenant named", "", cookie, ORIGIN),
        ("no Origin (not a page)", f"?tenant_id={mine}", cookie, None),
        ("a page on another origin", f"?tenant_id={mine}", cookie, "https://evil.example.com"),
        ("a made-up session", f"?tenant_id={mine}", "letsbe_customer_session=" + "x" * 43, ORIGIN),
    ]
    for what, query, cookie_header, origin in refused:
        with pytest.raises(InvalidStatus) as exc:
            await connect(ws_url(hub) + query, additional_headers={"Cookie": cookie_header}, origin=origin)
        assert exc.value.response.status_code == 403, what
