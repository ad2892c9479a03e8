"""SQL of the rollouts context."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.commands.models import Command
from letsbe_hub.rollouts.models import ACTIVE, Rollout, RolloutEvent, RolloutTarget
from letsbe_hub.tenants.models import Agent, Tenant, TenantComponent, TenantState
from letsbe_platform.pagination import Keyset

ROLLOUT_EVENTS = Counter(
    "hub_rollout_events_total", "Rollout events (created, promoted, paused, aborted, ...)", ["kind"]
)


async def active_tenants(session: AsyncSession) -> list[Tenant]:
    """Newest first: the seed's canary order (less established tenants, smaller blast radius)."""
    stmt = select(Tenant).where(Tenant.status == TenantState.ACTIVE).order_by(Tenant.created_at.desc(), Tenant.id)
    return list((await session.execute(stmt)).scalars())


async def component_versions(
    session: AsyncSession, component: str, tenant_ids: list[uuid.UUID]
) -> dict[uuid.UUID, TenantComponent]:
    stmt = select(TenantComponent).where(
        TenantComponent.component == component, TenantComponent.tenant_id.in_(tenant_ids)
    )
    return {c.tenant_id: c for c in (await session.execute(stmt)).scalars()}


async def get(
    session: AsyncSession, rollout_id: uuid.UUID, *, lock: bool = False, skip_locked: bool = False
) -> Rollout | None:
    stmt = select(Rollout).where(Rollout.id == rollout_id)
    if lock:
        stmt = stmt.with_for_update(skip_locked=skip_locked)
    return (await session.execute(stmt)).scalar_one_or_none()


async def running_ids(session: AsyncSession) -> list[uuid.UUID]:
    stmt = select(Rollout.id).where(Rollout.status.in_(ACTIVE)).order_by(Rollout.created_at)
    return [r[0] for r in (await session.execute(stmt)).all()]


KEYSET = Keyset("rollouts", Rollout.created_at, Rollout.id)  # newest first
TARGETS_KEYSET = Keyset(
    "rollout-targets", RolloutTarget.stage, RolloutTarget.position, RolloutTarget.tenant_id, descending=False
)  # stage by stage, in rollout order


async def list_rollouts(
    session: AsyncSession,
    *,
    status: Sequence[str] = (),
    component: str | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Rollout], str | None]:
    stmt = select(Rollout)
    if status:
        stmt = stmt.where(Rollout.status.in_(status))
    if component is not None:
        stmt = stmt.where(Rollout.component == component)
    return await KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


async def page_of_targets(
    session: AsyncSession, rollout_id: uuid.UUID, *, stage: int | None, limit: int, cursor: str | None
) -> tuple[list[RolloutTarget], str | None]:
    stmt = select(RolloutTarget).where(RolloutTarget.rollout_id == rollout_id)
    if stage is not None:
        stmt = stmt.where(RolloutTarget.stage == stage)
    return await TARGETS_KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


async def active_for_component(session: AsyncSession, component: str) -> Rollout | None:
    stmt = select(Rollout).where(Rollout.component == component, Rollout.status.in_(ACTIVE))
    return (await session.execute(stmt)).scalar_one_or_none()


async def targets(session: AsyncSession, rollout_id: uuid.UUID, stage: int | None = None) -> list[RolloutTarget]:
    stmt = select(RolloutTarget).where(RolloutTarget.rollout_id == rollout_id)
    if stage is not None:
        stmt = stmt.where(RolloutTarget.stage == stage)
    return list((await session.execute(stmt.order_by(RolloutTarget.stage, RolloutTarget.position))).scalars())


async def counts(session: AsyncSession, rollout_id: uuid.UUID) -> dict[tuple[int, str], int]:
    stmt = (
        select(RolloutTarget.stage, RolloutTarget.status, func.count())
        .where(RolloutTarget.rollout_id == rollout_id)
        .group_by(RolloutTarget.stage, RolloutTarget.status)
    )
    return {(s, st): n for s, st, n in (await session.execute(stmt)).all()}


async def set_target(session: AsyncSession, rollout_id: uuid.UUID, tenant_id: uuid.UUID, **values: Any) -> None:
    """Columns other than its status (which only the TARGET machine writes)."""
    await session.execute(
        update(RolloutTarget)
        .where(RolloutTarget.rollout_id == rollout_id, RolloutTarget.tenant_id == tenant_id)
        .values(updated_at=func.now(), **values)
        # no in-session sync: the caller keeps its objects in step (a sync would expire them -> lazy IO)
        .execution_options(synchronize_session=False)
    )


async def commands_by_id(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, Command]:
    if not ids:
        return {}
    return {c.id: c for c in (await session.execute(select(Command).where(Command.id.in_(ids)))).scalars()}


async def last_heartbeats(session: AsyncSession, tenant_ids: list[uuid.UUID], kind: str) -> dict[uuid.UUID, Any]:
    stmt = select(Agent.tenant_id, Agent.last_heartbeat_at).where(
        Agent.tenant_id.in_(tenant_ids), Agent.kind == kind, Agent.revoked_at.is_(None)
    )
    return dict((await session.execute(stmt)).all())


async def add_event(
    session: AsyncSession, rollout_id: uuid.UUID, kind: str, message: str, data: dict | None = None
) -> None:
    session.add(RolloutEvent(rollout_id=rollout_id, kind=kind, message=message, data=data))
    if kind != "target":
        ROLLOUT_EVENTS.labels(kind).inc()


async def events_after(
    session: AsyncSession, rollout_id: uuid.UUID, after: int, limit: int = 200
) -> list[RolloutEvent]:
    stmt = (
        select(RolloutEvent)
        .where(RolloutEvent.rollout_id == rollout_id, RolloutEvent.id > after)
        .order_by(RolloutEvent.id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())
