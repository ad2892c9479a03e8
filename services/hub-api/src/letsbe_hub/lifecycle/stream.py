"""A lifecycle job's history, then its live transitions, over Server-Sent Events.

The same mechanism as the orders' stream (``letsbe_hub.orders.stream``): the database is the source of truth, read
from the cursor (``Last-Event-ID`` = a transition id) in id order; a NOTIFY on the jobs' channel, sent by
``lifecycle.state`` at commit, only says when to read again. The stream ends when the job has nothing left to do
(SUCCEEDED, PRUNED, CANCELLED); it stays open on FAILED, where an operator's retry continues the same job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import ServerSentEvent

from letsbe_hub.lifecycle import repository as repo
from letsbe_hub.lifecycle.models import JobStatus as J
from letsbe_hub.lifecycle.state import STREAM_CHANNEL
from letsbe_platform.listen import Listener
from letsbe_platform.web import Runtime, Slot

BATCH = 500
DONE = frozenset({J.SUCCEEDED, J.PRUNED, J.CANCELLED})

LISTENER: Slot[Listener] = Slot("lifecycle-stream-listener")


def start_listener(rt: Runtime) -> Listener:
    listener = Listener(rt.database_url, STREAM_CHANNEL)
    rt.start("lifecycle-stream-listener", listener.run(), listener.stop)
    return rt.attach(LISTENER, listener)


def _listener(request: Request) -> Listener | None:
    """None where no listener runs (an app without workers): the stream then polls."""
    return request.app.state.runtime.part(LISTENER)


ListenerDep = Annotated[Listener | None, Depends(_listener)]


async def job_events(
    sessions: async_sessionmaker[AsyncSession],
    listener: Listener | None,
    job_id: uuid.UUID,
    *,
    after_id: int = 0,
    poll_seconds: float = 5.0,
) -> AsyncIterator[ServerSentEvent]:
    with contextlib.ExitStack() as stack:
        wake = stack.enter_context(listener.subscribe(job_id)) if listener else asyncio.Event()
        cursor = after_id
        while True:
            wake.clear()
            async with sessions() as session:
                job = await repo.get(session, job_id)  # status first: a final status's row is read next
                rows = await repo.transitions_after(session, job_id, cursor, BATCH)
            for t in rows:
                cursor = t.id
                data = {
                    "job_id": str(job_id),
                    "from": t.from_status,
                    "to": t.to_status,
                    "actor": t.actor,
                    "reason": t.reason,
                    "at": t.at.isoformat(),
                }
                yield ServerSentEvent(id=str(t.id), event="status", data=json.dumps(data))
            if len(rows) == BATCH:
                continue
            if job is None or job.status in DONE:
                end = {"job_id": str(job_id), "status": job.status if job else None}
                yield ServerSentEvent(event="end", data=json.dumps(end))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll_seconds)
