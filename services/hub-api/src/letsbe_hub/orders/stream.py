"""Live order progress over Server-Sent Events.

The database is the source of truth: a stream is "every transition and provisioning report of the order with an
id above the cursor", read in id order. Postgres ``LISTEN/NOTIFY`` (sent by every writer at commit) only says
*when* to read again, so the stream works across hub replicas whichever replica consumed the event, and a
missed notification costs at most one poll interval, never an event.

A stream ends after FULFILLED or CANCELLED. It stays open on FAILED: an operator's retry resumes the same order,
and the watcher sees it continue (clients that want to stop on FAILED can: every status event says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator

import asyncpg
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import ServerSentEvent

from letsbe_contracts.enums import OrderStatus
from letsbe_hub.orders import repository as repo
from letsbe_hub.orders.state import FINAL, STREAM_CHANNEL
from letsbe_platform.db import plain_url
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

BATCH = 500
OPEN_STREAMS = Gauge("hub_order_event_streams_open", "SSE order streams open in this process")


class OrderStreamListener:
    """One LISTEN connection per hub process, fanned out to the SSE streams of this process by order id."""

    def __init__(self, database_url: str, channel: str = STREAM_CHANNEL):
        self.database_url = plain_url(database_url)
        self.channel = channel  # the lifecycle jobs' stream uses the same listener on its own channel
        self._subscribers: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._stopping = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(self, order_id: uuid.UUID) -> Iterator[asyncio.Event]:
        wake = asyncio.Event()
        key = str(order_id)
        self._subscribers[key].add(wake)
        try:
            yield wake
        finally:
            self._subscribers[key].discard(wake)
            if not self._subscribers[key]:
                del self._subscribers[key]

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
            except Exception as exc:  # streams keep polling meanwhile
                log.warning("order stream listener lost its connection", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)


async def order_events(
    sessions: async_sessionmaker[AsyncSession],
    listener: OrderStreamListener,
    order_id: uuid.UUID,
    *,
    after_id: int = 0,
    poll_seconds: float = 5.0,
) -> AsyncIterator[ServerSentEvent]:
    """History after ``after_id`` first, then the live tail, until the order reaches a final state."""
    with OPEN_STREAMS.track_inprogress(), listener.subscribe(order_id) as wake:  # subscribe, then read: no gap
        cursor = after_id
        while True:
            wake.clear()
            async with sessions() as session:
                # Status first: if it is final, the final transition is committed and the rows read next include it.
                status = await repo.status_of(session, order_id)
                rows = await repo.stream_rows(session, order_id, cursor, BATCH)
            for row in rows:
                cursor = row.id
                yield ServerSentEvent(
                    id=str(row.id),
                    event=row.kind,
                    data=json.dumps({"order_id": str(order_id), "at": row.at.isoformat(), **row.data}),
                )
            if len(rows) == BATCH:
                continue  # more history to send
            if status is None or OrderStatus(status) in FINAL:
                yield ServerSentEvent(event="end", data=json.dumps({"order_id": str(order_id), "status": status}))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll_seconds)
