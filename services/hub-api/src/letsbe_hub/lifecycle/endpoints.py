"""Admin API of the lifecycle jobs: list, get (with history), retry a failed one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.lifecycle import repository as repo
from letsbe_hub.lifecycle import state
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.schemas import JobRetry, JobTransitionView, LifecycleJobView
from letsbe_platform.errors import Conflict, NotFound
from letsbe_platform.web import SessionDep, problems

router = APIRouter(prefix="/api/v1/admin/lifecycle", tags=["lifecycle"])


def view(job: LifecycleJob, history: list[JobTransitionView] | None = None) -> LifecycleJobView:
    return LifecycleJobView(
        job_id=job.id,
        kind=job.kind,  # type: ignore[arg-type]
        key=job.key,
        tenant_id=job.tenant_id,
        server_id=job.server_id,
        status=job.status,
        due_at=job.due_at,
        attempts=job.attempts,
        last_error=job.last_error,
        leased_by=job.lease_owner,
        data=job.data,
        requested_by=job.requested_by,
        reason=job.reason,
        created_at=job.created_at,
        finished_at=job.finished_at,
        history=history or [],
    )


@router.get("/jobs", name="list_jobs")
async def list_jobs(
    session: SessionDep,
    _: Authorized(Scope.FLEET_READ),
    tenant_id: uuid.UUID | None = None,
    kind: Literal["decommission", "snapshot"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[LifecycleJobView]:
    """Newest first; filter by tenant and kind."""
    return [view(j) for j in await repo.list_jobs(session, tenant_id=tenant_id, kind=kind, limit=limit)]


@router.get("/jobs/{job_id}", name="get_job", responses=problems(404))
async def get_job(job_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_READ)) -> LifecycleJobView:
    job = await repo.get(session, job_id)
    if job is None:
        raise NotFound("No lifecycle job with that id.", job_id=str(job_id))
    history = [
        JobTransitionView(from_status=t.from_status, to_status=t.to_status, actor=t.actor, reason=t.reason, at=t.at)
        for t in await repo.history(session, job_id)
    ]
    return view(job, history)


@router.post("/jobs/{job_id}/retry", name="retry_job", responses=problems(404, 409))
async def retry_job(
    job_id: uuid.UUID, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE), body: JobRetry | None = None
) -> LifecycleJobView:
    """A FAILED job resumes at the step that failed, now (its attempts start again)."""
    job = await repo.get(session, job_id)
    if job is None:
        raise NotFound("No lifecycle job with that id.", job_id=str(job_id))
    if job.status != state.FAILED or not job.failed_from:
        raise Conflict(f"Only a FAILED job can be retried; this one is {job.status}.", job_id=str(job_id))
    job = await state.transition(
        session,
        job_id,
        job.failed_from,
        actor=f"token:{principal.name}",
        reason=(body or JobRetry()).reason,
        expected=state.FAILED,
        attempts=0,
        due_at=datetime.now(UTC),
    )
    return view(job)


routers = [router]
