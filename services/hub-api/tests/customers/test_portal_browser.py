"""The portal's pages in a real headless Chromium: sign in with the emailed link, orders, a server, invoices, the
one-time logins, sign out everywhere. Hostile order data (domain, log line) shows as text and runs nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from hub_testing import hub_app
from hub_testing.browser import Browser
from hub_testing.customers import emailed_link, path_of
from hub_testing.orders import insert_order, serve
from letsbe_hub.config import HubSettings
from letsbe_hub.orders import wiring

from .seed import fulfilled_order

ALICE = "alice@shop.test"
HOSTILE_DOMAIN = '<img src=x onerror="window.__pwned=1">.test'
HOSTILE_LINE = "</div><script>window.__pwned=2</script><b>bold</b>"


async def do(fn, *args: Any, **kwargs: Any) -> Any:
    """Selenium blocks: run it in a thread while the hub serves on this event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest_asyncio.fixture
async def portal(hub_settings: HubSettings) -> AsyncIterator[str]:
    settings = hub_settings.model_copy(update={"web_cookie_secure": False})  # plain http on loopback
    async with serve(hub_app(settings, workers=wiring.start)) as url:
        yield url


def pwned(b: Browser) -> Any:
    return b.driver.execute_script("return window.__pwned")


def script_errors(b: Browser) -> list[str]:
    return [m for m in b.console_errors() if "favicon.ico" not in m]


@pytest.mark.timeout(180)
async def test_customer_signs_in_and_uses_the_portal(
    portal: str, browser: Browser, sessions, smtp_server, hub_settings, stripe_fake
) -> None:
    b = browser
    order_id = await fulfilled_order(
        sessions, hub_settings, ALICE, tools=["nextcloud", "ghost"], tokens=(1_200_000, 450_000)
    )
    hostile = await fulfilled_order(sessions, hub_settings, ALICE, domain=HOSTILE_DOMAIN, log_line=HOSTILE_LINE)
    await insert_order(sessions, customer_email=ALICE, domain="next.shop.test", tier="scale")
    stripe_fake.fake.add_invoice(ALICE, 4900, description="Build plan, November")
    stripe_fake.fake.add_invoice(ALICE, 4900, status="open", description="Build plan, December")

    # Sign in: the form, the email, the link's page with its one button.
    await do(b.get, f"{portal}/portal/orders")
    assert b.url.endswith("/portal/sign-in")
    await do(b.screenshot, "portal-sign-in")
    await do(lambda: b.find("#email").send_keys(ALICE))
    await do(lambda: b.find("#send-link").click())
    await do(b.wait_for, lambda: b.find("#sent").is_displayed(), what="the 'check your email' page")
    link = await emailed_link(smtp_server, ALICE)
    await do(b.get, portal + path_of(link))
    await do(lambda: b.find("#confirm-sign-in").click())
    await do(b.wait_for, lambda: b.url.endswith("/portal/orders"), what="the orders page")
    # The page sees only its path's cookie (the API's, on /api/v1/customer, carries the live stream below).
    cookies = {(c["name"], c["path"]): c for c in await do(b.cookies)}
    assert set(cookies) == {("letsbe_customer_session", "/portal")}
    assert all(c["httpOnly"] and c["sameSite"] == "Lax" for c in cookies.values())

    # Orders: the hostile domain is text, nothing ran.
    text = await do(lambda: b.find("#orders").text)
    assert HOSTILE_DOMAIN in text and "next.shop.test" in text
    assert await do(pwned, b) is None
    await do(b.screenshot, "portal-orders")

    # The hostile order's page: its log line arrives through the stream and is shown as text.
    await do(b.get, f"{portal}/portal/orders/{hostile}")
    await do(b.wait_for, lambda: HOSTILE_LINE in b.find("#log").text, what="the hostile log line, as text")
    assert await do(lambda: b.find("#domain").text) == HOSTILE_DOMAIN
    assert await do(pwned, b) is None
    assert await do(lambda: b.find_all("#log b")) == []

    # A fulfilled order: its tools, its progress, then the logins once.
    await do(b.get, f"{portal}/portal/orders/{order_id}")
    await do(b.wait_for, lambda: b.find("#log").get_attribute("data-ended") == "FULFILLED", what="the stream's end")
    tools = await do(lambda: [a.get_attribute("href") for a in b.find_all("#tools a[target=_blank]")])
    assert len(tools) == 2 and all(t.startswith("https://") for t in tools)
    await do(b.screenshot, "portal-order")
    await do(lambda: b.find("#reveal").click())
    await do(b.wait_for, lambda: "correct-horse-battery" in b.find("#credentials").text, what="the logins")
    await do(b.screenshot, "portal-credentials")
    await do(b.get, f"{portal}/portal/orders/{order_id}")
    assert await do(lambda: b.find_all("#reveal")) == []  # once

    # The server: tools, health, backup, AI usage against the allowance.
    await do(b.get, f"{portal}/portal/tenants/{order_id}")
    assert await do(lambda: b.find("#health").text) == "ok"
    assert "1,650,000 of 5,000,000 tokens (33.0%)" in await do(lambda: b.find("#usage").text)
    await do(b.screenshot, "portal-server")

    await do(b.get, f"{portal}/portal/invoices")
    rows = await do(lambda: b.find("#invoices").text)
    assert "49.00 EUR" in rows and "open" in rows and "paid" in rows
    await do(b.screenshot, "portal-invoices")
    assert await do(script_errors, b) == []

    # Sign out everywhere: back to the sign-in page, and the old cookie opens nothing.
    await do(b.get, f"{portal}/portal/orders")
    await do(lambda: b.find("#sign-out-everywhere").click())
    await do(b.wait_for, lambda: b.url.endswith("/portal/sign-in"), what="the sign-in page")
    await do(b.get, f"{portal}/portal/orders")
    assert b.url.endswith("/portal/sign-in")
