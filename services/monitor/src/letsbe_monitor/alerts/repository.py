"""SQL of the alerts context: open alerts by key, deliveries, silences, and bulk staging of outbox events."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, and_, any_, bindparam, delete, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import Event
from letsbe_monitor.alerts.models import Alert, Silence, SweepState
from letsbe_monitor.db import SCHEMA, outbox
from letsbe_monitor.notify.models import CANCELLED, DELIVERY, PENDING, RESOLVED, SENDING, SENT, SUPPRESSED, Delivery
from letsbe_monitor.tenants.models import Tenant
from letsbe_platform import state
from letsbe_platform.outbox import notify_channel

Key = tuple[uuid.UUID | None, str]
CHUNK = 2000  # rows per multi-row INSERT (asyncpg allows 32767 parameters per statement)


def _chunks(rows: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(rows), CHUNK):
        yield rows[i : i + CHUNK]


async def open_alerts(session: AsyncSession, keys: Iterable[Key]) -> dict[Key, Alert]:
    """The open alert of each key, locked for this transaction (one query per rule, tenant ids as one array)."""
    by_rule: dict[str, set[uuid.UUID | None]] = {}
    for tenant_id, rule in keys:
        by_rule.setdefault(rule, set()).add(tenant_id)
    found: dict[Key, Alert] = {}
    for rule, tenants in by_rule.items():
        ids = [t for t in tenants if t is not None]
        conds = []
        if ids:
            conds.append(Alert.tenant_id == any_(bindparam("ids", ids, type_=ARRAY(Uuid()))))
        if None in tenants:
            conds.append(Alert.tenant_id.is_(None))
        stmt = select(Alert).where(Alert.resolved_at.is_(None), Alert.rule == rule, or_(*conds)).with_for_update()
        for alert in (await session.scalars(stmt)).all():
            found[(alert.tenant_id, alert.rule)] = alert
    return found


async def open_alert(session: AsyncSession, tenant_id: uuid.UUID | None, rule: str) -> Alert | None:
    return (await open_alerts(session, [(tenant_id, rule)])).get((tenant_id, rule))


async def expired_alerts(session: AsyncSession, now: datetime, tenant_id: uuid.UUID | None = None) -> list[Alert]:
    stmt = select(Alert).where(Alert.resolved_at.is_(None), Alert.auto_resolve_at <= now)
    if tenant_id is not None:
        stmt = stmt.where(Alert.tenant_id == tenant_id)
    return list((await session.scalars(stmt.with_for_update(skip_locked=True))).all())


async def domains(session: AsyncSession, tenant_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str | None]:
    ids = list({t for t in tenant_ids if t is not None})
    if not ids:
        return {}
    rows = await session.execute(
        select(Tenant.tenant_id, Tenant.domain).where(
            Tenant.tenant_id == any_(bindparam("ids", ids, type_=ARRAY(Uuid())))
        )
    )
    return {tid: dom for tid, dom in rows.all()}


async def add_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert delivery rows; one per (alert, channel, kind) whatever happens twice."""
    if rows:  # executemany: one cached statement, batched by the driver (no giant statement to compile)
        stmt = insert(Delivery).on_conflict_do_nothing(constraint="uq_deliveries_alert_channel_kind")
        await session.execute(stmt, rows)


async def settle_deliveries_of_resolved(
    session: AsyncSession, alert_ids: list[uuid.UUID]
) -> set[tuple[uuid.UUID, str]]:
    """For alerts that just resolved: cancel notifications not sent yet (nobody needs 'raised' then 'resolved'),
    and return the (alert, channel) pairs that did hear about the alert, which now get a resolved notice."""
    if not alert_ids:
        return set()
    unsent = (Delivery.alert_id.in_(alert_ids), Delivery.status == PENDING, Delivery.kind != RESOLVED)
    await state.transition_all(
        session, DELIVERY, CANCELLED, where=unsent, actor="monitor", last_error="alert resolved before it was sent"
    )
    rows = await session.execute(
        select(Delivery.alert_id, Delivery.channel)
        .where(Delivery.alert_id.in_(alert_ids), Delivery.kind != RESOLVED, Delivery.status.in_((SENT, SENDING)))
        .distinct()
    )
    return {(a, c) for a, c in rows.all()}


async def stage_events(session: AsyncSession, items: Sequence[tuple[Event, uuid.UUID, str]]) -> None:
    """Stage many events in the outbox with one statement per chunk (the platform's add_event does one each)."""
    if not items:
        return
    rows = []
    for event, event_id, correlation_id in items:
        env = event.envelope(correlation_id=correlation_id, event_id=event_id)
        rows.append({"event_id": env.id, "subject": event.SUBJECT, "envelope": env.model_dump(mode="json")})
    await session.execute(insert(outbox).on_conflict_do_nothing(index_elements=["event_id"]), rows)
    await session.execute(text("SELECT pg_notify(:ch, '')"), {"ch": notify_channel(SCHEMA)})


async def get_alert(session: AsyncSession, alert_id: uuid.UUID, *, lock: bool = False) -> Alert | None:
    return await session.get(Alert, alert_id, with_for_update=lock or None)


async def suppress_staff_pending(session: AsyncSession, alert_id: uuid.UUID, staff_channels: Iterable[str]) -> int:
    unsent = (
        Delivery.alert_id == alert_id,
        Delivery.status == PENDING,
        Delivery.kind != RESOLVED,
        Delivery.channel.in_(list(staff_channels)),
    )
    suppressed = await state.transition_all(
        session, DELIVERY, SUPPRESSED, where=unsent, actor="monitor", last_error="acknowledged"
    )
    return len(suppressed)


async def set_silence(
    session: AsyncSession, tenant_id: uuid.UUID | None, rule: str, until: datetime | None, by: str
) -> None:
    if until is None:
        cond = Silence.tenant_id.is_(None) if tenant_id is None else Silence.tenant_id == tenant_id
        await session.execute(delete(Silence).where(cond, Silence.rule == rule))
        return
    stmt = insert(Silence).values(tenant_id=tenant_id, rule=rule, until=until, silenced_by=by)
    stmt = stmt.on_conflict_do_update(index_elements=["tenant_id", "rule"], set_={"until": until, "silenced_by": by})
    await session.execute(stmt)


async def silenced_keys(session: AsyncSession, keys: Iterable[Key], now: datetime) -> set[Key]:
    keys = set(keys)
    if not keys:
        return set()
    tenant_keys = [(t, r) for t, r in keys if t is not None]
    platform_rules = [r for t, r in keys if t is None]
    conds = []
    if tenant_keys:
        conds.append(tuple_(Silence.tenant_id, Silence.rule).in_(tenant_keys))
    if platform_rules:
        conds.append(and_(Silence.tenant_id.is_(None), Silence.rule.in_(platform_rules)))
    rows = await session.execute(select(Silence.tenant_id, Silence.rule).where(Silence.until > now, or_(*conds)))
    return {(t, r) for t, r in rows.all()}


async def sweep_state(session: AsyncSession) -> SweepState:
    state = await session.get(SweepState, 1, with_for_update=True)
    if state is None:  # the migration inserts it; recreate if someone deleted it
        state = SweepState(id=1, ingest_stalled=False)
        session.add(state)
        await session.flush()
    return state
