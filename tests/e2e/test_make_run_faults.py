"""`make run` under fire: the real `letsbe-run`, in sandbox mode with its own Postgres and NATS, takes
orders that customers pay through the Stripe fake. Each of the four services, then Postgres, then NATS is killed
with SIGKILL while an order is caught in the middle of a step. The supervisor restarts what died, and every order
still reaches FULFILLED with each outside effect exactly once: one Hetzner server, one DNS record set, one welcome
email, and an order history without a repeated transition."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from letsbe_platform.devstack import free_port
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing.make_run import Run, eventually, start_run, stop_run, without_servers
from letsbe_sandbox.plane import FAST_RECOVERY

# Each slow step of the sandbox (a server boots, DNS changes propagate, step 2 allocates the swap file) takes this
# long: the window in which a kill lands mid-step.
SLOW = 2.0
HISTORY = [
    "PENDING_PAYMENT",
    "PAYMENT_CONFIRMED",
    "AWAITING_SERVER",
    "SERVER_READY",
    "DNS_PENDING",
    "DNS_READY",
    "PROVISIONING",
    "FULFILLED",
]
MODULES = {s.name: s.module for s in SERVICES}


@dataclass
class Stack:
    """The running `make run` as a customer, an operator and an onlooker of the fakes see it."""

    run: Run
    client: httpx.AsyncClient

    @property
    def sandbox(self) -> Path:
        return self.run.data_dir / "sandbox"

    @property
    def hub(self) -> str:
        return self.run.url("hub-api")

    def world(self) -> dict[str, Any]:
        return json.loads((self.sandbox / "env.json").read_text())

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.sandbox / 'admin-token').read_text().strip()}"}

    async def order(self, domain: str) -> str:
        """Create an order through the admin API and pay it on the Stripe fake (which calls the hub's webhook)."""
        r = await self.client.post(
            f"{self.hub}/api/v1/admin/orders",
            headers=self.headers,
            json={
                "customer_name": "Chaos Customer",
                "customer_email": f"owner@{domain}",
                "domain": domain,
                "tier": "build",
                "region": "eu",
                "tools": ["nextcloud"],
            },
        )
        assert r.status_code == 201, r.text
        created = r.json()
        stripe = self.world()["fakes"]["stripe"]
        paid = await self.client.post(f"{stripe}/_fake/checkout/sessions/{created['checkout_session_id']}/complete")
        assert paid.status_code == 200 and paid.json()["webhook_status"] == 200, paid.text
        return created["id"]

    async def get(self, order_id: str) -> dict[str, Any] | None:
        try:
            r = await self.client.get(f"{self.hub}/api/v1/admin/orders/{order_id}", headers=self.headers)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    async def status(self, order_id: str) -> str | None:
        order = await self.get(order_id)
        return order["status"] if order else None

    # --- the fakes' persisted state (.data/sandbox/state) and the sandbox's mailbox and VPSes -----------------------

    def state(self, fake: str) -> dict[str, Any]:
        try:
            return json.loads((self.sandbox / "state" / f"{fake}.json").read_text())
        except (OSError, ValueError):
            return {}

    def servers_of(self, order_id: str) -> list[dict[str, Any]]:
        return [s for s in self.state("hetzner").get("servers", []) if s["labels"].get("letsbe-order") == order_id]

    def records(self, domain: str) -> list[dict[str, Any]]:
        zones = [z for z in self.state("cloudflare").get("zones", []) if z["name"] == domain]
        return [r for z in zones for r in z["records"].values()]

    def swap_file_started(self, order_id: str) -> bool:
        servers = self.servers_of(order_id)
        if not servers:
            return False
        calls = self.sandbox / "vps" / servers[0]["public_net"]["ipv4"]["ip"] / ".standins/ctl/calls.log"
        return calls.exists() and "\nfallocate " in "\n" + calls.read_text()

    def mails_to(self, address: str) -> list[Any]:
        mails = [
            message_from_bytes(p.read_bytes(), policy=policy.default) for p in (self.sandbox / "mail").glob("*.eml")
        ]
        return [m for m in mails if m["To"] == address]


# Where an order is caught when something is killed: each is the middle of a step, proven from outside.
async def server_booting(stack: Stack, order_id: str, domain: str) -> bool:
    """The hub's allocation worker created the server at Hetzner and waits for it to boot."""
    servers = stack.servers_of(order_id)
    return (
        bool(servers) and servers[0]["status"] == "initializing" and await stack.status(order_id) == "AWAITING_SERVER"
    )


async def dns_propagating(stack: Stack, order_id: str, domain: str) -> bool:
    """The DNS service wrote the records and waits to see them on the nameservers."""
    return bool(stack.records(domain)) and await stack.status(order_id) == "DNS_PENDING"


async def swap_file_allocating(stack: Stack, order_id: str, domain: str) -> bool:
    """The provisioner is in step 2, waiting for the swap file."""
    return stack.swap_file_started(order_id) and await stack.status(order_id) == "PROVISIONING"


async def under_way(stack: Stack, order_id: str, domain: str) -> bool:
    return await stack.status(order_id) not in (None, "FULFILLED")


Stage = Callable[[Stack, str, str], Awaitable[bool]]
# Two waves of orders; the first order of each is watched, and caught at each stage in turn. It cannot get past a
# stage before the process killed at the one before is back (the hub moves every order on, DNS gates provisioning,
# and nothing moves without Postgres or NATS), so the next kill lands mid-step too.
WAVES: list[list[tuple[str, Stage]]] = [
    [
        ("hub-api", server_booting),
        ("dns", dns_propagating),
        ("provisioner", swap_file_allocating),
        ("monitor", under_way),
    ],
    [("postgres", server_booting), ("nats", dns_propagating)],
]
ORDERS_PER_WAVE = 2


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[Stack]:
    # Short: each sandbox VPS's Docker socket lives under it, and a unix socket path has at most 107 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="lbrun-"))
    env = {
        **{k: v for k, v in without_servers().items() if k != "LETSBE_SANDBOX_DIR"},  # the sandbox in the data dir
        **FAST_RECOVERY,
        "LETSBE_SANDBOX": "1",
        "LETSBE_SANDBOX_SLOW_SECONDS": str(SLOW),
        "LETSBE_PG_PORT": str(free_port()),
        "LETSBE_NATS_PORT": str(free_port()),
    }
    run = start_run(tmp, env)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await eventually(run.all_ready, "every service of letsbe-run ready", timeout=120)
            yield Stack(run, client)
    finally:
        code = stop_run(run)
        out = run.output()
        shutil.rmtree(tmp, ignore_errors=True)
        assert code == 0, out[-4000:]
        # Ctrl-C did not wait out a grace period for the tenants' long-polls (and cut them off with tracebacks).
        assert "timeout graceful shutdown exceeded" not in out, out[-4000:]


def kill(run: Run, target: str) -> int:
    pid = run.server_pid(target) if target in ("postgres", "nats") else run.child_pid(MODULES[target])
    assert pid is not None, f"no {target} process"
    os.kill(pid, signal.SIGKILL)
    return pid


async def recovered(run: Run, target: str, old_pid: int) -> None:
    """The supervisor says it restarted ``target``, a new process runs it, and the services answer again."""
    if target in ("postgres", "nats"):
        said = (f"embedded {target} is not running; starting it again", f"embedded {target} is running again")
        new_pid = lambda: run.server_pid(target)  # noqa: E731
        answering = run.all_ready
    else:
        said = (f"{target} exited with -9; restarting it in", f"{target} is ready again")
        new_pid = lambda: run.child_pid(MODULES[target])  # noqa: E731
        answering = lambda: run.ready(target)  # noqa: E731

    async def back() -> bool:
        pid = new_pid()
        return all(s in run.output() for s in said) and pid not in (None, old_pid) and await answering()

    await eventually(back, f"{target} restarted by letsbe-run and answering again", timeout=90, every=0.1)


# A whole `make run` from start to stop: well under two minutes on an idle 2-core machine, more on a busy one.
@pytest.mark.timeout(300)
async def test_killing_each_process_of_make_run_mid_flow_still_fulfils_every_order_once(stack: Stack):
    run = stack.run
    orders: dict[str, tuple[str, datetime]] = {}  # order id -> (domain, when the first kill hit it under way)
    kills: list[tuple[str, str, datetime]] = []  # (what was killed, the watched order, when)

    async def explained(waiting: Awaitable[Any]) -> Any:
        try:
            return await waiting
        except AssertionError as exc:
            statuses = {domain: await stack.status(o) for o, (domain, _) in orders.items()}
            raise AssertionError(f"{exc}\norders: {statuses}\n{run.output()[-8000:]}") from None

    for w, wave in enumerate(WAVES, 1):
        placed = []
        for n in range(1, ORDERS_PER_WAVE + 1):
            domain = f"chaos{w}-{n}.example.com"
            placed.append((await stack.order(domain), domain))
        watched, domain = placed[0]
        for target, stage in wave:
            caught = partial(stage, stack, watched, domain)
            await explained(eventually(caught, f"{domain} {stage.__name__}", timeout=60, every=0.1))
            killed_at = datetime.now(UTC)
            pid = kill(run, target)
            kills.append((target, watched, killed_at))
            for order_id, order_domain in placed:
                orders.setdefault(order_id, (order_domain, killed_at))
            await explained(recovered(run, target, pid))

    # Every order gets there, its welcome email sent once (a sent email is never sent again).
    async def all_fulfilled() -> dict[str, dict[str, Any]] | None:
        got = {order_id: await stack.get(order_id) for order_id in orders}
        done = all(
            o is not None and o["status"] == "FULFILLED" and (o["welcome_email"] or {}).get("state") == "sent"
            for o in got.values()
        )
        return got if done else None  # type: ignore[return-value]

    final = await explained(eventually(all_fulfilled, "every order FULFILLED, its welcome email sent", timeout=90))

    def fulfilled_at(order_id: str) -> datetime:
        return datetime.fromisoformat(final[order_id]["history"][-1]["at"])

    # Each kill landed while the watched order was under way, and every order was under way at its wave's first.
    for target, order_id, killed_at in kills:
        assert fulfilled_at(order_id) > killed_at, (target, final[order_id]["history"])
    for order_id, (_, first_kill) in orders.items():
        assert fulfilled_at(order_id) > first_kill, final[order_id]["history"]

    hetzner = stack.state("hetzner")
    creates = [a for a in hetzner["actions"] if a["command"] == "create_server"]
    assert len(creates) == len(orders), creates
    assert not [a for a in hetzner["actions"] if a["command"] == "delete_server"]
    for order_id, (domain, _) in orders.items():
        order = final[order_id]
        assert [t["to_status"] for t in order["history"]] == HISTORY, order["history"]
        assert len(stack.servers_of(order_id)) == 1, domain
        records = sorted((r["type"], r["name"]) for r in stack.records(domain))
        assert records == sorted((t, n) for t in ("A", "AAAA") for n in (domain, f"*.{domain}")), domain
        assert len(stack.mails_to(f"owner@{domain}")) == 1, domain
        assert order["welcome_email"]["attempts"] == 1, domain
