"""Admin API of rollouts (fleet:read / fleet:write), with an SSE stream of a rollout's progress."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette.sse import EventSourceResponse

from letsbe_contracts.agent import ComponentName
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.rollouts import repository as repo
from letsbe_hub.rollouts import service
from letsbe_hub.rollouts.models import RolloutStatus
from letsbe_hub.rollouts.schemas import (
    MAX_STAGES,
    RolloutAbort,
    RolloutCreate,
    RolloutEventView,
    RolloutView,
    TargetView,
)
from letsbe_platform.db import unit_of_work
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import After, LastEventId, SessionDep, sse_cursor

router = APIRouter(prefix="/api/v1/admin/rollouts", tags=["rollouts"])


@router.post("", name="create", status_code=status.HTTP_201_CREATED)
async def create(body: RolloutCreate, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE)) -> RolloutView:
    """Roll a component to an image digest across the fleet, stage by stage (cohorts are fixed now)."""
    return await service.create(session, body, actor=f"token:{principal.name}")


@router.get("", name="list")
async def list_rollouts(
    session: SessionDep,
    _: Authorized(Scope.FLEET_READ),
    status_: Annotated[list[RolloutStatus] | None, Query(alias="status", description="Any of these; repeat")] = None,
    component: ComponentName | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[RolloutView]:
    """Rollouts, newest first, filtered; page with ``next_cursor``."""
    rows, next_cursor = await repo.list_rollouts(
        session, status=status_ or (), component=component, limit=limit, cursor=cursor
    )
    return Page(items=[await service.view(session, r.id) for r in rows], next_cursor=next_cursor)


@router.get("/{rollout_id}", name="get")
async def get(rollout_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_READ)) -> RolloutView:
    return await service.view(session, rollout_id)


@router.get("/{rollout_id}/targets", name="targets")
async def targets(
    rollout_id: uuid.UUID,
    session: SessionDep,
    _: Authorized(Scope.FLEET_READ),
    stage: Annotated[int | None, Query(ge=0, le=MAX_STAGES, description="Only this stage's tenants")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[TargetView]:
    """Per-tenant status, stage by stage in rollout order: stage, position (newest first), command, what it ran
    before."""
    return await service.target_views(session, rollout_id, stage=stage, limit=limit, cursor=cursor)


@router.post("/{rollout_id}/pause", name="pause")
async def pause(rollout_id: uuid.UUID, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE)) -> RolloutView:
    return await service.pause(session, rollout_id, actor=f"token:{principal.name}")


@router.post("/{rollout_id}/resume", name="resume")
async def resume(rollout_id: uuid.UUID, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE)) -> RolloutView:
    return await service.resume(session, rollout_id, actor=f"token:{principal.name}")


@router.post("/{rollout_id}/approve", name="approve")
async def approve(rollout_id: uuid.UUID, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE)) -> RolloutView:
    """Start the stage that needs a person's go-ahead (the 100 % stage by default)."""
    return await service.approve(session, rollout_id, actor=f"token:{principal.name}")


@router.post("/{rollout_id}/abort", name="abort")
async def abort(
    rollout_id: uuid.UUID,
    session: SessionDep,
    principal: Authorized(Scope.FLEET_WRITE),
    body: RolloutAbort | None = None,
) -> RolloutView:
    """Stop: queued updates are cancelled; with ``rollback`` the current stage's updated tenants go back."""
    return await service.abort(session, rollout_id, body or RolloutAbort(), actor=f"token:{principal.name}")


@router.get("/{rollout_id}/events", name="events")
async def events(
    rollout_id: uuid.UUID,
    request: Request,
    _: Authorized(Scope.FLEET_READ),
    last_event_id: LastEventId = None,
    after: After = 0,
) -> EventSourceResponse:
    """Server-sent events: every rollout event (``event: rollout-event``) followed by a fresh ``rollout`` snapshot;
    the stream ends after the rollout has finished. Reconnect with ``Last-Event-ID`` (or ``?after=``)."""
    sessions = request.app.state.runtime.sessions
    cursor = sse_cursor(last_event_id, after)  # a bad Last-Event-ID is a 422 whatever the id names
    async with unit_of_work(sessions) as session:
        await service.view(session, rollout_id)  # 404 before the stream starts
    return EventSourceResponse(rollout_events(sessions, rollout_id, cursor), ping=15)


async def rollout_events(
    sessions: async_sessionmaker[AsyncSession], rollout_id: uuid.UUID, last: int
) -> AsyncIterator[dict]:
    """The rollout's events after ``last``, each followed by a fresh snapshot, until it has finished (also the
    console's stream)."""
    while True:
        async with unit_of_work(sessions) as session:
            new = await repo.events_after(session, rollout_id, last)
            snapshot = await service.view(session, rollout_id) if new or last == 0 else None
        for e in new:
            last = e.id
            payload = RolloutEventView.model_validate(e, from_attributes=True)
            yield {"event": "rollout-event", "id": str(e.id), "data": payload.model_dump_json()}
        if snapshot is not None:
            yield {"event": "rollout", "data": snapshot.model_dump_json()}
            if snapshot.status in (RolloutStatus.COMPLETED, RolloutStatus.ABORTED):
                yield {"event": "end", "data": json.dumps({"status": snapshot.status})}
                return
        if last == 0:
            last = -1  # snapshot sent once even without events
        await asyncio.sleep(0.5)
