"""The servers context's consumers on a real JetStream bus."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from hub_testing.servers import add_servers, order_spec, staged
from letsbe_contracts import OrderCreatedV1, ProvisionedV1, ServerAllocatedV1
from letsbe_hub.servers.handlers import ServerWorkers
from letsbe_hub.servers.models import InventoryStatus, Server
from letsbe_platform.testing import eventually


async def test_order_created_on_the_bus_is_allocated_and_provisioned_puts_the_server_in_use(sessions, bus, settings):
    [pool] = await add_servers(sessions, 1)
    workers = ServerWorkers(sessions, bus, settings)
    tasks = [asyncio.create_task(workers.run_allocation()), asyncio.create_task(workers.run_on_provisioned())]
    try:
        order = order_spec()
        await bus.publish(OrderCreatedV1(order=order), correlation_id=order.order_id)
        [(_, allocated)] = await eventually(lambda: staged(sessions, ServerAllocatedV1), timeout=15)
        assert allocated.server.server_id == pool.id

        provisioned = ProvisionedV1(
            order=order, server=allocated.server, tenant_id=order.order_id, job_id=uuid.uuid4(), duration_seconds=300
        )
        for _ in range(2):  # a duplicate delivery changes nothing
            await bus.publish(provisioned, correlation_id=order.order_id, event_id=uuid.uuid5(order.order_id, "p"))

        async def in_use():
            async with sessions() as s:
                server = (await s.execute(select(Server))).scalar_one()
                return server if server.status == InventoryStatus.IN_USE else None

        server = await eventually(in_use, timeout=15)
        assert server.tenant_id == order.order_id
    finally:
        workers.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
