"""One tenant as operators see it, with its decommission job, and decommissioning it.

Here and not in ``tenants``: decommissioning revokes the tenant's agents and LLM keys and starts its lifecycle job,
and lifecycle sits above tenants and llm (it plans per tenant), so tenants never import lifecycle.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.events import TenantDecommissionedV1
from letsbe_hub.auth.dependencies import Authorized
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.db import outbox
from letsbe_hub.lifecycle import service as lifecycle
from letsbe_hub.llm import repository as llm_repo
from letsbe_hub.tenants import repository as repo
from letsbe_hub.tenants import service as tenants
from letsbe_hub.tenants.auth import any_scope
from letsbe_hub.tenants.errors import TenantNotFound
from letsbe_hub.tenants.schemas import TenantDecommission, TenantUpdate, TenantView
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event
from letsbe_platform.web import SessionDep

log = get_logger(__name__)

router = APIRouter(prefix="/api/v1/admin/tenants", tags=["tenants"])


async def tenant_view(session: AsyncSession, tenant_id: uuid.UUID) -> TenantView:
    view = await tenants.tenant_view(session, tenant_id)
    return view.model_copy(update={"decommission_job_id": await lifecycle.decommission_job_id(session, tenant_id)})


async def decommission(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    reason: str,
    *,
    actor: str,
    export_window: timedelta,
) -> TenantView:
    """Remove a tenant: its agents lose their credentials, every service releases what it holds for it (the DNS
    service deletes the records it created and puts back the customer's records it had replaced), and the
    tenant's decommission job keeps the server for the export window (the callers': the setting, or none), then
    deletes it, which stops the provider's bill. Asking twice changes nothing more: the event id is derived from
    the tenant, so the outbox stages it once, and the job's key is the tenant."""
    tenant = await repo.get_tenant(session, tenant_id, lock=True)
    if tenant is None:
        raise TenantNotFound()
    await lifecycle.request_decommission(
        session, tenant, reason=reason, actor=actor, export_window=export_window, now=datetime.now(UTC)
    )
    if tenant.status != tenants.DECOMMISSIONED:
        await repo.revoke_active_agents(session, tenant_id)
        await llm_repo.revoke_keys(session, tenant_id, datetime.now(UTC))  # no more LLM spend on its account
        await repo.set_tenant_status(session, tenant, tenants.DECOMMISSIONED)
        await add_event(
            session,
            outbox,
            TenantDecommissionedV1(tenant_id=tenant_id, domain=tenant.domain, reason=reason),
            correlation_id=tenant_id,
            event_id=uuid.uuid5(tenant_id, "tenant-decommissioned"),
        )
        log.info("tenant decommissioned", tenant_id=str(tenant_id), reason=reason)
    return await tenant_view(session, tenant_id)


# --- HTTP: the admin routes of one tenant that show its decommission job (the others: tenants.endpoints) --------


@router.get("/{tenant_id}", name="get")
async def get_tenant(
    tenant_id: uuid.UUID, session: SessionDep, _: any_scope(Scope.FLEET_READ, Scope.TENANTS_ENROLL)
) -> TenantView:
    return await tenant_view(session, tenant_id)


@router.patch("/{tenant_id}", name="update")
async def update_tenant(
    tenant_id: uuid.UUID, body: TenantUpdate, session: SessionDep, _: Authorized(Scope.FLEET_WRITE)
) -> TenantView:
    """Mark a tenant as a staging tenant (rollouts start there)."""
    await tenants.set_staging(session, tenant_id, body.staging)
    return await tenant_view(session, tenant_id)


@router.post("/{tenant_id}/decommission", name="decommission")
async def decommission_tenant(
    tenant_id: uuid.UUID,
    session: SessionDep,
    request: Request,
    principal: Authorized(Scope.FLEET_WRITE),
    body: TenantDecommission | None = None,
) -> TenantView:
    """Remove a tenant: revoke its agents, tell every service to release what it holds, and start its
    decommission job (the server is deleted after the export window; see ``decommission_job_id``). Idempotent."""
    window = timedelta(hours=request.app.state.settings.decommission_export_window_hours)
    return await decommission(
        session,
        tenant_id,
        (body or TenantDecommission()).reason,
        actor=f"token:{principal.name}",
        export_window=window,
    )
