"""SQL of the hub's alerts context."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import AlertRaisedV1, AlertResolvedV1
from letsbe_hub.alerts.models import ALERT, OPEN, RESOLVED, AlertRecord
from letsbe_platform import state
from letsbe_platform.pagination import Keyset


async def upsert_raised(session: AsyncSession, event: AlertRaisedV1) -> bool:
    """Store or refresh an open alert. A stale copy (lower count) or one for an already resolved alert changes
    nothing: events of one alert may arrive out of order, and a resolved alert id stays resolved."""
    values = {
        "alert_id": event.alert_id,
        "tenant_id": event.tenant_id,
        "rule": event.rule,
        "severity": event.severity.value,
        "status": OPEN,
        "summary": event.summary,
        "value": event.value,
        "threshold": event.threshold,
        "first_seen": event.first_seen,
        "last_seen": event.last_seen,
        "count": event.count,
    }
    stmt = insert(AlertRecord).values(**values)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[AlertRecord.alert_id],
        set_={
            "severity": excluded.severity,
            "summary": excluded.summary,
            "value": excluded.value,
            "threshold": excluded.threshold,
            "first_seen": func.least(AlertRecord.first_seen, excluded.first_seen),
            "last_seen": func.greatest(AlertRecord.last_seen, excluded.last_seen),
            "count": excluded.count,
            "updated_at": func.now(),
        },
        where=and_(AlertRecord.status == OPEN, excluded.count >= AlertRecord.count),
    ).returning(AlertRecord.alert_id)
    return (await session.execute(stmt)).first() is not None


async def mark_resolved(session: AsyncSession, event: AlertResolvedV1) -> bool | None:
    """True: resolved now; False: it already was; None: the hub has not seen this alert raised yet."""
    resolved = {"resolved_at": event.resolved_at, "resolved_summary": event.summary, "updated_at": func.now()}
    if await state.try_transition(session, ALERT, event.alert_id, OPEN, RESOLVED, actor="monitor", **resolved):
        return True
    exists = await session.scalar(select(AlertRecord.alert_id).where(AlertRecord.alert_id == event.alert_id))
    return False if exists is not None else None


async def get(session: AsyncSession, alert_id: uuid.UUID, *, lock: bool = False) -> AlertRecord | None:
    return await session.get(AlertRecord, alert_id, with_for_update=lock or None)


# Newest first, as the hub learned of them: created_at never changes (last_seen and first_seen do), so a page
# never skips or repeats an alert that is raised again while an operator pages.
KEYSET = Keyset("alerts", AlertRecord.created_at, AlertRecord.alert_id)


async def list_alerts(
    session: AsyncSession,
    *,
    status: str | None,
    severity: Sequence[str],
    tenant_id: uuid.UUID | None,
    rule: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AlertRecord], str | None]:
    stmt = select(AlertRecord)
    if status is not None:
        stmt = stmt.where(AlertRecord.status == status)
    if severity:
        stmt = stmt.where(AlertRecord.severity.in_(severity))
    if tenant_id is not None:
        stmt = stmt.where(AlertRecord.tenant_id == tenant_id)
    if rule is not None:
        stmt = stmt.where(AlertRecord.rule == rule)
    return await KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


async def open_by_severity(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(AlertRecord.severity, func.count()).where(AlertRecord.status == OPEN).group_by(AlertRecord.severity)
    )
    counts = {"soft": 0, "medium": 0, "hard": 0}
    counts.update({sev: n for sev, n in rows.all()})
    return counts
