"""The reads of the console's overview: counts the API has no single route for (each a GROUP BY over an index)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import case, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.enums import OrderStatus
from letsbe_hub.alerts.models import OPEN, RESOLVED, AlertRecord
from letsbe_hub.alerts.repository import KEYSET as ALERTS_KEYSET
from letsbe_hub.llm.models import LlmUsage
from letsbe_hub.orders.models import Order, ProvisioningProgress
from letsbe_hub.tenants.models import Agent, AgentDetails, BackupReportRow

IN_PROGRESS = [OrderStatus.PROVISIONING.value]


async def orders_by_status(session: AsyncSession) -> dict[str, int]:
    rows = (await session.execute(select(Order.status, func.count()).group_by(Order.status))).all()
    counts = dict(rows)
    return {s.value: counts.get(s.value, 0) for s in OrderStatus if counts.get(s.value)}


@dataclass(frozen=True)
class InProgress:
    order: Order
    step: int | None
    step_name: str | None


async def provisioning(session: AsyncSession, limit: int = 20) -> list[InProgress]:
    """Orders in PROVISIONING, oldest first, each with the last step the provisioner reported."""
    orders = (
        await session.execute(
            select(Order).where(Order.status.in_(IN_PROGRESS)).order_by(Order.updated_at).limit(limit)
        )
    ).scalars().all()
    if not orders:
        return []
    last = (
        select(ProvisioningProgress.order_id, ProvisioningProgress.step, ProvisioningProgress.payload)
        .where(ProvisioningProgress.order_id.in_([o.id for o in orders]), ProvisioningProgress.kind == "step")
        .order_by(ProvisioningProgress.order_id, ProvisioningProgress.id.desc())
        .distinct(ProvisioningProgress.order_id)
    )
    steps = {r.order_id: r for r in (await session.execute(last)).all()}
    out = []
    for o in orders:
        last_step = steps.get(o.id)
        out.append(InProgress(o, last_step.step, (last_step.payload or {}).get("name")) if last_step
                   else InProgress(o, None, None))
    return out


@dataclass(frozen=True)
class Freshness:
    fresh: int  # heard from within 3 heartbeat intervals
    late: int  # within an hour
    stale: int  # longer, or never
    total: int


async def heartbeat_freshness(session: AsyncSession, interval_seconds: int, now: datetime | None = None) -> Freshness:
    """Active agents by the age of their last heartbeat."""
    now = now or datetime.now(UTC)
    fresh_after, late_after = now - timedelta(seconds=3 * interval_seconds), now - timedelta(hours=1)
    hb = Agent.last_heartbeat_at
    bucket = case((hb >= fresh_after, "fresh"), (hb >= late_after, "late"), else_="stale")
    rows = dict(
        (await session.execute(select(bucket, func.count()).where(Agent.revoked_at.is_(None)).group_by(bucket))).all()
    )
    fresh, late, stale = rows.get("fresh", 0), rows.get("late", 0), rows.get("stale", 0)
    return Freshness(fresh, late, stale, fresh + late + stale)


async def alerts(
    session: AsyncSession, view: str, *, severity: str | None, limit: int, cursor: str | None
) -> tuple[list[AlertRecord], str | None]:
    """The alerts page's tabs: open (not yet taken in hand), acknowledged, silenced, resolved, all; newest first."""
    now = datetime.now(UTC)
    silenced = AlertRecord.silenced_until > now
    stmt = select(AlertRecord)
    if view == "open":
        stmt = stmt.where(AlertRecord.status == OPEN, AlertRecord.acknowledged_at.is_(None),
                          or_(AlertRecord.silenced_until.is_(None), ~silenced))
    elif view == "acknowledged":
        stmt = stmt.where(AlertRecord.status == OPEN, AlertRecord.acknowledged_at.is_not(None))
    elif view == "silenced":
        stmt = stmt.where(AlertRecord.status == OPEN, silenced)
    elif view == "resolved":
        stmt = stmt.where(AlertRecord.status == RESOLVED)
    if severity:
        stmt = stmt.where(AlertRecord.severity == severity)
    return await ALERTS_KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


async def unacknowledged_by_severity(session: AsyncSession) -> dict[str, int]:
    """Open alerts nobody acknowledged or silenced: the header's badge."""
    stmt = (
        select(AlertRecord.severity, func.count())
        .where(AlertRecord.status == OPEN, AlertRecord.acknowledged_at.is_(None),
               or_(AlertRecord.silenced_until.is_(None), AlertRecord.silenced_until <= func.now()))
        .group_by(AlertRecord.severity)
    )
    counts = {"hard": 0, "medium": 0, "soft": 0}
    counts.update(dict((await session.execute(stmt)).all()))
    return counts


@dataclass(frozen=True)
class FleetFacts:
    """What the fleet list shows of one tenant beyond its row: the agents' latest disk and memory, the LLM tokens
    the relay metered this month, the last backup report."""

    disk: dict | None = None  # DiskUsage as the heartbeat carried it
    memory: dict | None = None  # MemoryUsage
    tokens_this_month: int = 0
    backup_date: date | None = None
    backup_problem: str | None = None


async def fleet_facts(
    session: AsyncSession, tenant_ids: list[uuid.UUID], now: datetime | None = None
) -> dict[uuid.UUID, FleetFacts]:
    """For one page of tenants: three reads, each by the tenant id index of its table."""
    if not tenant_ids:
        return {}
    month = (now or datetime.now(UTC)).astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    details = {
        r.tenant_id: r
        for r in await session.execute(
            select(AgentDetails.tenant_id, AgentDetails.details["disk"].label("disk"),
                   AgentDetails.details["memory"].label("memory"))
            .where(AgentDetails.tenant_id.in_(tenant_ids))
            .order_by(AgentDetails.tenant_id, AgentDetails.updated_at.desc())
            .ext(distinct_on(AgentDetails.tenant_id))
        )
    }
    tokens = dict(
        (await session.execute(
            select(LlmUsage.tenant_id, func.sum(LlmUsage.tokens_in + LlmUsage.tokens_out))
            .where(LlmUsage.tenant_id.in_(tenant_ids), LlmUsage.hour >= month)
            .group_by(LlmUsage.tenant_id)
        )).all()
    )
    backups = {
        r.tenant_id: r
        for r in await session.execute(
            select(BackupReportRow.tenant_id, BackupReportRow.report_date, BackupReportRow.problem)
            .where(BackupReportRow.tenant_id.in_(tenant_ids))
            .order_by(BackupReportRow.tenant_id, BackupReportRow.report_date.desc())
            .ext(distinct_on(BackupReportRow.tenant_id))
        )
    }
    out = {}
    for t in tenant_ids:
        d, b = details.get(t), backups.get(t)
        out[t] = FleetFacts(
            disk=d.disk if d else None, memory=d.memory if d else None, tokens_this_month=int(tokens.get(t) or 0),
            backup_date=b.report_date if b else None, backup_problem=b.problem if b else None,
        )
    return out
