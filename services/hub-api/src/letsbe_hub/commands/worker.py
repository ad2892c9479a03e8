"""Background work of the commands context: the long-poll waker and the deadline sweep.

Replica safety: the waker is per process (each replica wakes its own long-polls, from a NOTIFY every replica
hears); the sweep is idempotent by construction (compare-and-set); the rotation-report consumer by JetStream's
exclusivity plus the inbox claim."""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantKeyRotationReportedV1
from letsbe_hub.commands import service
from letsbe_hub.commands.handlers import ON_ROTATION_REPORTED, RotationReports
from letsbe_hub.commands.repository import NOTIFY_CHANNEL
from letsbe_hub.config import HubSettings
from letsbe_platform.db import unit_of_work
from letsbe_platform.listen import Listener
from letsbe_platform.logging import get_logger
from letsbe_platform.web import Runtime, Slot

log = get_logger(__name__)


class Waker(Listener):
    """Wakes a tenant's long-polls when a command for it commits (Postgres NOTIFY, sent by enqueue at commit): one
    LISTEN connection per hub process, whatever the number of waiting agents; waiters also re-check every few
    seconds, so a notification lost while the connection was re-established costs seconds, not the command.
    ``wait(tenant_id, timeout)``: True when a command for the tenant committed meanwhile."""

    def __init__(self, database_url: str):
        super().__init__(database_url, NOTIFY_CHANNEL)


async def sweep_deadlines(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Time out commands past their deadline. Runs in every replica: each timeout is a compare-and-set transition,
    so two replicas sweeping the same command time it out once."""
    async with unit_of_work(sessions) as session:
        n = await service.sweep(session)
    if n:
        log.info("commands timed out", count=n)


WAKER: Slot[Waker] = Slot("command-waker")


def start(rt: Runtime, settings: HubSettings) -> None:
    waker = Waker(rt.database_url)
    rt.attach(WAKER, waker)
    rt.start("command-waker", waker.run(), waker.stop)
    rt.every("command-deadline-sweep", settings.command_sweep_seconds, partial(sweep_deadlines, rt.sessions))
    if rt.has_bus:
        rt.consume(ON_ROTATION_REPORTED, TenantKeyRotationReportedV1, RotationReports(rt.sessions).on_reported)


def waker_of(rt: Runtime) -> Waker | None:
    return rt.part(WAKER)
