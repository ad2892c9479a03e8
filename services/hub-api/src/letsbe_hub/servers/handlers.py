"""The servers context's background work, wired from ``letsbe_hub.app.start_workers``.

- ``hub-allocate-on-order-created``: the allocation worker (several fetchers per process; safe across processes).
- ``hub-servers-on-provisioned``: a provisioned tenant's server goes RESERVED → IN_USE.
- ``server-pool-check``: below-minimum alerts + cleanup of stuck overflow attempts, every ``pool_check_seconds``.
- ``server-migration-check``: Hetzner → Netcup proposals, every ``migration_check_seconds`` (one per tenant a month).

Replica safety: the two consumers by JetStream's exclusivity (a durable shared by every replica hands each message
to one of them; the inbox claim absorbs a redelivery); the two checks by a lease (one replica at a time: two would
raise the same alert or propose the same migration twice in a round, and clean up the same stuck attempt).
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import OrderCreatedV1, ProvisionedV1
from letsbe_hub.config import ServerSettings
from letsbe_hub.db import inbox
from letsbe_hub.providers.factory import build_hetzner
from letsbe_hub.servers import migrations, pools
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.allocation import CONSUMER, Allocator
from letsbe_platform.bus import Bus, Consumer, Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import inboxed
from letsbe_platform.web import Runtime
from letsbe_platform.workers import Job

log = get_logger(__name__)

ON_PROVISIONED = "hub-servers-on-provisioned"


class ServerWorkers:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], bus: Bus, settings: ServerSettings):
        self.sessions = sessions
        self.bus = bus
        self.settings = settings
        self._stopping = asyncio.Event()
        self._consumers: list[Consumer] = []

    def stop(self) -> None:
        self._stopping.set()
        for c in self._consumers:
            c.stop()

    async def _consume(self, consumer: Consumer) -> None:
        self._consumers.append(consumer)
        if self._stopping.is_set():
            return
        await consumer.run()

    async def run_allocation(self) -> None:
        hetzner = build_hetzner(self.settings)
        try:
            allocator = Allocator(self.sessions, self.settings, hetzner)
            await self._consume(
                self.bus.consumer(
                    CONSUMER,
                    OrderCreatedV1,
                    allocator.on_order_created,
                    concurrency=self.settings.allocation_concurrency,
                    ack_wait=self.settings.allocation_ack_wait_seconds,
                )
            )
        finally:
            if hetzner is not None:
                await hetzner.aclose()

    async def run_on_provisioned(self) -> None:
        await self._consume(self.bus.consumer(ON_PROVISIONED, ProvisionedV1, self.on_provisioned))

    @inboxed(inbox)
    async def on_provisioned(self, s: AsyncSession, event: ProvisionedV1, delivery: Delivery) -> None:
        await repo.mark_in_use(s, event.server.server_id, event.tenant_id)

    def pool_check(self, allocator: Allocator) -> Job:
        async def job() -> None:
            async with unit_of_work(self.sessions) as s:
                await pools.check_pools(s)
            await allocator.sweep_stale()

        return job

    async def migration_check(self) -> None:
        async with unit_of_work(self.sessions) as s:
            await migrations.propose_migrations(s)


def start(rt: Runtime, settings: ServerSettings) -> None:
    workers = ServerWorkers(rt.sessions, rt.bus, settings)
    rt.start(CONSUMER, workers.run_allocation(), workers.stop)
    rt.start(ON_PROVISIONED, workers.run_on_provisioned(), workers.stop)
    hetzner = build_hetzner(settings)
    if hetzner is not None:
        closed = asyncio.Event()

        async def close_when_stopped() -> None:
            await closed.wait()
            await hetzner.aclose()

        rt.start("pool-check-hetzner-client", close_when_stopped(), closed.set)
    allocator = Allocator(rt.sessions, settings, hetzner)
    rt.every("server-pool-check", settings.pool_check_seconds, workers.pool_check(allocator), leased=True)
    rt.every("server-migration-check", settings.migration_check_seconds, workers.migration_check, leased=True)
