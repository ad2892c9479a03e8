"""The lifecycle jobs' state machines: one transition table per kind, one function that applies them.

The same rules as the orders' machine (``letsbe_hub.orders.state``): ``transition`` is a compare-and-set
(``UPDATE … WHERE id = :id AND status = :expected [AND lease_owner = :me] RETURNING``) that records the history
row, stages a ``lifecycle-job-changed`` event in the outbox and wakes the job's SSE listeners, all in the caller's
transaction. Nothing else writes ``status``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.events import LifecycleJobChangedV1
from letsbe_hub.db import outbox
from letsbe_hub.lifecycle.models import LifecycleJob, LifecycleJobTransition
from letsbe_platform.errors import Conflict, NotFound
from letsbe_platform.outbox import add_event

DECOMMISSION, SNAPSHOT, TOOL_CHANGE = "decommission", "snapshot", "tool-change"
FAILED, SUCCEEDED, CANCELLED = "FAILED", "SUCCEEDED", "CANCELLED"

# decommission: the tenant is already revoked and its DNS released when the job is created (tenants.service);
# the server stays (data kept) until the export window ends, then it is deleted (Hetzner) or drained (Netcup).
# tool-change: one tool added to or removed from a live tenant (letsbe_hub.lifecycle.tools). Each phase is asked of
# the service that owns it (DNS service, provisioner) and left on its report; the order of phases depends on the
# action: add = DNS, STACK; remove = FINAL_BACKUP, STACK, DNS. A retry of a FAILED job resumes at its phase.
# snapshot: one per tenant and day; PRUNED once three newer ones succeeded (its provider image is deleted);
# CANCELLED when its server left service before the snapshot was taken (a decommissioned tenant).
TRANSITIONS: dict[str, dict[str, frozenset[str]]] = {
    DECOMMISSION: {
        "EXPORT_WINDOW": frozenset({"RELEASING_SERVER", FAILED}),
        "RELEASING_SERVER": frozenset({SUCCEEDED, FAILED}),
        FAILED: frozenset({"EXPORT_WINDOW", "RELEASING_SERVER"}),
        SUCCEEDED: frozenset(),
    },
    SNAPSHOT: {
        "SCHEDULED": frozenset({"CREATING", FAILED, CANCELLED}),
        "CREATING": frozenset({SUCCEEDED, FAILED, CANCELLED}),
        SUCCEEDED: frozenset({"PRUNED"}),
        FAILED: frozenset({"CREATING", "PRUNED"}),
        "PRUNED": frozenset(),
        CANCELLED: frozenset(),
    },
    TOOL_CHANGE: {
        "REQUESTED": frozenset({"DNS", "FINAL_BACKUP", FAILED}),
        "FINAL_BACKUP": frozenset({"STACK", FAILED}),
        "DNS": frozenset({"STACK", SUCCEEDED, FAILED}),
        "STACK": frozenset({"DNS", SUCCEEDED, FAILED}),
        FAILED: frozenset({"REQUESTED", "DNS", "FINAL_BACKUP", "STACK"}),
        SUCCEEDED: frozenset(),
    },
}
FIRST: dict[str, str] = {DECOMMISSION: "EXPORT_WINDOW", SNAPSHOT: "SCHEDULED", TOOL_CHANGE: "REQUESTED"}
# Where a worker has nothing more to do (FAILED waits for an operator's retry).
IDLE: frozenset[str] = frozenset({FAILED, SUCCEEDED, "PRUNED", CANCELLED})

STREAM_CHANNEL = "hub_lifecycle_stream"  # NOTIFY payload: the job id (the SSE stream re-reads the database)

JOB_TRANSITIONS = Counter("hub_lifecycle_job_transitions_total", "Lifecycle job transitions", ["kind", "to"])


class IllegalJobTransition(Conflict):
    type, title = "illegal-job-transition", "Illegal lifecycle job transition"


async def _record(
    session: AsyncSession, job: LifecycleJob, from_status: str | None, to_status: str, actor: str, reason: str | None
) -> None:
    await session.execute(
        insert(LifecycleJobTransition).values(
            job_id=job.id, from_status=from_status, to_status=to_status, actor=actor, reason=reason
        )
    )
    await add_event(
        session,
        outbox,
        LifecycleJobChangedV1(
            job_id=job.id,
            kind=job.kind,
            tenant_id=job.tenant_id,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            reason=reason[:4000] if reason else None,
        ),
        correlation_id=job.tenant_id,
    )
    await session.execute(text("SELECT pg_notify(:ch, :id)"), {"ch": STREAM_CHANNEL, "id": str(job.id)})
    JOB_TRANSITIONS.labels(job.kind, to_status).inc()


async def create(
    session: AsyncSession,
    *,
    kind: str,
    key: str,
    tenant_id: uuid.UUID,
    server_id: uuid.UUID | None,
    due_at: datetime,
    actor: str,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> tuple[LifecycleJob, bool]:
    """Insert the job in its kind's first state, once per ``key``: (job, created)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    status = FIRST[kind]
    row = (
        await session.execute(
            pg_insert(LifecycleJob)
            .values(
                id=uuid.uuid4(),
                kind=kind,
                key=key,
                tenant_id=tenant_id,
                server_id=server_id,
                status=status,
                due_at=due_at,
                requested_by=actor,
                reason=reason,
                data=data or {},
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(LifecycleJob)
        )
    ).scalar_one_or_none()
    if row is None:
        existing = (await session.execute(select(LifecycleJob).where(LifecycleJob.key == key))).scalar_one()
        return existing, False
    await _record(session, row, None, status, actor, reason)
    return row, True


async def transition(
    session: AsyncSession,
    job_id: uuid.UUID,
    to_status: str,
    *,
    actor: str,
    reason: str | None = None,
    expected: str | None = None,
    lease_owner: str | None = None,
    **fields: Any,
) -> LifecycleJob:
    """Move the job to ``to_status`` if its kind's table allows it from its current (or ``expected``) state and,
    with ``lease_owner``, only while that worker still holds the lease. Raises IllegalJobTransition (409)."""
    if "status" in fields:
        raise ValueError("status is set by transition() itself")
    job = (await session.execute(select(LifecycleJob).where(LifecycleJob.id == job_id))).scalar_one_or_none()
    if job is None:
        raise NotFound("No lifecycle job with that id.", job_id=str(job_id))
    table = TRANSITIONS[job.kind]
    from_status = expected or job.status
    if to_status not in table[from_status] or job.status != from_status:
        raise IllegalJobTransition(
            f"A {job.kind} job in {job.status} cannot move to {to_status}.",
            job_id=str(job_id),
            current_status=job.status,
            requested_status=to_status,
            allowed=sorted(table[job.status]),
        )
    values: dict[str, Any] = {"status": to_status, "updated_at": text("now()"), **fields}
    if to_status in IDLE:
        values.setdefault("lease_owner", None)
        values.setdefault("lease_until", None)
    if to_status in (SUCCEEDED, "PRUNED", CANCELLED):
        values.setdefault("finished_at", text("now()"))
    if to_status == FAILED:
        values.setdefault("failed_from", from_status)
    stmt = update(LifecycleJob).where(LifecycleJob.id == job_id, LifecycleJob.status == from_status)
    if lease_owner is not None:
        stmt = stmt.where(LifecycleJob.lease_owner == lease_owner)
    row = (
        await session.execute(stmt.values(**values).returning(LifecycleJob).execution_options(populate_existing=True))
    ).scalar_one_or_none()
    if row is None:
        raise IllegalJobTransition(
            f"The job changed concurrently; it is no longer in {from_status} under this worker's lease.",
            job_id=str(job_id),
            requested_status=to_status,
        )
    await _record(session, row, from_status, to_status, actor, reason)
    return row
