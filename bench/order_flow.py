"""Control-plane time from Stripe's webhook to FULFILLED, in sandbox mode with instant stand-ins, as a ratio to
the NATS and Postgres round trips on its critical path.

Run: .venv/bin/letsbe-devstack run -- .venv/bin/python bench/order_flow.py [orders] [--write]
Prints its section of docs/benchmarks.md; with --write, replaces that section (and only it) in the file. The six
services run as real processes, as in `make run`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

from letsbe_contracts import OrderCreatedV1, OrderSpec, ProvisioningStepV1
from letsbe_contracts.events import OrderStatusChangedV1
from letsbe_platform import migrations
from letsbe_platform.bus import Bus
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import free_port
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports, Sandbox

# The critical path of one order, counted from the code: 4 backbone events, each one outbox commit, one relay
# publish (PubAck), one relay mark, one consumer fetch and one consumer transaction; plus the webhook's
# transaction; in the provisioner step 1's RUNNING commit and one commit per step (its SUCCEEDED with the next
# step's RUNNING); and the Safety Wrapper's registration (its commit, the relay's publish of
# tenant-agent-registered and its mark). A lower bound: it leaves out what a real order needs besides (the HTTP
# calls to Stripe, Hetzner, Cloudflare and the hub, the DNS queries, the SSH handshake and a channel per step, each
# transaction's statements before its commit).
NATS_ROUND_TRIPS = 4 * 2 + 1
PG_ROUND_TRIPS = 1 + 4 * 3 + 1 + 10 + 2


async def nats_round_trip(bus: Bus, n: int = 200) -> float:
    """Median of: JetStream publish (waiting for the PubAck) + a durable pull consumer fetching that message."""
    sub = await bus.js.pull_subscribe(bus.subject(OrderCreatedV1), durable="bench-rtt", stream=bus.stream)
    spec = OrderSpec(
        order_id=uuid.uuid4(),
        domain="bench.example.com",
        tier="lite",
        region="eu",
        tools=(),
        automation_mode="AUTO",
        customer_email="b@example.com",
    )
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await bus.publish(OrderCreatedV1(order=spec), correlation_id="bench")
        [msg] = await sub.fetch(1, timeout=5)
        await msg.ack()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


async def pg_round_trip(url: str, n: int = 200) -> float:
    """Median of one committed transaction with one insert (what an outbox or inbox write costs)."""
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TEMP TABLE bench_rtt (id uuid)")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.execute("INSERT INTO bench_rtt VALUES ($1)", uuid.uuid4())
        samples.append(time.perf_counter() - t0)
    await conn.close()
    return statistics.median(samples)


# The stages of one order, each from the end of the one before (the first from the payment) to a moment the system
# records: the order's transitions (the hub's clock), the provisioner's step events, the agent's registration.
STAGES = (
    ("webhook: payment confirmed, order-created staged", "AWAITING_SERVER"),
    ("server: Hetzner create and boot, SSH probe, server-allocated to the hub", "DNS_PENDING"),
    ("DNS: records written, visible on the nameserver, dns-ready to the hub", "PROVISIONING"),
    ("provisioner: dns-ready received, job created, step 1 started", "step 1 RUNNING"),
    ("ten steps over SSH", "step 10 SUCCEEDED"),
    ("step 10 done → the VPS starts its agents (compose up seen)", "agents started"),
    ("agent processes start, the Safety Wrapper registers", "registered"),
    ("registration seen, credentials stored, provisioned → FULFILLED", "FULFILLED"),
)


async def milestones(plane: ControlPlane, client: httpx.AsyncClient, order_id: str, steps: list) -> dict[str, float]:
    """Wall-clock time of each stage's end for one order."""
    order = await plane.get_order(client, order_id)
    out = {t["to_status"]: _ts(t["at"]) for t in order["history"]}
    for env in steps:
        key = f"step {env.payload['step']} {env.payload['status']}"
        out.setdefault(key, env.occurred_at.timestamp())  # the first attempt's; a retry would show in the total
    tenant = await plane.tenant(client, order["tenant_id"])
    out["registered"] = min(_ts(a["registered_at"]) for a in tenant["agents"] if a["agent"] == "safety-wrapper")
    vps = plane.world.vps_of_order(order_id)
    assert vps.agents_started_at is not None
    out["agents started"] = vps.agents_started_at
    return out


def stage_work(plane: ControlPlane, at: dict[str, float], order_id: str, start: float, end: float) -> float:
    """The work within one stage: the SSH commands' time inside it, or all of it for the agents' start-up."""
    if (start, end) == (at["agents started"], at["registered"]):
        return end - start
    spans = plane.world.vps_of_order(order_id).target.command_spans
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in spans)


def work_seconds(plane: ControlPlane, at: dict[str, float], order_id: str) -> float:
    """What the order spends on work rather than the control plane: the steps' scripts running on the VPS (bash,
    the stand-ins, openssl …) and the agents' start-up (a Python process importing its stack, then registering)."""
    return plane.world.vps_of_order(order_id).target.command_seconds + at["registered"] - at["agents started"]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def main(orders: int, write: bool) -> None:
    load_before = os.getloadavg()
    url, nats_url = os.environ["DATABASE_URL"], os.environ["NATS_URL"]
    await migrations.upgrade_async(url)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    bus = await Bus.connect(nats_url, namespace=namespace)
    root = Path(tempfile.mkdtemp(prefix="letsbe-bench-"))
    world = Sandbox(root / "sandbox", Ports(*(free_port() for _ in range(4)))).start()
    env = {
        "DATABASE_URL": url,
        "NATS_URL": nats_url,
        "LETSBE_BUS_NAMESPACE": namespace,
        "LETSBE_SANDBOX_DIR": str(root / "sandbox"),
    }
    plane = ControlPlane(world, env, bus)
    try:
        await plane.start(*(s.name for s in SERVICES))
        print("control plane up", flush=True)
        durations = []
        paid: dict[str, float] = {}
        # The end of an order is its FULFILLED event, not a poll of the hub: a poll every few ms would take CPU from
        # the services it measures (two cores for all of them). Its time is the transition's, from the hub's history.
        ended: dict[str, asyncio.Future[str]] = {}

        def on_status(event: OrderStatusChangedV1) -> None:
            future = ended.get(str(event.order_id))
            if future is not None and not future.done() and event.to_status in ("FULFILLED", "FAILED"):
                future.set_result(event.to_status)

        listening = await bus.listen(OrderStatusChangedV1, on_status)
        async with httpx.AsyncClient(timeout=30) as client:
            for i in range(orders + 1):  # the first one warms every process up and is not counted
                created = await plane.order(client, f"bench{i}.example.com", ["uptime_kuma"])
                ended[created["id"]] = asyncio.get_running_loop().create_future()
                t_paid = time.time()
                await plane.pay(client, created["checkout_session_id"])
                try:
                    async with asyncio.timeout(120):
                        outcome = await ended[created["id"]]
                except TimeoutError:
                    outcome = "no outcome"
                if outcome != "FULFILLED":  # a stuck flow fails here with every service's log
                    await plane.wait_status(client, created["id"], "FULFILLED", timeout=1)
                if i:
                    paid[created["id"]] = t_paid
            await listening.unsubscribe()
            step_events = await plane.events(ProvisioningStepV1)
            stage_seconds = [[0.0] * len(STAGES) for _ in paid]
            stage_control = [[0.0] * len(STAGES) for _ in paid]  # the same less the work in it
            control = []  # webhook → FULFILLED less the work: the order as if its steps and agents were instant
            for n, (order_id, t_paid) in enumerate(paid.items()):
                at = await milestones(plane, client, order_id, [e for e in step_events if e.correlation_id == order_id])
                durations.append(at["FULFILLED"] - t_paid)
                control.append(durations[n] - work_seconds(plane, at, order_id))
                previous = t_paid
                for k, (_, end) in enumerate(STAGES):
                    stage_seconds[n][k] = at[end] - previous
                    stage_control[n][k] = stage_seconds[n][k] - stage_work(plane, at, order_id, previous, at[end])
                    previous = at[end]
        nats_rtt = await nats_round_trip(bus)
        pg_rtt = await pg_round_trip(url)
    finally:
        plane.stop_all()
        world.stop()
        await bus.delete_stream()
        await bus.close()
    floor = NATS_ROUND_TRIPS * nats_rtt + PG_ROUND_TRIPS * pg_rtt
    load_after = os.getloadavg()
    median = statistics.median(durations)
    plane_median = statistics.median(control)
    total, total_control = sum(map(sum, stage_seconds)), sum(map(sum, stage_control))
    stage_rows = "\n".join(
        f"| {name} | {statistics.median(row[k] for row in stage_seconds) * 1000:.0f} ms | "
        f"{sum(row[k] for row in stage_seconds) / total * 100:.0f} % | "
        f"{statistics.median(row[k] for row in stage_control) * 1000:.0f} ms | "
        f"{sum(row[k] for row in stage_control) / total_control * 100:.0f} % |"
        for k, (name, _) in enumerate(STAGES)
    )
    section = f"""## Order flow: webhook → FULFILLED (`bench/order_flow.py`)

Sandbox mode, instant stand-ins on the loopback VPS, the six services as real processes, {orders} orders one
after another (plus one warm-up). The floor is the NATS and Postgres round trips on the critical path, measured in
the same run: {NATS_ROUND_TRIPS} NATS (publish with PubAck, pull fetch) × {nats_rtt * 1000:.2f} ms and
{PG_ROUND_TRIPS} Postgres commits × {pg_rtt * 1000:.2f} ms = {floor * 1000:.1f} ms. "With instant steps" is each
order's time less its work: the steps' scripts running on the VPS (the SSH target's command time) and the agents'
start-up (process start to registration). Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after.

| measure | value |
|---|---|
| webhook → FULFILLED, median | {median * 1000:.0f} ms |
| webhook → FULFILLED, min / max | {min(durations) * 1000:.0f} / {max(durations) * 1000:.0f} ms |
| with instant steps (less scripts and agent start-up), median | {plane_median * 1000:.0f} ms |
| with instant steps, min / max | {min(control) * 1000:.0f} / {max(control) * 1000:.0f} ms |
| NATS + Postgres floor | {floor * 1000:.1f} ms |
| ratio (median / floor): all, with instant steps | {median / floor:.0f}×, {plane_median / floor:.1f}× |

Where the time goes, stage by stage (each from the end of the one before; the hub's transitions, the provisioner's
step events and the agent's registration time, all on this machine's clock; share of the summed time of all orders),
and the same less the work in it (the SSH commands' time within the stage; the agents' start-up), the control plane's
part:

| stage | median | share | control plane, median | share |
|---|---|---|---|---|
{stage_rows}

No stage waits for a fixed interval any more: the allocation polls Hetzner's actions and the new server's SSH
from 1 ms (doubling; in production from 1 s, as Hetzner's own clients do), the DNS service checks the nameserver
from 5 ms, the outbox relays wake on their commit's NOTIFY, the provisioner's wait for the agent ends on the hub's
tenant-agent-registered event (the event is the answer: no hub call after it), and the sandbox starts a VPS's agents
as the SSH command that ran `docker compose up` ends. Each of those polls on as the fallback for a lost notification.
Nor does one call wait for another it does not need: the DNS service writes a tenant's records at the same time, the
provisioner opens the next step's SSH connection during the commits before it, asks the hub for step 8's off-site
target and step 10's registration tokens while the step before runs, and stores the credentials while the agents
start; an outbox row and its NOTIFY are one statement (compiled once: a single row is not a multi-row VALUES), and a
step's SUCCEEDED and the next step's RUNNING are one commit; a transaction checks its pooled connection in one
round trip, not the pre-ping's three. What is left is work: the ten steps' scripts (bash and the
tools they run, on this machine's CPU) and the agents' start (a Python process importing its web stack before it
registers).
"""
    print(section)
    if write:
        write_section("Order flow: webhook → FULFILLED", section)


def write_section(title: str, section: str) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (or append it)."""
    path = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    marker = f"## {title}"
    if marker in text:
        before, _, after = text.partition(marker)
        rest = after.split("\n## ", 1)
        text = before + section.rstrip() + ("\n\n## " + rest[1] if len(rest) > 1 else "\n")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--write"]
    asyncio.run(main(int(args[0]) if args else 5, write="--write" in sys.argv[1:]))
