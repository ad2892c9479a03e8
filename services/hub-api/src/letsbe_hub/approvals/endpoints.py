"""HTTP of the approvals context: the Safety Wrapper asks and uses (/api/v1/tenant/approvals), operators list
and decide (/api/v1/admin/approvals)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import ConfigDict, StringConstraints

from letsbe_contracts.approvals import Approval, ApprovalConsume, ApprovalCreate, ApprovalStatus
from letsbe_contracts.validation import RequestModel
from letsbe_hub.approvals import repository as repo
from letsbe_hub.approvals import service
from letsbe_hub.approvals.errors import ApprovalNotFound
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.tenants.auth import CurrentAgent
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import SessionDep

tenant_router = APIRouter(prefix="/api/v1/tenant/approvals", tags=["tenant-approvals"])
admin_router = APIRouter(prefix="/api/v1/admin/approvals", tags=["approvals"])


@tenant_router.post("", name="request", status_code=status.HTTP_201_CREATED,
                    responses={200: {"model": Approval, "description": "The same call is already pending"}})
async def request_approval(body: ApprovalCreate, agent: CurrentAgent, session: SessionDep,
                           response: Response) -> Approval:
    approval, created = await service.request(session, agent, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return approval


@tenant_router.get("/{approval_id}", name="get")
async def get_approval(approval_id: uuid.UUID, agent: CurrentAgent, session: SessionDep) -> Approval:
    return await service.get_for_tenant(session, agent, approval_id)


@tenant_router.post("/{approval_id}/consume", name="consume")
async def consume_approval(approval_id: uuid.UUID, body: ApprovalConsume, agent: CurrentAgent,
                           session: SessionDep) -> Approval:
    """APPROVED → CONSUMED, once, for exactly the call it was granted for."""
    return await service.consume(session, agent, approval_id, body.args_hash)


class ApprovalDecision(RequestModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None


@admin_router.get("", name="list")
async def list_approvals(
    session: SessionDep,
    _: Authorized(Scope.FLEET_READ),
    status_: Annotated[list[ApprovalStatus] | None, Query(alias="status", description="Any of these; repeat")] = None,
    tenant_id: uuid.UUID | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Approval]:
    """Approvals, newest first, filtered; page with ``next_cursor``."""
    await repo.expire_due(session, tenant_id=tenant_id)
    rows, next_cursor = await repo.listing(
        session, status=[s.value for s in status_ or ()], tenant_id=tenant_id, limit=limit, cursor=cursor
    )
    return Page(items=[service.view(r) for r in rows], next_cursor=next_cursor)


@admin_router.get("/{approval_id}", name="get")
async def get_admin(approval_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_READ)) -> Approval:
    await repo.expire_due(session, approval_id=approval_id)
    row = await repo.get(session, approval_id)
    if row is None:
        raise ApprovalNotFound("No approval with that id.")
    return service.view(row)


@admin_router.post("/{approval_id}/decision", name="decide")
async def decide(approval_id: uuid.UUID, body: ApprovalDecision, session: SessionDep,
                 principal: Authorized(Scope.FLEET_WRITE)) -> Approval:
    return await service.decide(session, approval_id, body.decision == "approve", principal.name, body.note)


routers = [tenant_router, admin_router]
