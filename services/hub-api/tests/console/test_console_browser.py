"""The console in a real headless Chromium. A rollout: start it, watch it stop for approval, approve, then abort
before 100 %; the rollout's history names the operator at each step. A pool server registered (its host key read
and pinned) and retired; the migration check run from the costs page. (The sandbox order walk, alert and approval in
the browser: tests/e2e/test_console.py.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from selenium.webdriver.common.by import By

from hub_testing.browser import Browser, browser  # noqa: F401 - fixture: one Chromium for this module
from hub_testing.console import TOTP_KEY, make_operator
from hub_testing.orders import serve
from hub_testing.servers import add_servers
from hub_testing.tenants import FakeFleet, enroll, fast_hub_settings
from letsbe_fakes.ssh_target import SshTarget
from letsbe_hub.app import create_app
from letsbe_hub.servers.models import InventoryStatus, Server

IMAGE = "registry.letsbe.biz/letsbe/openclaw"
DIGEST = "sha256:" + "e" * 64
STAGES = "canary 25 0\nwide 50 0 approval\nall 100 0 approval"  # of 4 tenants: 1, 1, 2


@pytest_asyncio.fixture
async def hub_url(database_url: str, nats_url: str, bus_namespace: str) -> AsyncIterator[str]:
    settings = fast_hub_settings(database_url, nats_url, bus_namespace, operator_totp_key=TOTP_KEY,
                                 web_cookie_secure=False)
    async with serve(create_app(settings)) as url:
        yield url


def sign_in(b: Browser, hub_url: str, account) -> None:
    b.get(f"{hub_url}/console/sign-in")
    b.find("input[name=name]").send_keys(account.name)
    b.find("input[name=password]").send_keys(account.password)
    b.find("input[name=code]").send_keys(account.code())
    b.find("form button[type=submit]").click()
    b.wait_for(lambda: "Hub health" in b.text, what="the overview after sign-in")


async def test_start_approve_and_abort_a_rollout(hub_url, browser: Browser, sessions, admin):  # noqa: F811
    b = browser
    account = await make_operator(sessions, "ops-bob")
    async with httpx.AsyncClient(base_url=hub_url, timeout=30) as hub:
        agents = [await enroll(hub, admin) for _ in range(4)]
        ok = lambda _t: {"status": "SUCCEEDED", "result": {"digest": DIGEST}}  # noqa: E731
        with FakeFleet(hub, agents, ok):

            def start() -> str:
                sign_in(b, hub_url, account)
                b.get(f"{hub_url}/console/rollouts")
                b.find("details summary").click()
                form = b.find("form[action='/console/rollouts']")
                for name, value in [("component", "openclaw"), ("image", IMAGE), ("digest", DIGEST),
                                    ("version", "2.0.0")]:
                    form.find_element(By.NAME, name).send_keys(value)
                stages = form.find_element(By.NAME, "stages")
                stages.clear()
                stages.send_keys(STAGES)
                form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                b.wait_for(lambda: "/console/rollouts/" in b.url, what="the new rollout's page")
                # The page follows the rollout live and redraws when its state changes.
                b.wait_for(lambda: "AWAITING_APPROVAL" in b.find("#rollout-status").text,
                           what="the rollout to wait for approval of stage 'wide'", timeout=60)
                b.find("form[action$='/approve'] button").click()
                b.wait_for(lambda: "approved by operator:ops-bob" in b.find("#log").text,
                           what="the approval in the events")
                b.wait_for(lambda: "AWAITING_APPROVAL" in b.find("#rollout-status").text
                           and "all" in b.find("form[action$='/approve'] button").text,
                           what="the rollout to wait before 100 %", timeout=60)
                b.screenshot("console-rollout")
                abort = b.find("form[action$='/abort']")
                abort.find_element(By.NAME, "reason").send_keys("bad canary metrics")
                abort.find_element(By.CSS_SELECTOR, "input[name=rollback][value=false]").click()
                abort.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                b.wait_for(lambda: "ABORTED" in b.find("#rollout-status").text, what="the rollout aborted")
                assert not b.console_errors()
                return b.url.rsplit("/", 1)[-1]

            rollout_id = await asyncio.to_thread(start)

        view = (await hub.get(f"/api/v1/admin/rollouts/{rollout_id}", headers=admin)).json()
        assert view["status"] == "ABORTED" and view["created_by"] == "operator:ops-bob"
        assert view["approved_by"] == "operator:ops-bob" and "(operator:ops-bob)" in view["reason"]
        assert [s["counts"].get("SUCCEEDED", 0) for s in view["stages"]] == [1, 1, 0]


async def test_register_a_pool_server_retire_it_and_run_the_migration_check(hub_url, browser: Browser,  # noqa: F811
                                                                            sessions):
    b = browser
    account = await make_operator(sessions, "ops-carla")
    tenant_id = uuid.uuid4()
    await add_servers(sessions, 1, provider="hetzner", status=InventoryStatus.IN_USE, tenant_id=tenant_id,
                      order_id=tenant_id)
    await add_servers(sessions, 2)  # spare Netcup servers in the same pool: a migration target

    def register_and_retire(target: SshTarget) -> str:
        # An earlier test's page keeps reconnecting its streams to that test's stopped hub: leave it, then drain
        # the log of what it reported.
        b.get("about:blank")
        b.console_errors()
        sign_in(b, hub_url, account)
        b.get(f"{hub_url}/console/servers")
        b.find("#register summary").click()
        form = b.find("#register form")
        for name, value in [("provider_ref", "nc-4711"), ("name", "pool-eu-7"), ("ipv4", "127.0.0.1")]:
            form.find_element(By.NAME, name).send_keys(value)
        port = form.find_element(By.NAME, "ssh_port")
        port.clear()
        port.send_keys(str(target.port))  # the fingerprint stays empty: the hub reads the key and pins it
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        b.wait_for(lambda: b.find("#host-key").text == target.fingerprint, what="the pinned host key")
        server_url = b.url.split("?")[0]
        b.screenshot("console-server")
        retire = b.find("form[action$='/retire']")
        button = retire.find_element(By.CSS_SELECTOR, "button[type=submit]")
        assert not button.is_enabled()  # until the name is typed
        retire.find_element(By.NAME, "confirm").send_keys("pool-eu-7")
        button.click()
        b.wait_for(lambda: "RETIRED" in b.find("#server-status").text, what="the server retired")
        b.get(f"{hub_url}/console/servers")
        b.screenshot("console-servers")
        b.get(f"{hub_url}/console/servers/costs")
        b.find("form[action='/console/servers/migrations/check'] button").click()
        b.wait_for(lambda: str(tenant_id) in b.find("#proposals").text, what="the migration proposal")
        b.screenshot("console-costs")
        assert not b.console_errors()
        b.get("about:blank")  # no badge stream left reconnecting to this test's hub once it stops
        return server_url.rsplit("/", 1)[-1]

    with SshTarget() as target:
        server_id = await asyncio.to_thread(register_and_retire, target)
    async with sessions() as s:
        server = await s.get(Server, uuid.UUID(server_id))
    assert server.status == "RETIRED" and server.host_key_fingerprint == target.fingerprint
