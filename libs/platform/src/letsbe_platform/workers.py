"""The periodic worker: the one loop every service's background round runs in (stop event, run, metric, catch and
log, wait), and the Postgres lease that makes exactly one replica act when that matters.

Every background worker says in its docstring why it is safe with several replicas, one of:

- **a lease**: ``Periodic(..., lease=Lease(...))`` acts in one replica at a time; the others wait for its turn;
- **a consumer's exclusivity**: a durable JetStream pull consumer shared by every replica hands each message to one
  of them (and the inbox claim makes a redelivery a no-op);
- **idempotent by construction**: rows are claimed with ``FOR UPDATE SKIP LOCKED`` or changed with compare-and-set,
  so any number of replicas may run the round at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import asyncpg

from letsbe_platform.db import plain_url
from letsbe_platform.logging import get_logger
from letsbe_platform.metrics import BACKGROUND_TASK_LAST_SUCCESS, LEASE_HELD

log = get_logger(__name__)

# A round returns how much it did: something truthy means "there may be more", and the next round starts at once.
Job = Callable[[], Awaitable[object]]


class Lease:
    """Exactly one holder across every replica: a session-level Postgres advisory lock on a connection of its own.

    The holder keeps the lock from round to round and checks before each round that its session is still alive; a
    replica that dies (even by SIGKILL) or loses its connection loses the lock with its session, and another
    replica takes it at its next try. Postgres ends the session of a holder that vanished from the network only
    after its TCP keepalive fails, so the work under a lease is still written with compare-and-set: a holder cut
    off mid-round cannot apply a transition twice, it can at most find it already applied.
    """

    def __init__(self, database_url: str, name: str):
        self.database_url = plain_url(database_url)
        self.name = name
        # A stable 64-bit key per name, the same in every replica and every release.
        self.key = int.from_bytes(hashlib.sha256(f"letsbe-lease:{name}".encode()).digest()[:8], "big", signed=True)
        self._conn: asyncpg.Connection | None = None
        self._held = False
        LEASE_HELD.labels(name).set(0)

    async def acquire(self) -> bool:
        """True while this process holds the lease (taking it if it is free)."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._held = False
                self._conn = await asyncpg.connect(self.database_url, server_settings={"application_name": self.name})
            if self._held:
                await self._conn.fetchval("SELECT 1")  # the session, and so the lock, is still there
            else:
                self._held = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("lease check failed", lease=self.name, error=repr(exc))
            await self.release()
        LEASE_HELD.labels(self.name).set(1 if self._held else 0)
        return self._held

    async def release(self) -> None:
        """Give the lease up (closing the session releases the lock)."""
        self._held = False
        LEASE_HELD.labels(self.name).set(0)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()


class Periodic:
    """Runs ``job`` every ``every`` seconds until stopped: a failed round is logged and the next one tries again;
    a round that returns something truthy is followed by another at once; :meth:`kick` starts the next round now.

    With ``lease``, only the replica holding it runs the rounds; the others check every ``every`` seconds whether
    the lease has become free. ``BACKGROUND_TASK_LAST_SUCCESS{task=name}`` records each completed round (a replica
    that waits for the lease records its successful check, so no replica looks stuck).
    """

    def __init__(self, name: str, job: Job, every: float, *, lease: Lease | None = None):
        self.name = name
        self.job = job
        self.every = every
        self.lease = lease
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def kick(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before the round: a kick during it starts the next one at once
                more = False
                try:
                    if self.lease is None or await self.lease.acquire():
                        more = bool(await self.job())
                    BACKGROUND_TASK_LAST_SUCCESS.labels(self.name).set_to_current_time()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the next round tries again; the error is logged, not swallowed silently
                    log.exception("periodic job failed", task=self.name)
                if more:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.every)
                except TimeoutError:
                    pass
        finally:
            if self.lease is not None:
                await self.lease.release()
