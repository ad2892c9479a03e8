"""Admin API of lifecycle jobs: list, get (with history), follow (SSE), run a waiting one now, retry a failed one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from sse_starlette import EventSourceResponse

from letsbe_contracts.enums import AgentKind
from letsbe_hub.approvals.errors import WrongAgent
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.lifecycle import recovery, state, tenants, tools
from letsbe_hub.lifecycle import repository as repo
from letsbe_hub.lifecycle.models import JobStatus as J
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.schemas import (
    AgentToolChange,
    BackupSets,
    BackupSetView,
    JobRetry,
    JobTransitionView,
    LifecycleJobView,
    RecoverCreate,
    RestoreCreate,
    ToolAdd,
)
from letsbe_hub.lifecycle.stream import ListenerDep, job_events
from letsbe_hub.tenants.auth import CurrentAgent
from letsbe_platform.errors import Conflict, NotFound
from letsbe_platform.web import After, LastEventId, SessionDep, problems, sse_cursor

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
    kind: Literal["decommission", "snapshot", "restore", "recover", "migrate", "tool-change"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[LifecycleJobView]:
    """Newest first; filter by tenant and kind."""
    return [view(j) for j in await repo.list_jobs(session, tenant_id=tenant_id, kind=kind, limit=limit)]


@router.get("/jobs/{job_id}", name="get_job", responses=problems(404))
async def get_job(job_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_READ)) -> LifecycleJobView:
    job = await repo.get(session, job_id)
    if job is None:
        raise NotFound("No lifecycle job with that id.", job_id=str(job_id))
    history = [JobTransitionView.model_validate(t, from_attributes=True) for t in await repo.history(session, job_id)]
    return view(job, history)


@router.get(
    "/jobs/{job_id}/events",
    name="job_events",
    summary="Server-Sent Events: the job's transitions so far, then live ones, until it is done",
    response_class=EventSourceResponse,
    responses=problems(404),
)
async def events(
    job_id: uuid.UUID,
    session: SessionDep,
    request: Request,
    listener: ListenerDep,
    _: Authorized(Scope.FLEET_READ),
    last_event_id: LastEventId = None,
    after: After | None = None,
) -> EventSourceResponse:
    if await repo.get(session, job_id) is None:
        raise NotFound("No lifecycle job with that id.", job_id=str(job_id))
    sessions = request.app.state.runtime.sessions
    stream = job_events(sessions, listener, job_id, after_id=sse_cursor(last_event_id, after))
    ping = request.app.state.settings.sse_ping_seconds
    return EventSourceResponse(stream, ping=ping, headers={"X-Accel-Buffering": "no"})


@router.post("/jobs/{job_id}/run-now", name="run_job_now", responses=problems(404, 409))
async def run_now(job_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_WRITE)) -> LifecycleJobView:
    """Make a waiting job due now: end a decommission's export window early (the customer asked for deletion), or
    take a tenant's scheduled snapshot at once."""
    job = await repo.get(session, job_id)
    if job is None:
        raise NotFound("No lifecycle job with that id.", job_id=str(job_id))
    if job.finished_at is not None or job.status == J.FAILED:
        raise Conflict(f"The job is {job.status}: nothing to run (a FAILED job is retried).", job_id=str(job_id))
    await repo.make_due(session, job_id, datetime.now(UTC))
    job = await repo.get(session, job_id)
    assert job is not None
    return view(job)


@router.post("/jobs/{job_id}/retry", name="retry_job", responses=problems(404, 409))
async def retry_job(
    job_id: uuid.UUID, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE), body: JobRetry | None = None
) -> LifecycleJobView:
    """A FAILED job resumes at the step that failed, now (its attempts start again)."""
    job = await repo.get(session, job_id)
    if job is None:
        raise NotFound("No lifecycle job with that id.", job_id=str(job_id))
    if job.status != J.FAILED or not job.failed_from:
        raise Conflict(f"Only a FAILED job can be retried; this one is {job.status}.", job_id=str(job_id))
    job = await state.transition(
        session,
        job_id,
        job.failed_from,
        actor=f"token:{principal.name}",
        reason=(body or JobRetry()).reason,
        expected=J.FAILED,
        attempts=0,
        due_at=datetime.now(UTC),
    )
    return view(job)


# --- restore, recovery, migration ----------------------------------------------------------------------------------


def _created(response: Response, created: bool) -> None:
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK


@router.get("/tenants/{tenant_id}/backups", name="list_backups", responses=problems(404, 409))
async def list_backups(
    tenant_id: uuid.UUID,
    session: SessionDep,
    _: Authorized(Scope.FLEET_READ),
    limit: Annotated[int, Query(ge=1, le=60)] = 14,
) -> BackupSets:
    """The tenant's nightly backup sets as its Safety Wrapper reported them, newest first (7 daily + 4 weekly are
    kept on the server; ``backup_set`` is what a restore names)."""
    rows = await recovery.backups(session, tenant_id, limit)
    return BackupSets(
        items=[
            BackupSetView(
                backup_set=r.report_date.isoformat(), checked_at=r.checked_at, status=r.status, problem=r.problem
            )
            for r in rows
        ]
    )


@router.post("/tenants/{tenant_id}/restore", name="start_restore", status_code=201, responses=problems(404, 409))
async def start_restore(
    tenant_id: uuid.UUID, body: RestoreCreate, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE)
) -> LifecycleJobView:
    """Restore one tool (or every tool) of the tenant from a backup set, on its server or on another one of its
    servers. Follow it with ``GET /jobs/{job_id}/events``."""
    job, _ = await recovery.start_restore(
        session,
        tenant_id,
        backup_set=body.backup_set,
        tool=body.tool,
        server_id=body.server_id,
        actor=f"token:{principal.name}",
        reason=body.reason,
        now=datetime.now(UTC),
    )
    return view(job)


@router.post(
    "/tenants/{tenant_id}/recover",
    name="start_recovery",
    status_code=201,
    responses={200: {"description": "A recovery of this tenant already runs: that job"}, **problems(404, 409)},
)
async def start_recovery(
    tenant_id: uuid.UUID,
    response: Response,
    session: SessionDep,
    principal: Authorized(Scope.FLEET_WRITE),
    body: RecoverCreate | None = None,
) -> LifecycleJobView:
    """ "The VPS is completely lost": a pool server is taken, provisioned, the latest backup restored on it (from the
    off-site copy), the tenant's DNS switched to it, and the lost server deleted; the job's history says how long
    each step took."""
    job, created = await recovery.start_recovery(
        session, tenant_id, actor=f"token:{principal.name}", reason=(body or RecoverCreate()).reason,
        now=datetime.now(UTC),
    )  # fmt: skip
    _created(response, created)
    return view(job)


@router.post(
    "/migrations/{proposal_id}/start",
    name="start_migration",
    status_code=201,
    responses={200: {"description": "The proposal's migration already exists: that job"}, **problems(404, 409)},
)
async def start_migration(
    proposal_id: uuid.UUID,
    response: Response,
    session: SessionDep,
    principal: Authorized(Scope.FLEET_WRITE),
) -> LifecycleJobView:
    """Carry out a monthly migration proposal (Hetzner -> Netcup); once per proposal."""
    job, created = await recovery.start_migration(
        session, proposal_id, actor=f"token:{principal.name}", now=datetime.now(UTC)
    )
    _created(response, created)
    return view(job)


# --- tools on a live tenant (letsbe_hub.lifecycle.tools) -------------------------------------------------------------

tools_router = APIRouter(prefix="/api/v1/admin/tenants", tags=["lifecycle"])
agent_tools_router = APIRouter(prefix="/api/v1/tenant", tags=["tenant-tools"])
TOOL_PROBLEMS = problems(404, 409, 422)


@tools_router.post("/{tenant_id}/tools", name="add_tool", status_code=status.HTTP_202_ACCEPTED, responses=TOOL_PROBLEMS)
async def add_tool(
    tenant_id: uuid.UUID, body: ToolAdd, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE)
) -> LifecycleJobView:
    """Add a catalog tool to a live tenant: a ``tool-change`` job (DNS record, stack, vhost, backup config, the Safety
    Wrapper's routes). 409 when the tenant has it already, another tool change is unfinished, or the tools would
    not fit the tier's memory budget; 422 for a tool the catalog does not know. The tenant's tool list changes
    when the job succeeds."""
    job = await tools.request_change(
        session, tenant_id, "add", body.tool, actor=f"token:{principal.name}", now=datetime.now(UTC), reason=body.reason
    )
    return view(job)


@tools_router.delete(
    "/{tenant_id}/tools/{tool}", name="remove_tool", status_code=status.HTTP_202_ACCEPTED, responses=TOOL_PROBLEMS
)
async def remove_tool(
    tenant_id: uuid.UUID,
    tool: Annotated[str, Path(min_length=1, max_length=41)],
    session: SessionDep,
    principal: Authorized(Scope.FLEET_WRITE),
) -> LifecycleJobView:
    """Remove a tool from a live tenant: a ``tool-change`` job that first keeps a final backup of the tool's data on
    the server (``/var/backups/letsbe/final/<tool>/<job id>``), then takes its stack, vhost, backup config and
    record away."""
    job = await tools.request_change(
        session, tenant_id, "remove", tool, actor=f"token:{principal.name}", now=datetime.now(UTC)
    )
    return view(job)


@agent_tools_router.post(
    "/tool-changes", name="agent_tool_change", status_code=status.HTTP_202_ACCEPTED, responses=TOOL_PROBLEMS
)
async def agent_tool_change(body: AgentToolChange, agent: CurrentAgent, session: SessionDep) -> LifecycleJobView:
    """The tenant's IT agent adds or removes a tool through its Safety Wrapper: only with an operator's approval of
    exactly this call (``letsbe`` / ``tools.add`` or ``tools.remove``, args ``{"tool": …}``), which the wrapper has
    consumed; one approval makes one job."""
    if agent.kind is not AgentKind.SAFETY_WRAPPER:
        raise WrongAgent("Only the tenant's Safety Wrapper changes its tools.")
    tools.validate_tools([body.tool])
    approval_id = await tools.approved_agent_call(session, agent.tenant_id, body.action, body.tool)
    job = await tools.request_change(
        session, agent.tenant_id, body.action, body.tool, actor=f"agent:{agent.agent_id}", now=datetime.now(UTC),
        reason=f"{body.action} {body.tool} (IT agent, approval {approval_id})", approval_id=approval_id,
    )  # fmt: skip
    return view(job)


# tenants: one tenant's admin view and its decommission
routers = [router, tenants.router, tools_router, agent_tools_router]
