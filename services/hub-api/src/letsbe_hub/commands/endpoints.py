"""HTTP of the commands context: agents heartbeat (and get their commands), pull/ack/report; operators queue, read
and cancel."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials

from letsbe_contracts.agent import (
    CommandAckResponse,
    CommandResultRequest,
    CommandsResponse,
    CommandStatus,
    HeartbeatRequest,
    HeartbeatResponse,
)
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.commands import fastpath, service
from letsbe_hub.commands import repository as repo
from letsbe_hub.commands.schemas import CommandCreate, CommandView
from letsbe_hub.commands.worker import waker_of
from letsbe_hub.tenants.auth import CurrentAgent, _bearer, bearer_key
from letsbe_platform.db import unit_of_work
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import SessionDep

agent_router = APIRouter(prefix="/api/v1/tenant/commands", tags=["tenant"])
# The heartbeat hands the agent its waiting commands, so it is answered here (liveness itself: tenants.heartbeat).
heartbeat_router = APIRouter(prefix="/api/v1/tenant", tags=["tenant"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["commands"])

LONG_POLL_MAX_SECONDS = 30


@agent_router.get("", name="pull_commands")
async def pull_commands(
    agent: CurrentAgent,
    request: Request,
    wait: Annotated[int, Query(ge=0, le=LONG_POLL_MAX_SECONDS, description="long-poll up to this many seconds")] = 0,
) -> CommandsResponse:
    """Commands waiting for this agent (each is marked DELIVERED; an unacknowledged one comes again later)."""
    rt = request.app.state.runtime
    settings = request.app.state.settings
    redeliver = timedelta(seconds=settings.command_redeliver_seconds)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    waker = waker_of(rt)
    # Subscribed before the first look and cleared before each: a command committed between a look and the wait
    # still wakes it (read first, subscribe after would leave it to the re-check).
    with waker.subscribe(agent.tenant_id) if waker is not None else contextlib.nullcontext() as wake:
        while True:
            if wake is not None:
                wake.clear()
            # A short transaction per look: a waiting long-poll holds no database connection.
            async with unit_of_work(rt.sessions) as session:
                found = await service.pull(session, agent, redeliver_after=redeliver)
            remaining = deadline - loop.time()
            if found or remaining <= 0 or rt.stopping.is_set():
                return CommandsResponse(commands=found)
            if wake is None:
                await asyncio.sleep(min(remaining, 1.0))
                continue
            # Woken by a command for this tenant, or by the hub's shutdown: it answers then instead of holding the
            # shutdown until its re-check (uvicorn waits for open requests before the app stops).
            waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(rt.stopping.wait())]
            try:
                await asyncio.wait(waits, timeout=min(remaining, settings.command_long_poll_recheck_seconds),
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                for w in waits:
                    w.cancel()


@agent_router.post("/{command_id}/ack", name="ack_command")
async def ack_command(command_id: uuid.UUID, agent: CurrentAgent, session: SessionDep) -> CommandAckResponse:
    """The agent journaled the command and will run it now (``run: false``: it was cancelled or expired)."""
    return await service.ack(session, agent, command_id)


@agent_router.post("/{command_id}/result", name="report_command_result")
async def report_result(
    command_id: uuid.UUID, body: CommandResultRequest, agent: CurrentAgent, session: SessionDep
) -> CommandView:
    return await service.report(session, agent, command_id, body)


@admin_router.post("/tenants/{tenant_id}/commands", name="create", status_code=status.HTTP_201_CREATED)
async def create_command(
    tenant_id: uuid.UUID, body: CommandCreate, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE)
) -> CommandView:
    """Queue a command for one tenant's agent. The same idempotency key returns the first command."""
    row, _ = await service.enqueue(
        session,
        tenant_id=tenant_id,
        command_type=body.type,
        params=body.params,
        actor=f"token:{principal.name}",
        agent=body.agent,
        idempotency_key=body.idempotency_key,
        expires_in=timedelta(seconds=body.expires_in_seconds),
        deadline_seconds=body.deadline_seconds,
    )
    return service.view(row)


@admin_router.get("/tenants/{tenant_id}/commands", name="list")
async def list_commands(
    tenant_id: uuid.UUID,
    session: SessionDep,
    _: Authorized(Scope.FLEET_READ),
    status_: Annotated[list[CommandStatus] | None, Query(alias="status", description="Any of these; repeat")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[CommandView]:
    """One tenant's commands, newest first; page with ``next_cursor``."""
    rows, next_cursor = await repo.list_for_tenant(
        session, tenant_id, status=[s.value for s in status_ or ()], limit=limit, cursor=cursor
    )
    return Page(items=[service.view(c) for c in rows], next_cursor=next_cursor)


@admin_router.get("/commands/{command_id}", name="get")
async def get_command(command_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_READ)) -> CommandView:
    return await service.get_view(session, command_id)


@admin_router.post("/commands/{command_id}/cancel", name="cancel")
async def cancel_command(
    command_id: uuid.UUID, session: SessionDep, principal: Authorized(Scope.FLEET_WRITE)
) -> CommandView:
    """Cancel a command that has not started running."""
    return await service.cancel(session, command_id, actor=f"token:{principal.name}")


@heartbeat_router.post("/heartbeat", name="heartbeat", response_model=HeartbeatResponse)
async def heartbeat(
    body: HeartbeatRequest,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Response:
    """Liveness every time, the heavy part when it changed, and the commands waiting for this agent.

    In the hub app this is answered by ``fastpath.HeartbeatFastPath`` before routing (same logic, same errors)."""
    answer = await fastpath.process(
        request.app.state.runtime, request.app.state.settings, body, bearer_key(credentials)
    )
    return Response(answer.model_dump_json(), media_type="application/json")


routers = [heartbeat_router, agent_router, admin_router]
