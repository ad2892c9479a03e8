"""Postgres ``LISTEN`` in a process: one connection per channel, its notifications fanned out by payload to the
waiters of this process (an SSE stream of an order, a long-poll of a tenant's agent).

A notification only says *when* to read again; the reader reads the database, so a notification lost while the
connection is re-established costs at most the reader's poll interval. After a reconnect every waiter is woken:
anything committed meanwhile is read now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Hashable, Iterator

import asyncpg

from letsbe_platform.db import plain_url
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


class Listener:
    def __init__(self, database_url: str, channel: str):
        self.database_url = plain_url(database_url)
        self.channel = channel
        self._subscribers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._stopping = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, key: Hashable) -> Iterator[asyncio.Event]:
        """An event set by each notification whose payload is ``str(key)``, while the block runs."""
        wake = asyncio.Event()
        payload = str(key)
        self._subscribers[payload].add(wake)
        try:
            yield wake
        finally:
            self._subscribers[payload].discard(wake)
            if not self._subscribers[payload]:
                del self._subscribers[payload]

    async def wait(self, key: Hashable, timeout: float) -> bool:
        """True when a notification for ``key`` came within ``timeout`` seconds."""
        with self.subscribe(key) as wake, contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)
            return True
        return False

    def _notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for wake in self._subscribers.get(payload, ()):
            wake.set()

    def _wake_all(self) -> None:
        for wakes in self._subscribers.values():
            for wake in wakes:
                wake.set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.database_url)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self.channel, self._notify)
                self._wake_all()  # anything committed while we were not listening is read now
                backoff = 0.2
                stop = asyncio.create_task(self._stopping.wait())
                gone = asyncio.create_task(lost.wait())
                try:
                    await asyncio.wait({stop, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    gone.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the waiters keep polling meanwhile
                log.warning("listener lost its connection", channel=self.channel, error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
