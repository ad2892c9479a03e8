"""SQL of the tenants context (only this module writes it)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.tenants.models import (
    TENANT,
    Agent,
    AgentCredential,
    AgentDetails,
    BackupReportRow,
    RegistrationToken,
    Tenant,
    TenantComponent,
    TenantState,
    UsageReportRow,
)
from letsbe_platform import state
from letsbe_platform.pagination import Keyset


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID, *, lock: bool = False) -> Tenant | None:
    stmt = select(Tenant).where(Tenant.id == tenant_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_tenant_if_missing(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(Tenant).values(**values).on_conflict_do_nothing(index_elements=["id"]))


KEYSET = Keyset("tenants", Tenant.created_at, Tenant.id)  # newest first


@dataclass(frozen=True)
class TenantFilters:
    domain: str | None = None
    domain_suffix: str | None = None  # the domain itself or any subdomain of it
    status: Sequence[str] = ()
    staging: bool | None = None


async def list_tenants(
    session: AsyncSession, filters: TenantFilters, *, limit: int, cursor: str | None
) -> tuple[list[Tenant], str | None]:
    stmt = select(Tenant)
    if filters.domain is not None:
        stmt = stmt.where(Tenant.domain == filters.domain)
    if (suffix := filters.domain_suffix) is not None:
        stmt = stmt.where(or_(Tenant.domain == suffix, Tenant.domain.endswith("." + suffix, autoescape=True)))
    if filters.status:
        stmt = stmt.where(Tenant.status.in_(filters.status))
    if filters.staging is not None:
        stmt = stmt.where(Tenant.staging.is_(filters.staging))
    return await KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


async def add_registration_token(
    session: AsyncSession, tenant_id: uuid.UUID, token_hash: str, expires_at: datetime
) -> RegistrationToken:
    row = RegistrationToken(tenant_id=tenant_id, token_hash=token_hash, expires_at=expires_at)
    session.add(row)
    await session.flush()
    return row


async def consume_registration_token(session: AsyncSession, token_hash: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Compare-and-set: of two concurrent registrations with one token, exactly one gets a row back."""
    stmt = (
        update(RegistrationToken)
        .where(
            RegistrationToken.token_hash == token_hash,
            RegistrationToken.used_at.is_(None),
            RegistrationToken.expires_at > func.now(),
        )
        .values(used_at=func.now())
        .returning(RegistrationToken.id, RegistrationToken.tenant_id)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row else None


async def mark_token_used_by(session: AsyncSession, token_id: uuid.UUID, agent_id: uuid.UUID) -> None:
    await session.execute(
        update(RegistrationToken).where(RegistrationToken.id == token_id).values(used_by_agent_id=agent_id)
    )


async def revoke_active_agents(session: AsyncSession, tenant_id: uuid.UUID, kind: str | None = None) -> list[uuid.UUID]:
    stmt = update(Agent).where(Agent.tenant_id == tenant_id, Agent.revoked_at.is_(None))
    if kind is not None:
        stmt = stmt.where(Agent.kind == kind)
    ids = [r[0] for r in (await session.execute(stmt.values(revoked_at=func.now()).returning(Agent.id))).all()]
    if ids:
        await session.execute(
            update(AgentCredential)
            .where(AgentCredential.agent_id.in_(ids), AgentCredential.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
    return ids


async def revoke_agent(session: AsyncSession, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> bool:
    stmt = (
        update(Agent)
        .where(Agent.id == agent_id, Agent.tenant_id == tenant_id, Agent.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(Agent.id)
    )
    if (await session.execute(stmt)).first() is None:
        return False
    await session.execute(
        update(AgentCredential)
        .where(AgentCredential.agent_id == agent_id, AgentCredential.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return True


async def add_agent(session: AsyncSession, agent: Agent, key_hash: str) -> None:
    session.add(agent)
    await session.flush()
    session.add(AgentCredential(agent_id=agent.id, key_hash=key_hash))
    await session.flush()


async def set_tenant_status(session: AsyncSession, tenant: Tenant, status: TenantState) -> None:
    """From the status the caller read; nothing when another transaction moved it meanwhile."""
    await state.try_transition(session, TENANT, tenant.id, tenant.status, status, actor="hub", updated_at=func.now())


async def set_tenant_staging(session: AsyncSession, tenant_id: uuid.UUID, staging: bool) -> None:
    await session.execute(update(Tenant).where(Tenant.id == tenant_id).values(staging=staging, updated_at=func.now()))


async def find_credential(session: AsyncSession, key_hash: str) -> tuple[Agent, AgentCredential] | None:
    stmt = (
        select(Agent, AgentCredential)
        .join(AgentCredential, AgentCredential.agent_id == Agent.id)
        .where(
            AgentCredential.key_hash == key_hash,
            AgentCredential.revoked_at.is_(None),
            (AgentCredential.expires_at.is_(None)) | (AgentCredential.expires_at > func.now()),
            Agent.revoked_at.is_(None),
        )
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row else None


async def rotate_credential(
    session: AsyncSession, agent_id: uuid.UUID, old_credential_id: uuid.UUID, new_hash: str, old_valid_until: datetime
) -> None:
    # Other older keys end now; the one in use gets a grace period in case the agent never sees the answer.
    await session.execute(
        update(AgentCredential)
        .where(
            AgentCredential.agent_id == agent_id,
            AgentCredential.id != old_credential_id,
            AgentCredential.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )
    await session.execute(
        update(AgentCredential).where(AgentCredential.id == old_credential_id).values(expires_at=old_valid_until)
    )
    session.add(AgentCredential(agent_id=agent_id, key_hash=new_hash))
    await session.flush()


async def agents_of(session: AsyncSession, tenant_id: uuid.UUID, *, include_revoked: bool = False) -> list[Agent]:
    stmt = select(Agent).where(Agent.tenant_id == tenant_id).order_by(Agent.registered_at)
    if not include_revoked:
        stmt = stmt.where(Agent.revoked_at.is_(None))
    return list((await session.execute(stmt)).scalars())


async def agents_of_many(session: AsyncSession, tenant_ids: list[uuid.UUID]) -> list[Agent]:
    stmt = select(Agent).where(Agent.tenant_id.in_(tenant_ids), Agent.revoked_at.is_(None))
    return list((await session.execute(stmt)).scalars())


async def components_of(session: AsyncSession, tenant_id: uuid.UUID) -> list[TenantComponent]:
    stmt = select(TenantComponent).where(TenantComponent.tenant_id == tenant_id).order_by(TenantComponent.component)
    return list((await session.execute(stmt)).scalars())


async def upsert_component(
    session: AsyncSession, tenant_id: uuid.UUID, component: str, *, version: str | None, digest: str | None
) -> None:
    values: dict[str, Any] = {"version": version, "updated_at": func.now()}
    if digest is not None:
        values["digest"] = digest
    stmt = insert(TenantComponent).values(tenant_id=tenant_id, component=component, version=version, digest=digest)
    await session.execute(stmt.on_conflict_do_update(index_elements=["tenant_id", "component"], set_=values))


async def store_details(
    session: AsyncSession, agent_id: uuid.UUID, tenant_id: uuid.UUID, details: dict[str, Any], details_hash: str
) -> None:
    stmt = insert(AgentDetails).values(agent_id=agent_id, tenant_id=tenant_id, details=details)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["agent_id"], set_={"details": details, "updated_at": func.now()})
    )
    await session.execute(
        update(Agent).where(Agent.id == agent_id).values(details_hash=details_hash, details_at=func.now())
    )


async def latest_details(session: AsyncSession, agent_id: uuid.UUID) -> AgentDetails | None:
    return (await session.execute(select(AgentDetails).where(AgentDetails.agent_id == agent_id))).scalar_one_or_none()


async def insert_backup_report(session: AsyncSession, values: dict[str, Any]) -> bool:
    """False when this (tenant, date) was already stored: one report per tenant and day, the first one wins."""
    stmt = (
        insert(BackupReportRow)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "report_date"])
        .returning(BackupReportRow.tenant_id)
    )
    return (await session.execute(stmt)).first() is not None


async def latest_backup(session: AsyncSession, tenant_id: uuid.UUID) -> BackupReportRow | None:
    stmt = (
        select(BackupReportRow)
        .where(BackupReportRow.tenant_id == tenant_id)
        .order_by(BackupReportRow.report_date.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_usage_report(session: AsyncSession, values: dict[str, Any]) -> bool:
    """False when (tenant, hour, sequence) was already stored: the retry is absorbed."""
    stmt = (
        insert(UsageReportRow)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "hour", "sequence"])
        .returning(UsageReportRow.tenant_id)
    )
    return (await session.execute(stmt)).first() is not None


async def usage_totals(session: AsyncSession, tenant_id: uuid.UUID, since: datetime) -> tuple[int, int]:
    stmt = select(
        func.coalesce(func.sum(UsageReportRow.tokens_in), 0), func.coalesce(func.sum(UsageReportRow.tokens_out), 0)
    ).where(UsageReportRow.tenant_id == tenant_id, UsageReportRow.hour >= since)
    row = (await session.execute(stmt)).one()
    return int(row[0]), int(row[1])
