"""``letsbe-hub orders …`` against a real hub server: what an operator scripts."""

import asyncio
import json

import httpx
import pytest_asyncio
from typer.testing import CliRunner

from letsbe_contracts.enums import FailureStage, OrderStatus
from letsbe_hub.cli import app as cli
from letsbe_hub.orders.state import transition
from letsbe_hub.orders.testing import insert_order, orders_app, serve
from letsbe_platform.db import unit_of_work


@pytest_asyncio.fixture
async def served(hub_settings):
    async with serve(orders_app(hub_settings)) as url:
        yield url


def _env(url: str, operator: dict) -> dict[str, str]:
    return {"LETSBE_HUB_URL": url, "LETSBE_HUB_TOKEN": operator["Authorization"].removeprefix("Bearer ")}


async def _run(env: dict[str, str], *args: str):
    # The CLI runs its own event loop (asyncio.run), so it gets a thread; the hub keeps serving in this loop.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)


async def test_create_list_and_show_an_order(served, operator, stripe_fake):
    env = _env(served, operator)
    r = await _run(
        env,
        "orders",
        "create",
        "--customer-name",
        "Acme",
        "--email",
        "o@acme.test",
        "--domain",
        "cli.acme.test",
        "--tool",
        "nextcloud",
        "--tool",
        "ghost",
        "--manual",
    )
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert created["status"] == "PENDING_PAYMENT" and created["checkout_url"].startswith("https://checkout.stripe.com/")
    r = await _run(env, "orders", "list", "--status", "PENDING_PAYMENT")
    assert r.exit_code == 0 and created["id"] in r.output and "cli.acme.test" in r.output
    r = await _run(env, "orders", "show", created["id"])
    assert json.loads(r.output)["automation_mode"] == "MANUAL"
    r = await _run(
        env,
        "orders",
        "create",
        "--customer-name",
        "Acme",
        "--email",
        "o@acme.test",
        "--domain",
        "cli2.acme.test",
        "--tool",
        "wordpress",
    )
    assert r.exit_code == 3 and "Unknown tool(s): wordpress" in r.output
    r = await _run({**env, "LETSBE_HUB_TOKEN": "lbh_wrong"}, "orders", "list")
    assert r.exit_code == 3 and "401" in r.output


async def test_watch_follows_an_order_live_and_exits_with_its_outcome(served, operator, sessions):
    env = _env(served, operator)
    oid = await insert_order(sessions, status=OrderStatus.AWAITING_SERVER)
    async with unit_of_work(sessions) as s:  # a failure in the history that a retry has since resolved
        await transition(
            s, oid, OrderStatus.FAILED, actor="hub-on-order-failed", reason="pool empty", stage=FailureStage.ALLOCATION
        )
        await transition(s, oid, OrderStatus.AWAITING_SERVER, actor="operator:jane", reason="retry #1")
    watcher = asyncio.create_task(_run(env, "orders", "watch", str(oid)))
    await asyncio.sleep(1.0)
    assert not watcher.done()  # the past FAILED did not stop it: the order is running again
    async with httpx.AsyncClient(base_url=served) as c:
        await c.post(f"/api/v1/admin/orders/{oid}/cancel", json={"reason": "no longer wanted"}, headers=operator)
    r = await asyncio.wait_for(watcher, 15)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert "AWAITING_SERVER → FAILED" in lines[0] and "pool empty" in lines[0]
    assert "FAILED → AWAITING_SERVER" in lines[1]
    assert "AWAITING_SERVER → CANCELLED" in lines[2] and "no longer wanted" in lines[2]
    assert lines[-1] == "order is CANCELLED: stream ended"

    failing = await insert_order(sessions, status=OrderStatus.DNS_PENDING)
    async with unit_of_work(sessions) as s:
        await transition(s, failing, OrderStatus.FAILED, actor="t", reason="cloudflare", stage=FailureStage.DNS)
    r = await _run(env, "orders", "watch", str(failing), "--json")
    assert r.exit_code == 1
    assert json.loads(r.output.strip().splitlines()[-1])["to"] == "FAILED"
