"""The provisioner's side of the hub's tenant tasks (``TenantTaskRequestedV1`` in, ``TenantTaskReportedV1`` out): one
consumer, each kind handed to what does it (``letsbe_provisioner.jobs.handlers.tenant_tasks``); ``switch-dns`` and
``tool-dns`` are the DNS service's and left alone.

Every kind is safe to run again. The inbox claim commits with the report, so a redelivery after it does nothing, and
one before it (a provisioner that died mid-task) runs the task to the same end and reports once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.events import TaskResult, TenantTaskRequestedV1
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event, handled, inboxed
from letsbe_provisioner.db import inbox, outbox

log = get_logger(__name__)

DURABLE = "provisioner-on-tenant-task-requested"


@dataclass
class Outcome:
    status: Literal["SUCCEEDED", "FAILED"]
    detail: str | None = None  # what it did, or why it failed (already redacted)
    changes: list[str] = field(default_factory=list)
    result: TaskResult | None = None
    commit: Callable[[AsyncSession], Awaitable[None]] | None = None  # done in the report's transaction


Runner = Callable[[TenantTaskRequestedV1, Delivery | None], Awaitable[Outcome]]


class TenantTasks:
    def __init__(self, pipeline: Any, runners: Mapping[str, Runner]):
        self.p = pipeline
        self.sessions = pipeline.sessions
        self.runners = runners

    async def on_requested(self, event: TenantTaskRequestedV1, delivery: Delivery) -> None:
        run = self.runners.get(event.task.kind)
        if run is None:
            return  # the DNS service's
        async with unit_of_work(self.sessions) as session:
            if await handled(session, inbox, delivery.consumer, delivery.event_id):
                return
        started = datetime.now(UTC)
        keepalive = asyncio.create_task(self.p._keep_in_progress(delivery))
        try:
            outcome = await run(event, delivery)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        await self._report(event, delivery, started, outcome)

    @inboxed(inbox)
    async def _report(
        self,
        session: AsyncSession,
        event: TenantTaskRequestedV1,
        delivery: Delivery,
        started: datetime,
        outcome: Outcome,
    ) -> None:
        if outcome.commit is not None and outcome.status == "SUCCEEDED":
            await outcome.commit(session)
        report = event.report(
            outcome.status, started, detail=outcome.detail, changes=outcome.changes, result=outcome.result
        )
        await add_event(session, outbox, report, correlation_id=str(event.tenant_id), event_id=event.report_event_id)
        say = log.info if outcome.status == "SUCCEEDED" else log.error
        say("tenant task done", tenant_id=str(event.tenant_id), kind=event.task.kind, status=outcome.status,
            detail=outcome.detail if outcome.status == "FAILED" else None, changes=len(outcome.changes))  # fmt: skip
