"""The heartbeat hot path: thousands per second per hub process.

Each heartbeat needs (1) the credential checked, (2) liveness written, (3) "any commands pending?" answered.
Concurrent heartbeats are coalesced into one statement that does all three for the whole batch
(``UPDATE … FROM unnest(keys, seqs) … RETURNING``): one round trip per batch instead of three per request, and a
revoked credential is refused at once (no cache to go stale). Batches form naturally: while one statement runs,
the next requests queue up; at low load a batch is a single heartbeat and adds no delay.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter, Histogram

from letsbe_contracts.enums import AgentKind
from letsbe_contracts.events import HeartbeatDetails, TenantHeartbeatV1
from letsbe_hub.config import HubSettings
from letsbe_platform.bus import Bus
from letsbe_platform.db import plain_url
from letsbe_platform.errors import ServiceUnavailable
from letsbe_platform.logging import get_logger
from letsbe_platform.web import Runtime, Slot

log = get_logger(__name__)

HEARTBEATS = Counter("hub_agent_heartbeats_total", "Agent heartbeats, by outcome", ["outcome"])
HEARTBEAT_BATCH = Histogram(
    "hub_agent_heartbeat_batch_size", "Heartbeats per statement", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)

_BEAT_SQL = """
WITH k AS (
    SELECT h, seq FROM unnest($1::text[], $2::bigint[]) AS k(h, seq)
), m AS (
    SELECT a.id, a.last_seq AS old_seq, k.h, k.seq
    FROM k
    JOIN hub.agent_credentials c ON c.key_hash = k.h
    JOIN hub.agents a ON a.id = c.agent_id
    WHERE c.revoked_at IS NULL AND (c.expires_at IS NULL OR c.expires_at > now()) AND a.revoked_at IS NULL
    ORDER BY a.id
    FOR UPDATE OF a
)
UPDATE hub.agents a
SET last_heartbeat_at = now(), last_seq = GREATEST(a.last_seq, m.seq)
FROM m
WHERE a.id = m.id
RETURNING m.h, a.id, a.tenant_id, a.kind, a.domain, m.seq > m.old_seq AS fresh, a.details_hash,
    EXISTS (
        SELECT 1 FROM hub.commands cmd
        WHERE cmd.tenant_id = a.tenant_id AND cmd.agent_kind = a.kind
          AND cmd.status IN ('QUEUED', 'DELIVERED') AND cmd.expires_at > now()
          AND (cmd.status = 'QUEUED' OR cmd.delivered_at < now() - make_interval(secs => $3))
    ) AS pending
"""


@dataclass(frozen=True)
class Beat:
    """What the hub knows after one heartbeat was counted."""

    agent_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: AgentKind
    domain: str
    fresh: bool  # False: this seq was seen before (a retry): count it once
    details_hash: str | None
    commands_pending: bool


@dataclass
class _Pending:
    key_hash: str
    seq: int
    future: asyncio.Future[Beat | None]


class HeartbeatWriter:
    def __init__(
        self, database_url: str, settings: HubSettings, bus: Bus | None, *, flushers: int = 4, max_batch: int = 500
    ):
        self.database_url = plain_url(database_url)
        self.settings = settings
        self.bus = bus
        self.flushers = flushers
        self.max_batch = max_batch
        self.active_agents = 0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._pool: asyncpg.Pool | None = None
        self._ready = asyncio.Event()
        self._outgoing: list[tuple[bytes, str]] = []
        self._outgoing_ready = asyncio.Event()
        self._connections: list[asyncpg.Connection] = []

    # --- the interval ---------------------------------------------------------------------------------------

    @property
    def interval_seconds(self) -> int:
        """The configured interval, stretched as the fleet grows so it stays under the configured rate."""
        stretched = math.ceil(self.active_agents / self.settings.heartbeat_max_per_second)
        return max(self.settings.heartbeat_interval_seconds, min(stretched, 3600))

    # --- the hot path ------------------------------------------------------------------------------------------

    async def beat(self, key_hash: str, seq: int) -> Beat | None:
        """None: the credential is unknown or revoked."""
        if self._pool is None:  # just started: the pool is being opened
            try:
                await asyncio.wait_for(self._ready.wait(), timeout=5)
            except TimeoutError:
                raise ServiceUnavailable("Heartbeats are not accepted yet; retry shortly.") from None
        fut: asyncio.Future[Beat | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(key_hash, seq, fut))
        return await fut

    async def publish(self, beat: Beat, seq: int, details: HeartbeatDetails | None) -> None:
        """tenant-heartbeat for the monitor, as a plain NATS publish into the stream (no outbox, no PubAck wait).

        A lost heartbeat is harmless: the next one comes within an interval, and the monitor counts missed beats
        with a grace period. Skipping the outbox saves a write per beat and skipping the PubAck saves a round trip,
        which is what lets one process take thousands per second. The event id is derived from (agent, seq), so
        JetStream drops a repeat inside its de-duplication window.
        """
        if self.bus is None or not self.bus.nc.is_connected:
            return
        event = TenantHeartbeatV1(
            tenant_id=beat.tenant_id,
            agent_id=beat.agent_id,
            agent=beat.kind,
            domain=beat.domain,
            received_at=datetime.now(UTC),
            interval_seconds=self.interval_seconds,
            details=details,
        )
        env = event.envelope(correlation_id=beat.tenant_id, event_id=uuid.uuid5(beat.agent_id, f"heartbeat:{seq}"))
        # Queued for the publisher task, which hands a whole batch to nats-py at once: one socket write for many
        # events instead of one each (the monitor does not mind a few milliseconds).
        if len(self._outgoing) < 100_000:
            self._outgoing.append((env.model_dump_json().encode(), str(env.id)))
            self._outgoing_ready.set()

    async def _publisher(self) -> None:
        assert self.bus is not None
        subject = self.bus.subject(TenantHeartbeatV1)
        while True:
            await self._outgoing_ready.wait()
            self._outgoing_ready.clear()
            batch, self._outgoing = self._outgoing, []
            try:
                for data, msg_id in batch:
                    await self.bus.nc.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
            except Exception as exc:  # harmless, see publish()
                log.debug("heartbeat publish failed", error=repr(exc), dropped=len(batch))
            await asyncio.sleep(0.005)

    # --- the worker ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        self._pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=1)  # the agent count
        self._ready.set()
        try:
            # Each flusher owns one connection: no pool acquire/release/reset per batch on the hot path.
            self._connections = [await asyncpg.connect(self.database_url) for _ in range(self.flushers)]
            tasks = [asyncio.create_task(self._flusher(conn)) for conn in self._connections]
            tasks.append(asyncio.create_task(self._count_agents()))
            if self.bus is not None:
                tasks.append(asyncio.create_task(self._publisher()))
            await self._stopping.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            pool, self._pool = self._pool, None
            self._ready.clear()
            while not self._queue.empty():
                p = self._queue.get_nowait()
                if not p.future.done():
                    p.future.set_exception(ServiceUnavailable("The hub is shutting down; retry shortly."))
            await pool.close()
            for conn in self._connections:
                if not conn.is_closed():
                    await conn.close()

    async def _count_agents(self) -> None:
        while True:
            try:
                assert self._pool is not None
                self.active_agents = await self._pool.fetchval(
                    "SELECT count(*) FROM hub.agents WHERE revoked_at IS NULL"
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("agent count failed", error=repr(exc))
            await asyncio.sleep(60)

    async def _flusher(self, conn: asyncpg.Connection) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if conn.is_closed():  # the database restarted: reconnect before the next batch
                try:
                    conn = await asyncpg.connect(self.database_url)
                except Exception as exc:
                    log.warning("heartbeat connection failed", error=repr(exc))
                    for p in batch:
                        p.future.set_exception(ServiceUnavailable("Heartbeat not recorded; retry shortly."))
                    await asyncio.sleep(0.5)
                    continue
            try:
                await self._flush(conn, batch)
            except BaseException as exc:
                # Whatever happened (a fault past the retries, shutdown), no request may wait forever on its beat.
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(ServiceUnavailable("Heartbeat not recorded; retry shortly."))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                log.warning("heartbeat batch failed", size=len(batch), error=repr(exc))

    async def _flush(self, conn: asyncpg.Connection, batch: list[_Pending]) -> None:
        # One row per credential per statement: a key twice in a batch (a retry racing its original) goes with
        # its highest seq, and every request for it gets the answer.
        by_key: dict[str, list[_Pending]] = {}
        for p in batch:
            by_key.setdefault(p.key_hash, []).append(p)
        keys = list(by_key)
        seqs = [max(p.seq for p in by_key[k]) for k in keys]
        for attempt in range(3):
            try:
                rows = await conn.fetch(_BEAT_SQL, keys, seqs, self.settings.command_redeliver_seconds)
                break
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == 2:
                    raise  # the caller answers the whole batch with 503; agents retry
        HEARTBEAT_BATCH.observe(len(batch))
        found = {r["h"]: r for r in rows}
        for key, pendings in by_key.items():
            r = found.get(key)
            top = max(p.seq for p in pendings)
            for p in pendings:
                if p.future.done():
                    continue
                if r is None:
                    HEARTBEATS.labels("refused").inc()
                    p.future.set_result(None)
                    continue
                fresh = bool(r["fresh"]) and p.seq == top
                HEARTBEATS.labels("counted" if fresh else "repeat").inc()
                p.future.set_result(
                    Beat(
                        agent_id=r["id"],
                        tenant_id=r["tenant_id"],
                        kind=AgentKind(r["kind"]),
                        domain=r["domain"],
                        fresh=fresh,
                        details_hash=r["details_hash"],
                        commands_pending=bool(r["pending"]),
                    )
                )


WRITER: Slot[HeartbeatWriter] = Slot("heartbeat-writer")


def start(rt: Runtime, settings: HubSettings) -> HeartbeatWriter:
    writer = HeartbeatWriter(rt.database_url, settings, rt.bus)
    rt.attach(WRITER, writer)
    rt.start("heartbeat-writer", writer.run(), writer.stop)
    return writer


def writer_of(rt: Runtime) -> HeartbeatWriter:
    writer = rt.part(WRITER)
    if writer is None:
        raise ServiceUnavailable("Heartbeats are not accepted by this process.")
    return writer
