"""Allocation under contention: 200 order-created events, 50 pool servers, two hub processes with several fetchers each.

Exactly 50 orders get pool servers and none is double-booked; the other 150 go to Hetzner overflow (AUTO) or wait
for an operator (MANUAL); the fake Hetzner API sees exactly as many creates as AUTO overflow orders.

The processes run ``python -m letsbe_hub.servers``: the hub's servers context on its own (same worker code as the
full hub, which wires it in ``letsbe_hub.app``), so they start fast and no other context's consumers interfere.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select

from hub_testing.servers import HETZNER_TOKEN, add_servers, order_spec, staged
from letsbe_contracts import OrderCreatedV1, ServerAllocatedV1
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_fakes.ssh_target import SshTarget
from letsbe_hub.db import inbox
from letsbe_hub.servers.allocation import CONSUMER
from letsbe_hub.servers.models import AllocationHold, Server
from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import ServiceProcess

POOL, ORDERS = 50, 200


async def test_200_orders_on_50_pool_servers_across_two_processes_never_double_book(
    sessions, bus, service_env, processes, fake_hetzner: tuple[FakeHetzner, str], ssh_target: SshTarget
):
    fake, hetzner_url = fake_hetzner
    await add_servers(sessions, POOL)
    env = {
        **service_env,
        "LETSBE_HUB_HETZNER_API_URL": hetzner_url,
        "LETSBE_HUB_HETZNER_API_TOKEN": HETZNER_TOKEN,
        "LETSBE_HUB_SERVER_SSH_PORT": str(ssh_target.port),
        "LETSBE_HUB_ALLOCATION_CONCURRENCY": "4",
        "LETSBE_HUB_PROVIDER_POLL_SECONDS": "0.01",
        "LETSBE_HUB_PROVIDER_BACKOFF_SECONDS": "0.01",
        "LETSBE_HUB_SSH_PROBE_SECONDS": "0.05",
        "LETSBE_HUB_LOG_LEVEL": "WARNING",
    }
    hubs = [ServiceProcess("letsbe_hub.servers", env, port_env="LETSBE_HUB_PORT").start() for _ in range(2)]
    processes.extend(hubs)
    await asyncio.gather(*(h.wait_ready(timeout=60) for h in hubs))

    orders = [order_spec(mode="AUTO" if i % 2 else "MANUAL") for i in range(ORDERS)]
    await asyncio.gather(*(bus.publish(OrderCreatedV1(order=o), correlation_id=o.order_id) for o in orders))

    async def handled() -> int:
        async with sessions() as s:
            return await s.scalar(select(func.count()).select_from(inbox).where(inbox.c.consumer == CONSUMER))

    async def all_handled() -> bool:
        assert all(h.proc.poll() is None for h in hubs), hubs[0].logs()[-3000:]
        return await handled() == ORDERS

    await eventually(all_handled, f"all {ORDERS} orders handled by the two hubs", timeout=90, every=0.1)

    async with sessions() as s:
        servers = list((await s.execute(select(Server))).scalars())
        holds = list((await s.execute(select(AllocationHold))).scalars())
    by_order = {o.order_id: o for o in orders}
    pool = [s for s in servers if s.provider == "netcup"]
    overflow = [s for s in servers if s.provider == "hetzner"]

    assert sum(s.status == "RESERVED" for s in pool) == POOL, "every pool server is used"
    assert len({s.order_id for s in pool}) == POOL
    auto_rest = {o.order_id for o in orders if o.automation_mode == "AUTO"} - {s.order_id for s in pool}
    manual_rest = {o.order_id for o in orders if o.automation_mode == "MANUAL"} - {s.order_id for s in pool}
    assert {s.order_id for s in overflow} == auto_rest and len(overflow) == len(auto_rest)
    assert {h.order_id for h in holds} == manual_rest
    assert fake.creates == len(auto_rest) == len(fake.servers), "one Hetzner create per AUTO overflow order"

    events = [e for _, e in await staged(sessions, ServerAllocatedV1)]
    per_server = Counter(e.server.server_id for e in events)
    per_order = Counter(e.order.order_id for e in events)
    assert max(per_server.values()) == 1, "a server was handed to two orders"
    assert max(per_order.values()) == 1 and len(events) == POOL + len(auto_rest)
    assert all(e.order == by_order[e.order.order_id] for e in events)
    assert {e.server.host_key_fingerprint for e in events if e.server.provider == "hetzner"} == {ssh_target.fingerprint}
