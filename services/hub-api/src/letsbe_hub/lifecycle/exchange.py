"""The lifecycle jobs' one way to have work done on a tenant's server: ask the service that owns it, await its report.

A step asks for a task (``TenantTaskRequestedV1``: its ``kind`` and typed payload) of the provisioner (final backup,
stopping the agents, provision, backup, restore, verify, a tool's backup and stack) or the DNS service (switch-dns,
a tool's record). The ask is staged in the outbox in the transaction that records it in the job's data
(``data.tasks.<kind>``: request id, attempt, when), so a worker killed at any point resumes the step and finds its
ask, never a second one. ``on_report`` keeps the report of the latest ask only (one of an earlier ask, a repeat, or
another job's changes nothing) and makes the job due.

A FAILED report, or none within ``tenant_task_timeout_seconds`` (then it is asked again at once), is a failed attempt
of the step: retried with the runner's backoff, the job fails after the last one. Every ask has a new request id;
an effect that must happen once across asks is keyed by the owner on the job (a decommission's final backup).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.events import TenantTask, TenantTaskReportedV1, TenantTaskRequestedV1
from letsbe_hub.db import outbox
from letsbe_hub.lifecycle import repository as repo
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.service import Wait
from letsbe_hub.lifecycle.state import FAILED, SUCCEEDED
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event

log = get_logger(__name__)

REQUESTED = "REQUESTED"


class TaskFailed(Exception):
    """The owner reported the task FAILED, or did not report it in time: a failed attempt of the step."""


def request_id(job_id: uuid.UUID, kind: str, attempt: int) -> uuid.UUID:
    return uuid.uuid5(job_id, f"{kind}:{attempt}")


async def _locked(session: AsyncSession, job_id: uuid.UUID) -> tuple[LifecycleJob | None, dict[str, Any]]:
    """The job, locked (its worker and the report handler take turns on ``data.tasks``), and its tasks."""
    job = await session.get(LifecycleJob, job_id, with_for_update=True, populate_existing=True)
    return job, dict((job.data.get("tasks") or {}) if job else {})


async def outcome(
    runner: Any, job: LifecycleJob, kind: str, task: Callable[[AsyncSession], Awaitable[TenantTask]]
) -> dict[str, Any]:
    """The report of the job's ``kind`` task once it SUCCEEDED (``runner``: the JobRunner holding the lease). Until
    then the task is asked for, built by ``task`` (once per attempt), and Wait is raised; a FAILED report raises
    TaskFailed once (the next call asks again), as does an overdue ask (asked again first)."""
    now, timeout = runner.clock(), timedelta(seconds=runner.settings.tenant_task_timeout_seconds)
    async with unit_of_work(runner.sessions) as s:
        _, tasks = await _locked(s, job.id)
        entry = tasks.get(kind) or {}
        if entry.get("status") == SUCCEEDED:
            return entry
        due = datetime.fromisoformat(entry["requested_at"]) + timeout if entry.get("status") == REQUESTED else now
        failure = None
        if entry.get("status") == FAILED and not entry.get("seen"):
            await repo.set_data_key(s, job.id, "tasks", {**tasks, kind: {**entry, "seen": True}})
            failure = f"{kind} failed: {entry.get('detail') or 'no reason given'}"
        elif due <= now:  # not asked yet, its failure seen, or overdue: ask (again)
            if entry.get("status") == REQUESTED:
                failure = f"{kind}: no report within {timeout.total_seconds():g}s; asked again"
            attempt = int(entry.get("attempt", 0)) + 1
            rid = request_id(job.id, kind, attempt)
            asked = TenantTaskRequestedV1(
                request_id=rid, job_id=job.id, tenant_id=job.tenant_id, attempt=attempt, task=await task(s)
            )
            await add_event(s, outbox, asked, correlation_id=job.tenant_id, event_id=rid)
            tasks[kind] = {"id": str(rid), "attempt": attempt, "status": REQUESTED, "requested_at": now.isoformat()}
            await repo.set_data_key(s, job.id, "tasks", tasks)
            due = now + timeout
            log.info("task asked for", job_id=str(job.id), tenant_id=str(job.tenant_id), kind=kind, attempt=attempt)
        if failure is None:  # the lease goes back under the lock, so a report after this commit makes the job due
            await repo.release(s, job.id, runner.owner, due_at=due)
    if failure is not None:
        raise TaskFailed(failure)
    raise Wait(f"waiting for the {kind} report", (due - now).total_seconds())


async def on_report(session: AsyncSession, event: TenantTaskReportedV1, now: datetime) -> bool:
    """The owner's report into its job's data (``data.tasks.<kind>``), the job due now; only for the job's latest
    ask of that kind, and once. Returns whether it landed."""
    job, tasks = await _locked(session, event.job_id)
    entry = tasks.get(event.kind) or {}
    if job is None or job.tenant_id != event.tenant_id or entry.get("id") != str(event.request_id):
        log.warning("task report without its request", job_id=str(event.job_id), kind=event.kind)
        return False
    if entry.get("status") != REQUESTED:  # a repeat of a report acted on
        return False
    report = event.model_dump(mode="json", include={"status", "started_at", "finished_at", "detail", "changes"})
    result = event.result.model_dump(mode="json", exclude_none=True) if event.result else None  # as the server said
    tasks[event.kind] = {**entry, **report, "result": result, "reported_at": now.isoformat()}
    await repo.set_data_key(session, job.id, "tasks", tasks)
    await repo.make_due(session, job.id, now)
    log.info("task reported", job_id=str(job.id), tenant_id=str(job.tenant_id), kind=event.kind, status=event.status)
    return True
