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
from collections.abc import AsyncIterator

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import ServerSentEvent

from letsbe_contracts.enums import OrderStatus
from letsbe_hub.orders import repository as repo
from letsbe_hub.orders.state import FINAL
from letsbe_platform.listen import Listener
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

BATCH = 500
OPEN_STREAMS = Gauge("hub_order_event_streams_open", "SSE order streams open in this process")


async def order_events(
    sessions: async_sessionmaker[AsyncSession],
    listener: Listener,
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
