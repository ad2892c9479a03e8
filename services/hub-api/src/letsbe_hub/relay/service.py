"""Rules of the relay context: a tenant's customer app tokens (``lbc_…``, stored only as a hash, shown once)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.auth.service import hash_token
from letsbe_hub.relay import repository as repo
from letsbe_hub.relay.schemas import IssuedAppToken
from letsbe_hub.tenants import repository as tenants_repo
from letsbe_hub.tenants.errors import TenantNotFound
from letsbe_hub.tenants.models import TenantState
from letsbe_platform.errors import NotFound
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

APP_TOKEN_PREFIX = "lbc_"  # noqa: S105 - a prefix, not a secret


async def issue_app_token(session: AsyncSession, tenant_id: uuid.UUID, label: str) -> IssuedAppToken:
    tenant = await tenants_repo.get_tenant(session, tenant_id)
    if tenant is None or tenant.status == TenantState.DECOMMISSIONED:
        raise TenantNotFound("No active tenant with that id.")
    token = APP_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = await repo.add_token(session, tenant_id, hash_token(token), label)
    log.info("customer app token issued", tenant_id=str(tenant_id), token_id=str(row.id))
    return IssuedAppToken(id=row.id, tenant_id=tenant_id, label=label, token=token, created_at=row.created_at)


async def revoke_app_token(session: AsyncSession, tenant_id: uuid.UUID, token_id: uuid.UUID) -> None:
    if not await repo.revoke_token(session, tenant_id, token_id, datetime.now(UTC)):
        raise NotFound("No unrevoked app token with that id for this tenant.")
    log.info("customer app token revoked", tenant_id=str(tenant_id), token_id=str(token_id))


async def tenant_of_app_token(session: AsyncSession, token: str) -> uuid.UUID | None:
    row = await repo.find_token(session, hash_token(token))
    return row.tenant_id if row is not None else None
