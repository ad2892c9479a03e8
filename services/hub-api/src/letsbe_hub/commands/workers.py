"""Background work of the commands context: the long-poll waker and the deadline sweep.

Replica safety: the waker is per process (each replica wakes its own long-polls, from a NOTIFY every replica
hears); the sweep is idempotent by construction (compare-and-set); the rotation-report consumer by JetStream's
exclusivity plus the inbox claim."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections import defaultdict
from functools import partial

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantKeyRotationReportedV1
from letsbe_hub.commands import service
from letsbe_hub.commands.handlers import ON_ROTATION_REPORTED, rotation_report_handler
from letsbe_hub.commands.repository import NOTIFY_CHANNEL
from letsbe_hub.config import HubSettings
from letsbe_platform.db import plain_url, unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.web import Runtime

log = get_logger(__name__)


class Waker:
    """Wakes a tenant's long-polls when a command for it commits (Postgres NOTIFY, sent by enqueue at commit).

    One LISTEN connection per hub process, whatever the number of waiting agents; waiters also re-check every few
    seconds, so a notification lost while the connection was re-established costs seconds, not the command.
    """

    def __init__(self, database_url: str):
        self.database_url = plain_url(database_url)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def wait(self, tenant_id: uuid.UUID, timeout: float) -> bool:
        ev = asyncio.Event()
        key = str(tenant_id)
        self._waiters[key].add(ev)
        try:
            await asyncio.wait_for(ev.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters[key].discard(ev)
            if not self._waiters[key]:
                del self._waiters[key]

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for ev in self._waiters.get(payload, ()):
            ev.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.database_url)
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                while not self._stopping.is_set() and not conn.is_closed():
                    try:
                        await asyncio.wait_for(self._stopping.wait(), timeout=5)
                    except TimeoutError:
                        await conn.execute("SELECT 1")  # notice a dead connection
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("command waker reconnecting", error=repr(exc))
                await asyncio.sleep(1)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()


async def sweep_deadlines(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Time out commands past their deadline. Runs in every replica: each timeout is a compare-and-set transition,
    so two replicas sweeping the same command time it out once."""
    async with unit_of_work(sessions) as session:
        n = await service.sweep(session)
    if n:
        log.info("commands timed out", count=n)


_wakers: weakref.WeakKeyDictionary[Runtime, Waker] = weakref.WeakKeyDictionary()


def start(rt: Runtime, settings: HubSettings) -> None:
    assert rt.sessions is not None
    waker = Waker(settings.database_url or "")
    _wakers[rt] = waker
    rt.start("command-waker", waker.run(), waker.stop)
    rt.every("command-deadline-sweep", settings.command_sweep_seconds, partial(sweep_deadlines, rt.sessions))
    if rt.bus is not None:
        handler = rotation_report_handler(rt.sessions)
        reports = rt.bus.consumer(ON_ROTATION_REPORTED, TenantKeyRotationReportedV1, handler)
        rt.start(ON_ROTATION_REPORTED, reports.run(), reports.stop)


def waker_of(rt: Runtime) -> Waker | None:
    return _wakers.get(rt)
