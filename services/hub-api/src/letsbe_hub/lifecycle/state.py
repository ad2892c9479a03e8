"""The lifecycle jobs' state machines: one transition table per kind, one function that applies them.

Each kind's table is a ``letsbe_platform.state`` machine: ``transition`` is its compare-and-set (``… AND
lease_owner = :me`` with a lease) that records the history row in ``lifecycle_job_transitions``, stages a
``lifecycle-job-changed`` event in the outbox and wakes the job's SSE listeners, all in the caller's transaction.
Nothing else writes ``status``.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.events import LifecycleJobChangedV1
from letsbe_hub.db import outbox
from letsbe_hub.lifecycle.models import JobStatus, LifecycleJob, LifecycleJobTransition
from letsbe_platform import state
from letsbe_platform.errors import NotFound
from letsbe_platform.outbox import add_event

DECOMMISSION, SNAPSHOT, TOOL_CHANGE = "decommission", "snapshot", "tool-change"
RESTORE, RECOVER, MIGRATE = "restore", "recover", "migrate"
J = JobStatus
FAILED, SUCCEEDED, CANCELLED = J.FAILED, J.SUCCEEDED, J.CANCELLED  # the names other modules import

# decommission: the tenant is already revoked and its DNS released when the job is created (tenants.service). On its
# server the provisioner takes a final backup (reported before anything else happens), then stops the agents; the
# server stays (data kept) until the export window ends, then a Hetzner server is deleted, a Netcup pool server is
# wiped and reinstalled through the provider and returns to the pool only after a fresh preflight. A tenant without
# a server starts in EXPORT_WINDOW (nothing to back up or stop).
# snapshot: one per tenant and day; PRUNED once three newer ones succeeded (its provider image is deleted);
# CANCELLED when its server left service before the snapshot was taken (a decommissioned tenant).
TRANSITIONS: dict[str, dict[JobStatus, frozenset[JobStatus]]] = {
    DECOMMISSION: {
        J.FINAL_BACKUP: frozenset({J.STOPPING_AGENTS, J.FAILED}),
        J.STOPPING_AGENTS: frozenset({J.EXPORT_WINDOW, J.FAILED}),
        J.EXPORT_WINDOW: frozenset({J.RELEASING_SERVER, J.REINSTALLING, J.FAILED}),
        J.RELEASING_SERVER: frozenset({J.SUCCEEDED, J.FAILED}),
        J.REINSTALLING: frozenset({J.PREFLIGHT, J.FAILED}),
        J.PREFLIGHT: frozenset({J.SUCCEEDED, J.FAILED}),
        J.FAILED: frozenset(
            {J.FINAL_BACKUP, J.STOPPING_AGENTS, J.EXPORT_WINDOW, J.RELEASING_SERVER, J.REINSTALLING, J.PREFLIGHT}
        ),
        J.SUCCEEDED: frozenset(),
    },
    SNAPSHOT: {
        J.SCHEDULED: frozenset({J.CREATING, J.FAILED, J.CANCELLED}),
        J.CREATING: frozenset({J.SUCCEEDED, J.FAILED, J.CANCELLED}),
        J.SUCCEEDED: frozenset({J.PRUNED}),
        J.FAILED: frozenset({J.CREATING, J.PRUNED}),
        J.PRUNED: frozenset(),
        J.CANCELLED: frozenset(),
    },
    # restore: one backup set (one tool or all) loaded on the tenant's server (or another one, given).
    RESTORE: {
        J.RESTORING: frozenset({J.SUCCEEDED, J.FAILED}),
        J.FAILED: frozenset({J.RESTORING}),
        J.SUCCEEDED: frozenset(),
    },
    # recover ("the VPS is completely lost"): a new server, provisioned, the latest backup (off-site) restored on
    # it, the tenant's DNS moved to it, then the lost server deleted (Hetzner) or drained (Netcup).
    RECOVER: {
        J.ALLOCATING: frozenset({J.PROVISIONING, J.FAILED}),
        J.PROVISIONING: frozenset({J.RESTORING, J.FAILED}),
        J.RESTORING: frozenset({J.SWITCHING_DNS, J.FAILED}),
        J.SWITCHING_DNS: frozenset({J.RELEASING_OLD, J.FAILED}),
        J.RELEASING_OLD: frozenset({J.SUCCEEDED, J.FAILED}),
        J.FAILED: frozenset({J.ALLOCATING, J.PROVISIONING, J.RESTORING, J.SWITCHING_DNS, J.RELEASING_OLD}),
        J.SUCCEEDED: frozenset(),
    },
    # migrate (Hetzner -> a Netcup pool server, from a monthly proposal): the target provisioned while the source
    # still serves; then the source's tools stopped and backed up (consistent), restored on the target, checked,
    # DNS switched (downtime ends), the source kept for the rollback window, then deleted.
    MIGRATE: {
        J.PROVISIONING: frozenset({J.BACKING_UP, J.FAILED}),
        J.BACKING_UP: frozenset({J.RESTORING, J.FAILED}),
        J.RESTORING: frozenset({J.VERIFYING, J.FAILED}),
        J.VERIFYING: frozenset({J.SWITCHING_DNS, J.FAILED}),
        J.SWITCHING_DNS: frozenset({J.ROLLBACK_WINDOW, J.FAILED}),
        J.ROLLBACK_WINDOW: frozenset({J.RELEASING_OLD, J.FAILED}),
        J.RELEASING_OLD: frozenset({J.SUCCEEDED, J.FAILED}),
        J.FAILED: frozenset(
            {J.PROVISIONING, J.BACKING_UP, J.RESTORING, J.VERIFYING, J.SWITCHING_DNS}
            | {J.ROLLBACK_WINDOW, J.RELEASING_OLD}
        ),
        J.SUCCEEDED: frozenset(),
    },
    # tool-change: one tool added to or removed from a live tenant (letsbe_hub.lifecycle.tools). Each phase is asked of
    # the service that owns it (DNS service, provisioner) and left on its report; the order of phases depends on the
    # action: add = DNS, STACK; remove = FINAL_BACKUP, STACK, DNS. A retry of a FAILED job resumes at its phase.
    TOOL_CHANGE: {
        J.REQUESTED: frozenset({J.DNS, J.FINAL_BACKUP, J.FAILED}),
        J.FINAL_BACKUP: frozenset({J.STACK, J.FAILED}),
        J.DNS: frozenset({J.STACK, J.SUCCEEDED, J.FAILED}),
        J.STACK: frozenset({J.DNS, J.SUCCEEDED, J.FAILED}),
        J.FAILED: frozenset({J.REQUESTED, J.DNS, J.FINAL_BACKUP, J.STACK}),
        J.SUCCEEDED: frozenset(),
    },
}
FIRST: dict[str, JobStatus] = {
    DECOMMISSION: J.FINAL_BACKUP,
    SNAPSHOT: J.SCHEDULED,
    RESTORE: J.RESTORING,
    RECOVER: J.ALLOCATING,
    MIGRATE: J.PROVISIONING,
    TOOL_CHANGE: J.REQUESTED,
}
# Where a worker has nothing more to do (FAILED waits for an operator's retry).
IDLE: frozenset[JobStatus] = frozenset({J.FAILED, J.SUCCEEDED, J.PRUNED, J.CANCELLED})

STREAM_CHANNEL = "hub_lifecycle_stream"  # NOTIFY payload: the job id (the SSE stream re-reads the database)

JOB_TRANSITIONS = Counter("hub_lifecycle_job_transitions_total", "Lifecycle job transitions", ["kind", "to"])


class IllegalJobTransition(state.IllegalTransition):
    type, title = "illegal-job-transition", "Illegal lifecycle job transition"


async def _on_change(session: AsyncSession, change: state.Change) -> None:
    job = change.row
    await add_event(
        session,
        outbox,
        LifecycleJobChangedV1(
            job_id=job.id,
            kind=job.kind,
            tenant_id=job.tenant_id,
            from_status=change.from_status,
            to_status=change.to_status,
            actor=change.actor,
            reason=change.reason[:4000] if change.reason else None,
        ),
        correlation_id=job.tenant_id,
    )
    await session.execute(text("SELECT pg_notify(:ch, :id)"), {"ch": STREAM_CHANNEL, "id": str(job.id)})
    JOB_TRANSITIONS.labels(job.kind, change.to_status).inc()


@functools.cache
def machine(kind: str) -> state.Machine:
    """The machine of one kind of job (its table in TRANSITIONS)."""
    return state.Machine(
        noun=f"{kind} job",
        model=LifecycleJob,
        transitions=TRANSITIONS[kind],
        history=LifecycleJobTransition,
        history_key="job_id",
        on_change=_on_change,
        conflict=IllegalJobTransition,
        id_field="job_id",
    )


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
    status: str | None = None,
) -> tuple[LifecycleJob, bool]:
    """Insert the job in its kind's first state (or ``status``, a state of its table where a job may begin when
    the first steps have nothing to do), once per ``key``: (job, created)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    status = status or FIRST[kind]
    if status not in TRANSITIONS[kind] or status in IDLE:
        raise ValueError(f"a {kind} job cannot begin in {status}")
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
    await state.created(session, machine(kind), row, actor=actor, reason=reason)
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
    found = (
        await session.execute(select(LifecycleJob.kind, LifecycleJob.status).where(LifecycleJob.id == job_id))
    ).one_or_none()
    if found is None:
        raise NotFound("No lifecycle job with that id.", job_id=str(job_id))
    kind, from_status = found[0], expected or found[1]
    values: dict[str, Any] = {"updated_at": text("now()"), **fields}
    if to_status in IDLE:
        values.setdefault("lease_owner", None)
        values.setdefault("lease_until", None)
    if to_status in (J.SUCCEEDED, J.PRUNED, J.CANCELLED):
        values.setdefault("finished_at", text("now()"))
    if to_status == J.FAILED:
        values.setdefault("failed_from", from_status)
    lease = (LifecycleJob.lease_owner == lease_owner,) if lease_owner is not None else ()
    return await state.transition(
        session, machine(kind), job_id, from_status, to_status, actor=actor, reason=reason, where=lease, **values
    )
