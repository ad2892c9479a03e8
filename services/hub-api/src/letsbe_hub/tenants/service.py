"""Rules of the tenants context: registration, credentials, what agents report, the admin view of a tenant."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.agent import BackupReport, RegisterRequest, RegisterResponse, RotatedCredential, UsageReport
from letsbe_contracts.enums import AgentKind
from letsbe_contracts.events import (
    HeartbeatDetails,
    TenantAgentRegisteredV1,
    TenantBackupReportedV1,
    TenantUsageReportedV1,
    UsageTotals,
)
from letsbe_hub.auth.service import hash_token as hash_secret
from letsbe_hub.config import HubSettings
from letsbe_hub.db import outbox
from letsbe_hub.tenants import repository as repo
from letsbe_hub.tenants.auth import AgentPrincipal
from letsbe_hub.tenants.errors import BadRegistrationToken, TenantMismatch, TenantNotFound
from letsbe_hub.tenants.models import Agent, TenantState
from letsbe_hub.tenants.schemas import (
    AgentView,
    BackupView,
    ComponentView,
    RegistrationTokenCreate,
    RegistrationTokenCreated,
    TenantView,
)
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event
from letsbe_platform.pagination import Page

log = get_logger(__name__)

AGENT_KEY_PREFIX = "lba_"
REGISTRATION_TOKEN_PREFIX = "lbr_"  # noqa: S105 - a prefix, not a secret
# A stable namespace for deterministic event ids: the same report staged twice is one event.
_EVENT_NS = uuid.UUID("6f1d7c8e-3a0b-4c55-9a55-7d1e0c2b9f10")


def _new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


async def mint_registration_token(
    session: AsyncSession, tenant_id: uuid.UUID, body: RegistrationTokenCreate, settings: HubSettings
) -> RegistrationTokenCreated:
    """Creates the tenant row the first time (from the order's facts), then a single-use token for one agent."""
    await repo.insert_tenant_if_missing(
        session,
        {
            "id": tenant_id,
            "order_id": body.order_id,
            "domain": body.domain,
            "tier": body.tier.value,
            "region": body.region.value,
            "server_id": body.server_id,
            "status": TenantState.PENDING,
            "staging": False,
        },
    )
    tenant = await repo.get_tenant(session, tenant_id)
    assert tenant is not None
    if tenant.domain != body.domain or tenant.order_id != body.order_id:
        raise TenantMismatch("This tenant exists with another domain or order.")
    token = _new_secret(REGISTRATION_TOKEN_PREFIX)
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.registration_token_ttl_seconds)
    await repo.add_registration_token(session, tenant_id, hash_secret(token), expires_at)
    log.info("registration token minted", tenant_id=str(tenant_id), expires_at=expires_at.isoformat())
    return RegistrationTokenCreated(token=token, expires_at=expires_at)


async def register(session: AsyncSession, body: RegisterRequest, settings: HubSettings) -> RegisterResponse:
    consumed = await repo.consume_registration_token(session, hash_secret(body.registration_token))
    if consumed is None:
        raise BadRegistrationToken()
    token_id, tenant_id = consumed
    tenant = await repo.get_tenant(session, tenant_id, lock=True)
    if tenant is None:  # a token without its tenant cannot exist (same transaction created both)
        raise BadRegistrationToken()
    # Re-enrolment replaces the previous agent of this kind: its credentials stop working at once.
    replaced = await repo.revoke_active_agents(session, tenant_id, body.agent.value)
    api_key = _new_secret(AGENT_KEY_PREFIX)
    agent = Agent(
        tenant_id=tenant_id,
        kind=body.agent.value,
        domain=tenant.domain,
        version=body.version,
        hostname=body.hostname,
        last_seq=0,
    )
    await repo.add_agent(session, agent, hash_secret(api_key))
    await repo.mark_token_used_by(session, token_id, agent.id)
    if body.agent is AgentKind.SAFETY_WRAPPER and tenant.status == TenantState.PENDING:
        await repo.set_tenant_status(session, tenant, TenantState.ACTIVE)
    await repo.upsert_component(session, tenant_id, body.agent.value, version=body.version, digest=None)
    # Committed with the registration: the provisioner waiting for this agent hears it at once (it polls as well).
    await add_event(
        session,
        outbox,
        TenantAgentRegisteredV1(tenant_id=tenant_id, order_id=tenant.order_id, agent_id=agent.id, agent=body.agent),
        correlation_id=str(tenant.order_id),
        event_id=agent.id,
    )
    log.info(
        "agent registered",
        tenant_id=str(tenant_id),
        agent_id=str(agent.id),
        agent=body.agent.value,
        replaced=[str(r) for r in replaced],
    )
    return RegisterResponse(
        agent_id=agent.id,
        tenant_id=tenant_id,
        api_key=api_key,
        heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
    )


async def rotate_credential(session: AsyncSession, agent: AgentPrincipal, settings: HubSettings) -> RotatedCredential:
    api_key = _new_secret(AGENT_KEY_PREFIX)
    valid_until = datetime.now(UTC) + timedelta(seconds=settings.credential_rotation_grace_seconds)
    await repo.rotate_credential(session, agent.agent_id, agent.credential_id, hash_secret(api_key), valid_until)
    log.info("agent credential rotated", tenant_id=str(agent.tenant_id), agent_id=str(agent.agent_id))
    return RotatedCredential(api_key=api_key, previous_valid_until=valid_until)


DECOMMISSIONED = TenantState.DECOMMISSIONED


async def revoke_agent(session: AsyncSession, tenant_id: uuid.UUID, agent_id: uuid.UUID) -> bool:
    done = await repo.revoke_agent(session, tenant_id, agent_id)
    if done:
        log.info("agent revoked", tenant_id=str(tenant_id), agent_id=str(agent_id))
    return done


async def tenant_view(session: AsyncSession, tenant_id: uuid.UUID) -> TenantView:
    """Without its decommission job: ``lifecycle.tenants.tenant_view`` adds it (lifecycle sits above tenants)."""
    tenant = await repo.get_tenant(session, tenant_id)
    if tenant is None:
        raise TenantNotFound("No tenant with that id.")
    agents = await repo.agents_of(session, tenant_id)
    components = await repo.components_of(session, tenant_id)
    backup = await repo.latest_backup(session, tenant_id)
    return TenantView(
        tenant_id=tenant.id,
        order_id=tenant.order_id,
        domain=tenant.domain,
        tier=tenant.tier,
        region=tenant.region,
        server_id=tenant.server_id,
        status=tenant.status,
        staging=tenant.staging,
        created_at=tenant.created_at,
        agents=[_agent_view(a) for a in agents],
        components=[ComponentView.model_validate(c, from_attributes=True) for c in components],
        last_backup=BackupView.model_validate(backup, from_attributes=True) if backup else None,
    )


async def list_tenants(
    session: AsyncSession, filters: repo.TenantFilters, *, limit: int, cursor: str | None
) -> Page[TenantView]:
    tenants, next_cursor = await repo.list_tenants(session, filters, limit=limit, cursor=cursor)
    agents = await repo.agents_of_many(session, [t.id for t in tenants])
    by_tenant: dict[uuid.UUID, list[Agent]] = {}
    for a in agents:
        by_tenant.setdefault(a.tenant_id, []).append(a)
    items = [
        TenantView(
            tenant_id=t.id,
            order_id=t.order_id,
            domain=t.domain,
            tier=t.tier,
            region=t.region,
            server_id=t.server_id,
            status=t.status,
            staging=t.staging,
            created_at=t.created_at,
            agents=[_agent_view(a) for a in by_tenant.get(t.id, [])],
        )
        for t in tenants
    ]
    return Page(items=items, next_cursor=next_cursor)


async def set_staging(session: AsyncSession, tenant_id: uuid.UUID, staging: bool) -> None:
    if await repo.get_tenant(session, tenant_id) is None:
        raise TenantNotFound("No tenant with that id.")
    await repo.set_tenant_staging(session, tenant_id, staging)


def _agent_view(a: Agent) -> AgentView:
    return AgentView(
        agent_id=a.id,
        agent=a.kind,
        version=a.version,
        hostname=a.hostname,
        registered_at=a.registered_at,
        last_heartbeat_at=a.last_heartbeat_at,
        revoked_at=a.revoked_at,
    )


# --- what agents report ------------------------------------------------------------------------------------------


def details_digest(details: HeartbeatDetails) -> str:
    canonical = json.dumps(details.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def store_details(
    session: AsyncSession, agent_id: uuid.UUID, tenant_id: uuid.UUID, details: HeartbeatDetails, digest: str
) -> None:
    """The heavy part of a heartbeat, when it changed: the latest snapshot, and component versions."""
    await repo.store_details(session, agent_id, tenant_id, details.model_dump(mode="json"), digest)
    digests = {c.name: c.image_digest for c in details.containers}
    for component, version in details.versions.items():
        await repo.upsert_component(session, tenant_id, component, version=version, digest=digests.get(component))


async def record_backup(session: AsyncSession, agent: AgentPrincipal, report: BackupReport) -> bool:
    """Returns True if new. The event id derives from (tenant, date): a resend is staged once."""
    fresh = await repo.insert_backup_report(
        session,
        {
            "tenant_id": agent.tenant_id,
            "report_date": report.report_date,
            "agent_id": agent.agent_id,
            "checked_at": report.checked_at,
            "status": report.status.model_dump(mode="json") if report.status else None,
            "problem": report.problem,
        },
    )
    if fresh:
        event = TenantBackupReportedV1(
            tenant_id=agent.tenant_id,
            agent_id=agent.agent_id,
            domain=agent.domain,
            report_date=report.report_date,
            checked_at=report.checked_at,
            status=report.status,
            problem=report.problem,
        )
        await add_event(
            session,
            outbox,
            event,
            correlation_id=str(agent.tenant_id),
            event_id=uuid.uuid5(_EVENT_NS, f"backup:{agent.tenant_id}:{report.report_date.isoformat()}"),
        )
    return fresh


async def record_usage(session: AsyncSession, agent: AgentPrincipal, report: UsageReport) -> bool:
    hour = report.hour.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    lines: dict[str, dict[str, Any]] = {}
    for line in report.lines:  # the same model twice in one report adds up
        acc = lines.setdefault(line.model, {"model": line.model, "tokens_in": 0, "tokens_out": 0, "requests": 0})
        acc["tokens_in"] += line.tokens_in
        acc["tokens_out"] += line.tokens_out
        acc["requests"] += line.requests
    fresh = await repo.insert_usage_report(
        session,
        {
            "tenant_id": agent.tenant_id,
            "hour": hour,
            "sequence": report.sequence,
            "agent_id": agent.agent_id,
            "lines": list(lines.values()),
            "tokens_in": sum(v["tokens_in"] for v in lines.values()),
            "tokens_out": sum(v["tokens_out"] for v in lines.values()),
        },
    )
    if fresh:
        event = TenantUsageReportedV1(
            tenant_id=agent.tenant_id,
            hour=hour,
            sequence=report.sequence,
            lines=tuple(UsageTotals(**v) for v in lines.values()),
        )
        await add_event(
            session,
            outbox,
            event,
            correlation_id=str(agent.tenant_id),
            event_id=uuid.uuid5(_EVENT_NS, f"usage:{agent.tenant_id}:{hour.isoformat()}:{report.sequence}"),
        )
    return fresh
