"""The servers context's background work, wired from ``letsbe_hub.app.start_workers``.

- ``hub-allocate-on-order-created``: the allocation worker (several fetchers per process; safe across processes).
- ``hub-servers-on-provisioned``: a provisioned tenant's server goes RESERVED → IN_USE.
- ``server-pool-check``: below-minimum alerts + cleanup of stuck overflow attempts, every ``pool_check_seconds``.
- ``server-migration-check``: Hetzner → Netcup proposals, every ``migration_check_seconds`` (one per tenant a month).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import OrderCreatedV1, ProvisionedV1
from letsbe_hub.db import inbox
from letsbe_hub.providers.factory import build_hetzner
from letsbe_hub.servers import migrations, pools
from letsbe_hub.servers import repository as repo
from letsbe_hub.servers.allocation import CONSUMER, Allocator
from letsbe_hub.servers.config import ServerSettings
from letsbe_platform.bus import Bus, Consumer, Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.metrics import BACKGROUND_TASK_LAST_SUCCESS
from letsbe_platform.outbox import claim
from letsbe_platform.web import Runtime

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
        async def handle(event: ProvisionedV1, delivery: Delivery) -> None:
            async with unit_of_work(self.sessions) as s:
                if not await claim(s, inbox, ON_PROVISIONED, delivery.event_id):
                    return
                await repo.mark_in_use(s, event.server.server_id, event.tenant_id)

        await self._consume(self.bus.consumer(ON_PROVISIONED, ProvisionedV1, handle))

    async def run_pool_check(self) -> None:
        hetzner = build_hetzner(self.settings)
        allocator = Allocator(self.sessions, self.settings, hetzner)

        async def job() -> None:
            async with unit_of_work(self.sessions) as s:
                await pools.check_pools(s)
            await allocator.sweep_stale()

        try:
            await self._every("server-pool-check", self.settings.pool_check_seconds, job)
        finally:
            if hetzner is not None:
                await hetzner.aclose()

    async def run_migration_check(self) -> None:
        async def job() -> None:
            async with unit_of_work(self.sessions) as s:
                await migrations.propose_migrations(s)

        await self._every("server-migration-check", self.settings.migration_check_seconds, job)

    async def _every(self, name: str, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        while not self._stopping.is_set():
            try:
                await job()
                BACKGROUND_TASK_LAST_SUCCESS.labels(name).set_to_current_time()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next round tries again; the error is logged, not swallowed silently
                log.exception("periodic job failed", task=name)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
            except TimeoutError:
                pass


def start(rt: Runtime, settings: ServerSettings) -> None:
    assert rt.sessions is not None and rt.bus is not None
    workers = ServerWorkers(rt.sessions, rt.bus, settings)
    rt.start(CONSUMER, workers.run_allocation(), workers.stop)
    rt.start(ON_PROVISIONED, workers.run_on_provisioned(), workers.stop)
    rt.start("server-pool-check", workers.run_pool_check(), workers.stop)
    rt.start("server-migration-check", workers.run_migration_check(), workers.stop)
