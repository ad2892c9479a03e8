"""Rules of the llm context: each tenant's relay key, and what the relay metered for it.

Why a relay: the platform's provider key never leaves the hub. A tenant's Secrets Proxy gets its own key for the
relay (``lbl_…``, stored here only as a hash), which the hub can revoke or rotate on its own, and every call it
forwards is counted by the hub against that tenant the moment the answer ends: metering does not depend on what the
tenant reports, and one tenant's key cannot be used to spend on another's account.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.auth.service import hash_token
from letsbe_hub.config import HubSettings
from letsbe_hub.llm import repository as repo
from letsbe_hub.llm.schemas import IssuedLlmKey, LlmUsageLine, LlmUsageView
from letsbe_hub.tenants import repository as tenants_repo
from letsbe_hub.tenants.errors import TenantNotFound
from letsbe_hub.tenants.models import TenantState
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

LLM_KEY_PREFIX = "lbl_"


async def issue_key(session: AsyncSession, tenant_id: uuid.UUID, settings: HubSettings) -> IssuedLlmKey:
    """A new relay key for the tenant; its previous one keeps working for the grace period, then ends."""
    tenant = await tenants_repo.get_tenant(session, tenant_id)
    if tenant is None or tenant.status == TenantState.DECOMMISSIONED:
        raise TenantNotFound("No active tenant with that id.")
    now = datetime.now(UTC)
    until = now + timedelta(seconds=settings.llm_key_grace_seconds)
    had_one = await repo.working_keys(session, tenant_id, now) > 0
    await repo.expire_active_keys(session, tenant_id, until)
    key = LLM_KEY_PREFIX + secrets.token_urlsafe(32)
    await repo.add_key(session, tenant_id, hash_token(key))
    log.info("llm relay key issued", tenant_id=str(tenant_id))
    return IssuedLlmKey(key=key, previous_valid_until=until if had_one else None)


async def revoke_keys(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    n = await repo.revoke_keys(session, tenant_id, datetime.now(UTC))
    if n:
        log.info("llm relay keys revoked", tenant_id=str(tenant_id), keys=n)
    return n


async def tenant_of_key(session: AsyncSession, key: str) -> uuid.UUID | None:
    return await repo.tenant_of_key(session, hash_token(key), datetime.now(UTC))


async def meter(session: AsyncSession, tenant_id: uuid.UUID, model: str, tokens_in: int, tokens_out: int) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    await repo.add_usage(session, tenant_id, hour, model[:200] or "unknown", max(0, tokens_in), max(0, tokens_out))


async def usage_view(session: AsyncSession, tenant_id: uuid.UUID, since: datetime) -> LlmUsageView:
    if await tenants_repo.get_tenant(session, tenant_id) is None:
        raise TenantNotFound("No tenant with that id.")
    since = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    rows = await repo.usage_of(session, tenant_id, since)
    return LlmUsageView(
        tenant_id=tenant_id,
        since=since,
        tokens_in=sum(r.tokens_in for r in rows),
        tokens_out=sum(r.tokens_out for r in rows),
        requests=sum(r.requests for r in rows),
        lines=[LlmUsageLine.model_validate(r, from_attributes=True) for r in rows],
    )
