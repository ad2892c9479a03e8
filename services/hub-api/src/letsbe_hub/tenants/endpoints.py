"""HTTP of the tenants context: the agent API (/api/v1/tenant/…) and the admin API (/api/v1/admin/tenants/…)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from letsbe_contracts.agent import (
    Accepted,
    AgentIdentity,
    BackupReport,
    RegisterRequest,
    RegisterResponse,
    RotatedCredential,
    UsageReport,
)
from letsbe_contracts.events import DomainName, DomainSuffix
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.tenants import repository as repo
from letsbe_hub.tenants import service
from letsbe_hub.tenants.auth import CurrentAgent
from letsbe_hub.tenants.schemas import (
    AgentDetailsView,
    RegistrationTokenCreate,
    RegistrationTokenCreated,
    TenantStatus,
    TenantView,
)
from letsbe_platform.errors import NotFound
from letsbe_platform.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from letsbe_platform.web import SessionDep, problems

agent_router = APIRouter(prefix="/api/v1/tenant", tags=["tenant"])
admin_router = APIRouter(prefix="/api/v1/admin/tenants", tags=["tenants"])  # one tenant's view: lifecycle.tenants


# --- the agent API -------------------------------------------------------------------------------------------


@agent_router.post(
    "/register",
    name="register",
    status_code=status.HTTP_201_CREATED,
    responses=problems(401),  # the registration token (in the body) is unknown, used or expired
)
async def register(body: RegisterRequest, request: Request, session: SessionDep) -> RegisterResponse:
    """Trade a one-time registration token for this agent's API key (shown once)."""
    return await service.register(session, body, request.app.state.settings)


@agent_router.get("/me", name="me")
async def me(agent: CurrentAgent) -> AgentIdentity:
    """Who this credential is (the DNS service authenticates ACME hooks by forwarding to this route)."""
    return AgentIdentity(tenant_id=agent.tenant_id, agent_id=agent.agent_id, agent=agent.kind, domain=agent.domain)


@agent_router.post("/backup-reports", name="backup_report")
async def backup_report(body: BackupReport, agent: CurrentAgent, session: SessionDep) -> Accepted:
    """The daily reading of backup-status.json; one per tenant and day (a resend is acknowledged, not stored)."""
    return Accepted(duplicate=not await service.record_backup(session, agent, body))


@agent_router.post("/usage", name="usage")
async def usage(body: UsageReport, agent: CurrentAgent, session: SessionDep) -> Accepted:
    """Token usage of one hour; (tenant, hour, sequence) is stored once whatever the number of retries."""
    return Accepted(duplicate=not await service.record_usage(session, agent, body))


@agent_router.post("/credentials/rotate", name="rotate_credential")
async def rotate_credential(agent: CurrentAgent, request: Request, session: SessionDep) -> RotatedCredential:
    """A new API key; the one used for this call stays valid for a grace period, other older ones end now."""
    return await service.rotate_credential(session, agent, request.app.state.settings)


# --- the admin API -------------------------------------------------------------------------------------------


@admin_router.post(
    "/{tenant_id}/registration-tokens", name="create_registration_token", status_code=status.HTTP_201_CREATED
)
async def create_registration_token(
    tenant_id: uuid.UUID,
    body: RegistrationTokenCreate,
    request: Request,
    session: SessionDep,
    _: Authorized(Scope.TENANTS_ENROLL),
) -> RegistrationTokenCreated:
    """A single-use registration token for one agent of this tenant (creates the tenant the first time)."""
    return await service.mint_registration_token(session, tenant_id, body, request.app.state.settings)


@admin_router.get("", name="list")
async def list_tenants(
    session: SessionDep,
    _: Authorized(Scope.FLEET_READ),
    domain: Annotated[DomainName | None, Query(description="Exactly this domain")] = None,
    domain_suffix: Annotated[
        DomainSuffix | None, Query(description="This domain and its subdomains (e.g. example.com)")
    ] = None,
    status_: Annotated[list[TenantStatus] | None, Query(alias="status", description="Any of these; repeat")] = None,
    staging: Annotated[bool | None, Query(description="Only staging tenants (true) or only the others (false)")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[TenantView]:
    """Tenants, newest first, filtered; page with ``next_cursor``."""
    filters = repo.TenantFilters(domain=domain, domain_suffix=domain_suffix, status=status_ or (), staging=staging)
    return await service.list_tenants(session, filters, limit=limit, cursor=cursor)


@admin_router.get("/{tenant_id}/agents/{agent_id}/details", name="agent_details")
async def agent_details(
    tenant_id: uuid.UUID, agent_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_READ)
) -> AgentDetailsView:
    """The latest heavy part of the agent's heartbeat."""
    agents = {a.id for a in await repo.agents_of(session, tenant_id, include_revoked=True)}
    if agent_id not in agents:
        raise NotFound("No such agent on this tenant.")
    row = await repo.latest_details(session, agent_id)
    return AgentDetailsView(
        agent_id=agent_id, details=row.details if row else None, updated_at=row.updated_at if row else None
    )


@admin_router.post("/{tenant_id}/agents/{agent_id}/revoke", name="revoke_agent", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_agent(
    tenant_id: uuid.UUID, agent_id: uuid.UUID, session: SessionDep, _: Authorized(Scope.FLEET_WRITE)
) -> None:
    """Revoke an agent and all its credentials; it is told to re-enrol (which needs a new registration token)."""
    if not await service.revoke_agent(session, tenant_id, agent_id):
        raise NotFound("No active agent with that id on this tenant.")


routers = [agent_router, admin_router]
