"""Issue 17: a customer signs in to the portal with the emailed link and watches their paid order walk to FULFILLED
in a real browser, the provisioning log streaming in, then sees their tools. The whole sandbox plane runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from hub_testing.browser import Browser
from hub_testing.customers import emailed_link

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


@pytest.mark.timeout(240)
async def test_customer_watches_the_order_walk_to_fulfilled_in_the_portal(plane, browser: Browser) -> None:
    b = browser
    async with httpx.AsyncClient(timeout=30) as client:
        created = await plane.order(client, DOMAIN, ["nextcloud", "ghost"])
        order_id = created["id"]

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
