"""The customer's whole story, with the whole sandbox plane running: they order on the website's public route, pay
the Stripe fake's subscription checkout, sign in to the portal with the emailed link, watch the order walk to
FULFILLED in a real browser (the provisioning log streaming in), see their tools, and chat with their tenant's agent
over the relay's WebSocket with the portal's session, a reconnect in the middle losing and repeating nothing (the
tenant's end is the Safety Wrapper the provisioner rendered, the answer the sandbox's stand-in for OpenClaw's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from hub_testing.browser import Browser
from hub_testing.customers import emailed_link
from letsbe_sandbox import openclaw

DOMAIN = "portal.example.com"
EMAIL = "owner@" + DOMAIN


async def do(fn, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def snapshot(b: Browser) -> tuple[str, int, bool]:
    """The status shown, the number of log lines shown and whether "Pay now" is offered, read in one script (the
    page changes under us)."""
    return tuple(
        b.driver.execute_script(
            "const s = document.getElementById('status'), l = document.getElementById('log');"
            "return [s ? s.textContent : '', l ? l.children.length : 0, !!document.getElementById('pay')];"
        )
    )


@pytest.mark.timeout(300)
async def test_customer_orders_pays_watches_the_walk_in_the_portal_and_chats_with_their_agent(
    plane, browser: Browser
) -> None:
    b = browser
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(
            f"{plane.hub}/api/v1/public/orders",
            json={"tier": "build", "region": "eu", "tools": ["nextcloud", "ghost"], "domain": DOMAIN, "email": EMAIL},
        )
        assert r.status_code == 201, r.text
        created = r.json()
        order_id = created["order_id"]
        session = await client.get(
            f"{plane.world.urls['stripe']}/v1/checkout/sessions/{created['checkout_session_id']}",
            headers={"Authorization": f"Bearer {plane.world.material.stripe_key}"},
        )
        assert session.json()["mode"] == "subscription", session.text  # monthly, as the tiers are priced

        await do(b.get, f"{plane.hub}/portal/sign-in")
        await do(lambda: b.find("#email").send_keys(EMAIL))
        await do(lambda: b.find("#send-link").click())
        await do(b.wait_for, lambda: b.find("#sent").is_displayed(), what="the 'check your email' page")
        link = await emailed_link(plane.world.smtp, EMAIL)
        assert link.startswith(plane.hub + "/portal/sign-in/")
        await do(b.get, link)
        await do(lambda: b.find("#confirm-sign-in").click())
        await do(b.wait_for, lambda: b.url.endswith("/portal/orders"), what="the orders page")

        await do(b.get, f"{plane.hub}/portal/orders/{order_id}")
        # The stream's first event: the order was created. Nothing more until the customer pays.
        await do(b.wait_for, lambda: snapshot(b) == ("PENDING_PAYMENT", 1, True), what="the order's first event")
        await plane.pay(client, created["checkout_session_id"])

        # Watch the page, as the customer does, until the order is fulfilled (the page then reloads with the tools).
        seen: list[tuple[str, int, bool]] = []
        live_shot = False
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            try:
                state = await do(snapshot, b)
            except Exception:  # noqa: S112 - the page is reloading
                continue
            if not seen or seen[-1] != state:
                seen.append(state)
            if state[0] == "PROVISIONING" and state[1] > 12 and not live_shot:
                await do(b.screenshot, "portal-order-provisioning")
                live_shot = True
            if await do(lambda: b.find_all("#tools")):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the page never showed the tools; seen {seen}\n{plane.logs()}")

    # The walk came in live: the page showed provisioning while its log grew, and stopped offering to pay.
    provisioning = [n for s, n, _ in seen if s == "PROVISIONING"]
    assert len(set(provisioning)) > 3, seen
    assert not any(pay for s, _, pay in seen if s != "PENDING_PAYMENT"), seen
    await do(b.wait_for, lambda: b.find("#log").get_attribute("data-ended") == "FULFILLED", what="the replayed run")
    log = await do(lambda: b.find("#log").text)
    assert "found Debian 12" in log and "— FULFILLED" in log
    steps = await do(lambda: [li.get_attribute("data-status") for li in b.find_all("#steps li")])
    assert steps == ["SUCCEEDED"] * 10
    tools = await do(lambda: {a.text for a in b.find_all("#tools a[target=_blank]")})
    assert tools == {f"https://files.{DOMAIN}", f"https://blog.{DOMAIN}"}
    await do(b.screenshot, "portal-order-fulfilled")

    # The chat, from the signed-in browser's session (its cookie, the portal's Origin) to the tenant's agent.
    cookie = next(c["value"] for c in await do(b.cookies) if c["name"] == "letsbe_customer_session")
    url = plane.hub.replace("http://", "ws://") + f"/api/v1/customer/ws?tenant_id={order_id}"
    opened = {"additional_headers": {"Cookie": f"letsbe_customer_session={cookie}"}, "origin": plane.hub}

    async def chat_frames(ws: Any, n: int) -> list[dict]:
        return [json.loads(await asyncio.wait_for(ws.recv(), 60)) for _ in range(n)]

    async with connect(url, **opened) as ws:
        await ws.send(json.dumps({"type": "hello", "after": 0}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "id": "q1", "text": "is my shop up?"}))
        [accepted1] = await chat_frames(ws, 1)
        assert accepted1["type"] == "accepted"
    # Gone before the answer came: the reconnect resumes from the last message received (none yet).
    answers: list[dict] = []
    async with connect(url, **opened) as ws:
        await ws.send(json.dumps({"type": "hello", "after": 0}))
        assert json.loads(await ws.recv())["type"] == "ready"
        [first] = await chat_frames(ws, 1)
        answers.append(first)
        await ws.send(json.dumps({"type": "ack", "id": first["id"]}))
        await ws.send(json.dumps({"type": "message", "id": "q2", "text": "and my blog?"}))
        frames = sorted(await chat_frames(ws, 2), key=lambda f: f["type"])
        assert [f["type"] for f in frames] == ["accepted", "message"]
        accepted2 = frames[0]
        answers.append(frames[1])
    assert [(a["reply_to"], a["text"]) for a in answers] == [
        (accepted1["seq"], openclaw.answer("is my shop up?")),
        (accepted2["seq"], openclaw.answer("and my blog?")),
    ]
    async with connect(url, **opened) as ws:  # resumed after the last answer: nothing comes twice
        await ws.send(json.dumps({"type": "hello", "after": answers[-1]["id"]}))
        assert json.loads(await ws.recv())["type"] == "ready"
        with contextlib.suppress(TimeoutError):
            assert json.loads(await asyncio.wait_for(ws.recv(), 2)) is None, "a message came twice"
