"""Control-plane time from Stripe's webhook to FULFILLED, in sandbox mode with instant stand-ins, as a ratio to
the NATS and Postgres round trips on its critical path.

Run: .venv/bin/letsbe-devstack run -- .venv/bin/python bench/order_flow.py [orders]
Writes its section of docs/benchmarks.md. The six services run as real processes, as in `make run`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from letsbe_contracts import OrderCreatedV1, OrderSpec
from letsbe_platform import migrations
from letsbe_platform.bus import Bus
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import free_port
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports, Sandbox

# The critical path of one order, counted from the code: 4 backbone events, each one outbox commit, one relay
# publish (PubAck), one relay mark, one consumer fetch and one consumer transaction; plus the webhook's
# transaction and, in the provisioner, a RUNNING and a SUCCEEDED commit for each of the 10 steps.
NATS_ROUND_TRIPS = 4 * 2
PG_ROUND_TRIPS = 1 + 4 * 3 + 10 * 2


async def nats_round_trip(bus: Bus, n: int = 200) -> float:
    """Median of: JetStream publish (waiting for the PubAck) + a durable pull consumer fetching that message."""
    sub = await bus.js.pull_subscribe(bus.subject(OrderCreatedV1), durable="bench-rtt", stream=bus.stream)
    spec = OrderSpec(order_id=uuid.uuid4(), domain="bench.example.com", tier="lite", region="eu", tools=(),
                     automation_mode="AUTO", customer_email="b@example.com")
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


async def main(orders: int) -> None:
    url, nats_url = os.environ["DATABASE_URL"], os.environ["NATS_URL"]
    await migrations.upgrade_async(url)
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    bus = await Bus.connect(nats_url, namespace=namespace)
    root = Path(tempfile.mkdtemp(prefix="letsbe-bench-"))
    world = Sandbox(root / "sandbox", Ports(*(free_port() for _ in range(4)))).start()
    env = {"DATABASE_URL": url, "NATS_URL": nats_url, "LETSBE_BUS_NAMESPACE": namespace,
           "LETSBE_SANDBOX_DIR": str(root / "sandbox")}
    plane = ControlPlane(world, env, bus)
    try:
        await plane.start(*(s.name for s in SERVICES))
        print("control plane up", flush=True)
        durations = []
        async with httpx.AsyncClient(timeout=30) as client:
            for i in range(orders + 1):  # the first one warms every process up and is not counted
                created = await plane.order(client, f"bench{i}.example.com", ["uptime_kuma"])
                t0 = time.perf_counter()
                await plane.pay(client, created["checkout_session_id"])
                if not i:  # the warm-up: a stuck flow fails here with every service's log
                    await plane.wait_status(client, created["id"], "FULFILLED", timeout=120)
                while (await plane.get_order(client, created["id"]))["status"] != "FULFILLED":
                    await asyncio.sleep(0.01)
                if i:
                    durations.append(time.perf_counter() - t0)
        nats_rtt = await nats_round_trip(bus)
        pg_rtt = await pg_round_trip(url)
    finally:
        plane.stop_all()
        world.stop()
        await bus.delete_stream()
        await bus.close()
    floor = NATS_ROUND_TRIPS * nats_rtt + PG_ROUND_TRIPS * pg_rtt
    median = statistics.median(durations)
    section = f"""## Order flow: webhook → FULFILLED (`bench/order_flow.py`)

Sandbox mode, instant stand-ins on the loopback VPS, the six services as real processes, {orders} orders one
after another (plus one warm-up). The floor is the NATS and Postgres round trips on the critical path, measured in
the same run: {NATS_ROUND_TRIPS} NATS (publish with PubAck, pull fetch) × {nats_rtt * 1000:.2f} ms and
{PG_ROUND_TRIPS} Postgres commits × {pg_rtt * 1000:.2f} ms = {floor * 1000:.1f} ms.

| measure | value |
|---|---|
| webhook → FULFILLED, median | {median * 1000:.0f} ms |
| webhook → FULFILLED, min / max | {min(durations) * 1000:.0f} / {max(durations) * 1000:.0f} ms |
| NATS + Postgres floor | {floor * 1000:.1f} ms |
| ratio (median / floor) | {median / floor:.0f}× |

The rest is deliberate waiting, not work: polls with fixed intervals (Hetzner action polling and the SSH probe
at 0.2 s, DNS visibility checks at 0.2 s, the provisioner polling the hub for the agent's registration at 0.5 s),
the agents' registration after step 10, and SSH round trips for ten steps. Those intervals are settings; they are
the first thing to shorten (or replace by notifications) when the time to a working tenant matters more.
"""
    write_section("Order flow: webhook → FULFILLED", section)
    print(section)


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
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
