"""The operators' console in a real headless Chromium, against the whole sandbox control plane: an operator made
with `letsbe-hub operators create` signs in with password and TOTP, watches a paid order walk to FULFILLED with its
log streaming in, acknowledges an alert and approves a Safety Wrapper approval; every action is recorded under the
operator's name. Screenshots of the main pages go to LETSBE_SCREENSHOTS_DIR (docs/console.md shows them)."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
import pytest_asyncio
from selenium.webdriver.common.by import By

from hub_testing.browser import Browser, browser  # noqa: F401 - fixture: one Chromium for this module
from letsbe_hub.approvals import repository as approvals_repo
from letsbe_platform.db import unit_of_work
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import free_port
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports, Sandbox


@pytest_asyncio.fixture
async def plane(sandbox_root: Path, service_env: dict[str, str], bus) -> AsyncIterator[ControlPlane]:
    """conftest's plane, given longer to start: this module also runs Chromium on the machine's two cores."""
    world = Sandbox(sandbox_root, Ports(*(free_port() for _ in range(4)))).start()
    cp = ControlPlane(world, {**service_env, "LETSBE_SANDBOX_DIR": str(sandbox_root)}, bus)
    try:
        await cp.start(*(s.name for s in SERVICES), ready_timeout=180)
        yield cp
    finally:
        cp.stop_all()
        world.stop()


LETSBE_HUB = str(Path(sys.executable).parent / "letsbe-hub")
PASSWORD = "correct horse battery staple"


async def create_operator(plane, name: str) -> pyotp.TOTP:
    """`letsbe-hub operators create` on the hub's database, as an operator would run it on the hub host."""
    hub_env = plane.world.env()["hub-api"]
    env = {**os.environ, "DATABASE_URL": plane.base_env["DATABASE_URL"],
           "LETSBE_HUB_OPERATOR_TOTP_KEY": hub_env["LETSBE_HUB_OPERATOR_TOTP_KEY"]}
    proc = await asyncio.create_subprocess_exec(
        LETSBE_HUB, "operators", "create", name, "--password-file", "-", env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate((PASSWORD + "\n").encode())
    assert proc.returncode == 0, err.decode()
    uri = out.decode().strip()
    return pyotp.TOTP(urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0])


def sign_in(b: Browser, hub: str, name: str, totp: pyotp.TOTP) -> None:
    b.get(f"{hub}/console/orders")
    b.wait_for(lambda: "/console/sign-in" in b.url, what="the sign-in page")
    b.find("input[name=name]").send_keys(name)
    b.find("input[name=password]").send_keys(PASSWORD)
    b.find("input[name=code]").send_keys(totp.now())
    b.find("form button[type=submit]").click()
    b.wait_for(lambda: b.url.endswith("/console/orders") and "Orders" in b.text, what="the orders page after sign-in")


def submit(form) -> None:
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


@pytest.mark.timeout(420)  # the whole plane and Chromium on two cores
async def test_operator_signs_in_watches_an_order_acks_an_alert_and_approves(
    plane, browser: Browser, sessions  # noqa: F811 - the fixture imported above
):
    b, hub = browser, plane.hub
    totp = await create_operator(plane, "ops-anna")
    await asyncio.to_thread(sign_in, b, hub, "ops-anna", totp)
    cookie = next(c for c in b.cookies() if c["name"] == "letsbe_console_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/console"

    async with httpx.AsyncClient(timeout=30) as client:
        created = await plane.order(client, "console.example.com", ["nextcloud", "ghost"])
        order_id = created["id"]

        # The page is open before the payment: everything after comes through its live stream.
        def opened() -> int:
            b.get(f"{hub}/console/orders/{order_id}")
            b.wait_for(lambda: b.find("#live").is_displayed(), what="the live stream to connect")
            return len(b.find_all("#log span.l"))

        assert await asyncio.to_thread(opened) == 0
        await plane.pay(client, created["checkout_session_id"])

        def fulfilled() -> None:
            b.wait_for(lambda: b.find("#order-status").get_attribute("data-status") == "FULFILLED",
                       what="the order to show FULFILLED", timeout=120)
            b.wait_for(lambda: not b.find("#live").is_displayed(), what="the stream to end")

        await asyncio.to_thread(fulfilled)
        log = await asyncio.to_thread(lambda: b.find("#log").text)
        assert "step 10 ai-stack: SUCCEEDED" in log and "→ FULFILLED (hub-on-provisioned)" in log
        assert len(await asyncio.to_thread(b.find_all, "#log span.l")) > 10  # the log lines came in live
        history = await asyncio.to_thread(lambda: [r.text for r in b.find_all("#history tbody tr")])
        assert any("FULFILLED" in row for row in history) and any("stripe" in row for row in history)
        assert not await asyncio.to_thread(b.console_errors)  # no CSP violation, no script error
        await asyncio.to_thread(b.screenshot, "console-order")

        # Overview, orders and the tenant's page.
        def tour() -> None:
            b.get(f"{hub}/console/")
            b.wait_for(lambda: "Hub health" in b.text, what="the overview")
            b.screenshot("console-overview")
            b.get(f"{hub}/console/orders")
            b.screenshot("console-orders")
            def agents_shown() -> bool:
                b.get(f"{hub}/console/tenants/{order_id}")
                return "safety-wrapper" in b.text and "secrets-proxy" in b.text

            b.wait_for(agents_shown, what="the tenant's two agents (they register once step 10 started them)",
                       timeout=60)
            # Its DNS records, read from the DNS service (which owns them) through its read API.
            records = b.find("#dns").text
            assert "console.example.com" in records and "*.console.example.com" in records, records
            b.screenshot("console-tenant")
            def disk_shown() -> bool:  # the page is rendered once: its first heartbeat may come after a load
                b.get(f"{hub}/console/tenants")
                return "% of" in b.find("#fleet tbody tr td:nth-child(6)").text

            b.wait_for(disk_shown, what="the tenant's disk (from its heartbeats) in the fleet list")
            b.screenshot("console-fleet")

        await asyncio.to_thread(tour)

        # The sandbox's pools are empty on purpose: their "below minimum" alerts are open. Acknowledge one.
        def acknowledge() -> str:
            def alert_row():
                b.get(f"{hub}/console/alerts")
                return b.find_all("form[action$='/acknowledge']")

            b.wait_for(alert_row, what="an open alert", timeout=60)
            b.wait_for(lambda: b.find("#alert-badge").text.strip().isdigit(), what="the live badge")
            b.screenshot("console-alerts")
            form = b.find("form[action$='/acknowledge']")
            alert_id = form.get_attribute("action").split("/")[-2]
            form.find_element(By.NAME, "note").send_keys("pool order placed with Netcup")
            submit(form)
            b.wait_for(lambda: b.url.endswith(f"#alert-{alert_id}"), what="the alerts page again after the form")

            def acknowledged() -> bool:
                b.get(f"{hub}/console/alerts?view=acknowledged")
                return "acknowledged by operator:ops-anna" in b.find(f"#alert-{alert_id}").text

            b.wait_for(acknowledged, what="the acknowledgement under the operator's name")
            return alert_id

        alert_id = await asyncio.to_thread(acknowledge)
        r = await client.get(f"{hub}/api/v1/admin/alerts/{alert_id}", headers=plane.headers)
        assert r.json()["acknowledged_by"] == "operator:ops-anna"
        assert r.json()["ack_note"] == "pool order placed with Netcup"

        # A Safety Wrapper approval of the tenant (as its wrapper would ask for one), approved in the console.
        async with unit_of_work(sessions) as session:
            pending = await approvals_repo.insert_pending(session, {
                "tenant_id": uuid.UUID(order_id), "agent_id": uuid.uuid4(), "tool": "ghost",
                "action": "posts.delete", "risk_class": "CRITICAL_RED", "args_hash": "c" * 64,
                "args_preview": {"post": "Welcome to <b>Ghost</b>", "permanent": True},
                "reasons": ["deletes a published post"], "expires_at": datetime.now(UTC) + timedelta(minutes=15)})

        def approve() -> None:
            b.get(f"{hub}/console/approvals")
            card = b.wait_for(lambda: b.find(f"#approval-{pending.id}"), what="the pending approval")
            assert "Welcome to <b>Ghost</b>" in card.text  # the preview, as text
            b.screenshot("console-approvals")
            card.find_element(By.NAME, "note").send_keys("customer asked for it")
            card.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
            b.wait_for(lambda: not b.find_all(f"#approval-{pending.id}"), what="the queue without it")

            def approved() -> bool:
                b.get(f"{hub}/console/approvals?status=APPROVED")
                return "approved by operator:ops-anna" in b.find(f"#approval-{pending.id}").text

            b.wait_for(approved, what="the approval under the operator's name")

        await asyncio.to_thread(approve)
        r = await client.get(f"{hub}/api/v1/admin/approvals/{pending.id}", headers=plane.headers)
        assert r.json()["status"] == "APPROVED" and r.json()["decided_by"] == "operator:ops-anna"
