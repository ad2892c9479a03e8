"""The event chain end to end: hub outbox → JetStream → a consumer in another process → its outbox → JetStream,
with that process killed (-9) mid-stream and restarted. Nothing lost, nothing handled twice."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import text

from letsbe_contracts import OrderCreatedV1, OrderSpec, ServerAllocatedV1, decode
from letsbe_hub.db import outbox as hub_outbox
from letsbe_platform.db import unit_of_work
from letsbe_platform.outbox import OutboxRelay, add_event
from letsbe_platform.testing import eventually
from letsbe_platform.testing.stream import stream_envelopes

N = 120
DURABLE = "chain-on-order-created"  # the worker's consumer
WORKER = Path(__file__).with_name("chain_worker.py")


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(WORKER)], env={**os.environ, **env}, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


async def side_effects(engine) -> list[tuple[uuid.UUID, int]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text("SELECT order_id, pid FROM public.side_effects"))).all()]


async def settled(bus) -> bool:
    info = await bus.js.consumer_info(bus.stream, DURABLE)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def relayed(engine) -> bool:
    """The worker's outbox holds one server-allocated per order, every one published."""
    async with engine.connect() as conn:
        total, unsent = (
            await conn.execute(text("SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM dns.outbox"))
        ).one()
    return total >= N and unsent == 0  # more than N (a double) fails the checks below


async def test_order_created_flows_to_another_process_which_survives_kill_9(
    engine, sessions, database_url, bus, service_env
):
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE public.side_effects (order_id uuid NOT NULL, pid int NOT NULL)"))

    orders = [
        OrderSpec(
            order_id=uuid.uuid4(),
            domain=f"shop{i}.example.com",
            tier="build",
            region="eu",
            tools=("ghost",),
            automation_mode="AUTO",
            customer_email="owner@example.com",
        )
        for i in range(N)
    ]
    async with unit_of_work(sessions) as s:  # the hub's side: state change + outbox rows in one transaction
        for o in orders:
            await add_event(s, hub_outbox, OrderCreatedV1(order=o), correlation_id=o.order_id)

    hub_relay = OutboxRelay(database_url, "hub", bus)
    relay_task = asyncio.create_task(hub_relay.run())
    first = start_worker({**service_env, "CHAIN_DELAY": "0.02"})
    try:
        async with asyncio.timeout(30):  # kill it mid-stream, inside a handler's transaction most likely
            while len(await side_effects(engine)) < N // 4:
                await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        done_before_kill = len(await side_effects(engine))
        assert done_before_kill < N, "the worker finished before it could be killed; raise N"

        second = start_worker({**service_env, "CHAIN_DELAY": "0"})
        try:
            async with asyncio.timeout(60):
                while len(await side_effects(engine)) < N:
                    await asyncio.sleep(0.05)
            # Every delivery acked and nothing left to deliver: the message the kill left unacked was redelivered
            # (after ack_wait) and handled, and any other redelivery already shows in the side effects.
            await eventually(lambda: settled(bus), "every order-created acked", timeout=30)
            await eventually(lambda: relayed(engine), "every server-allocated relayed", timeout=30)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=20) == 0  # graceful drain on SIGTERM
    finally:
        if first.poll() is None:
            first.kill()
        hub_relay.stop()
        await relay_task

    effects = await side_effects(engine)
    assert sorted(o for o, _ in effects) == sorted(o.order_id for o in orders)  # each handled exactly once
    assert {pid for _, pid in effects} == {first.pid, second.pid}  # both processes did part of the work

    allocated = [decode(env) for env in await stream_envelopes(bus, ServerAllocatedV1)]
    assert sorted(e.order.order_id for e in allocated) == sorted(o.order_id for o in orders)  # next event: once each
