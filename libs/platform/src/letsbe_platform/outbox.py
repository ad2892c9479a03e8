"""Transactional outbox (out) and inbox (in), one pair of tables per service schema.

Out: the business change and the outbox row commit in one transaction; :class:`OutboxRelay` publishes rows with
``Nats-Msg-Id`` = event id and marks them sent. A relay killed between publishing and marking republishes the row,
which JetStream's de-duplication window (and, past it, every consumer's inbox) absorbs.

In: a consumer claims ``(consumer, event_id)`` inside the transaction of its side effect; a redelivery finds the
claim and does nothing. :func:`inboxed` is how a handler does that.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, MetaData, String, Table, func, select, text
from sqlalchemy.dialects.postgresql import JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import Event
from letsbe_platform.bus import Bus, Delivery
from letsbe_platform.db import plain_url, unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.metrics import OUTBOX_PUBLISHED, OUTBOX_RELAY_ERRORS
from letsbe_platform.workers import Periodic

log = get_logger(__name__)
Work = Callable[..., Awaitable[Any]]


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("seq", BigInteger, Identity(always=True), primary_key=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True)),
        Index("ix_outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
    )


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(120), primary_key=True),
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


async def add_event(
    session: AsyncSession,
    table: Table,
    event: Event,
    *,
    correlation_id: str | uuid.UUID,
    event_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Stage ``event`` for publication in the caller's transaction; returns the event id.

    ``event_id`` lets a caller derive a deterministic id (uuid5 of its cause), so doing the same work twice
    stages the same event once.
    """
    env = event.envelope(correlation_id=correlation_id, event_id=event_id)
    row = {"event_id": env.id, "subject": event.SUBJECT, "envelope": env.model_dump(mode="json")}
    await stage(session, table, [row])
    return env.id


async def stage(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert outbox ``rows`` (event_id, subject, envelope; an id staged before is skipped) and wake the relay, in
    one statement: an event on an order's path costs one round trip, not two."""
    # One row as a dict, not a one-row list: SQLAlchemy caches the compiled form of a single-row insert (not of a
    # multi-row VALUES), and most calls stage one event.
    values = rows[0] if len(rows) == 1 else rows
    staged = (
        insert(table).values(values).on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.seq)
    ).cte("staged")
    # The NOTIFY is delivered by Postgres at commit, so the relay wakes exactly when there is something to send. A
    # data-modifying WITH runs whether or not the SELECT reads it.
    channel = notify_channel(table.schema or "public")
    await session.execute(select(func.pg_notify(channel, "")).add_cte(staged))


async def claim(session: AsyncSession, table: Table, consumer: str, event_id: uuid.UUID) -> bool:
    """True the first time ``consumer`` sees ``event_id`` (in this transaction's view), False after."""
    stmt = (
        insert(table).values(consumer=consumer, event_id=event_id).on_conflict_do_nothing().returning(table.c.event_id)
    )
    return (await session.execute(stmt)).first() is not None


async def handled(session: AsyncSession, table: Table, consumer: str, event_id: uuid.UUID) -> bool:
    """Whether ``consumer`` has claimed ``event_id`` already: a look that claims nothing, for a handler whose slow
    work (Cloudflare, SSH, Hetzner) comes before its inboxed transaction and need not be done again."""
    stmt = select(table.c.event_id).where(table.c.consumer == consumer, table.c.event_id == event_id)
    return (await session.execute(stmt)).first() is not None


def inboxed(table: Table) -> Callable[[Work], Work]:
    """A consumer's handler (a method of an object with ``sessions``) that acts once per event: it runs in one
    transaction with the claim of (the delivering consumer's durable name, the event id), and not at all when the
    event is claimed already. A crash before the commit leaves no claim: the redelivery does the work again.

    ``async def work(self, session, event, delivery, ...)`` is called as ``work(event, delivery, ...)``; it returns
    what ``work`` returned, or None when the event was claimed already."""

    def decorate(work: Work) -> Work:
        @functools.wraps(work)
        async def handle(owner: Any, event: Any, delivery: Delivery, *args: Any, **kwargs: Any) -> Any:
            async with unit_of_work(owner.sessions) as session:
                if await claim(session, table, delivery.consumer, delivery.event_id):
                    return await work(owner, session, event, delivery, *args, **kwargs)
                return None

        return handle

    return decorate


class OutboxRelay:
    """Publishes a schema's outbox to JetStream, woken by the NOTIFY each commit sends (and every ``poll_seconds``).

    Replica-safe by construction: every replica relays, each batch is taken ``FOR UPDATE SKIP LOCKED``, and a row
    published twice (a relay killed before marking it) has the same ``Nats-Msg-Id``.
    """

    def __init__(self, database_url: str, schema: str, bus: Bus, *, batch: int = 200, poll_seconds: float = 1.0):
        self.database_url = plain_url(database_url)
        self.schema = schema
        self.bus = bus
        self.batch = batch
        self._conn: asyncpg.Connection | None = None
        self._listener: asyncpg.Connection | None = None
        # A fault leaves the rows unsent; the next round (after poll_seconds) reconnects and sends them.
        self.worker = Periodic(f"outbox-relay-{schema}", self.relay_once, poll_seconds)
        OUTBOX_RELAY_ERRORS.labels(schema=schema)  # at 0 from start-up, so the first fault is an increase

    def stop(self) -> None:
        self.worker.stop()

    async def run(self) -> None:
        try:
            await self.worker.run()
        finally:
            for c in (self._conn, self._listener):
                if c is not None and not c.is_closed():
                    await c.close()

    async def relay_once(self) -> int:
        """Publish one batch (connecting first if need be); returns how many rows were sent."""
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.database_url)
            if self._listener is None or self._listener.is_closed():
                self._listener = await asyncpg.connect(self.database_url)
                await self._listener.add_listener(notify_channel(self.schema), lambda *_: self.worker.kick())
            return await self.publish_pending(self._conn)
        except Exception:
            OUTBOX_RELAY_ERRORS.labels(schema=self.schema).inc()
            for c in (self._conn, self._listener):
                if c is not None and not c.is_closed():
                    c.terminate()
            self._conn = self._listener = None
            raise

    async def publish_pending(self, conn: asyncpg.Connection) -> int:
        """Publish one batch; returns how many rows were sent."""
        async with conn.transaction():
            rows = await conn.fetch(
                f'SELECT seq, event_id, subject, envelope FROM "{self.schema}".outbox '  # noqa: S608 - schema is ours
                "WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                self.batch,
            )
            if not rows:
                return 0
            await asyncio.gather(
                *(
                    self.bus.publish_raw(row["subject"], _as_bytes(row["envelope"]), msg_id=str(row["event_id"]))
                    for row in rows
                )
            )
            await conn.execute(
                f'UPDATE "{self.schema}".outbox SET published_at = now() WHERE seq = ANY($1::bigint[])',  # noqa: S608
                [row["seq"] for row in rows],
            )
        OUTBOX_PUBLISHED.labels(schema=self.schema).inc(len(rows))
        return len(rows)


def _as_bytes(envelope: Any) -> bytes:
    # asyncpg returns jsonb as text unless a codec is set; both forms are accepted.
    if isinstance(envelope, str):
        return envelope.encode()
    return json.dumps(envelope, separators=(",", ":")).encode()
