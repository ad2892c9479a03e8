"""Rules of the hub's alerts context: store what producers announce; an operator's acknowledge or silence is
stored here and sent to the monitor (alert-acknowledged / alert-silenced through the outbox), which owns routing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.events import AlertAcknowledgedV1, AlertSilencedV1
from letsbe_hub.alerts import repository as repo
from letsbe_hub.alerts.models import RESOLVED, AlertRecord
from letsbe_hub.db import outbox
from letsbe_platform.errors import Conflict, NotFound
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import add_event

log = get_logger(__name__)
EVENT_NS = uuid.UUID("0d7f2b8e-6a43-4c1f-9c7e-5b2d1e4a9f30")


async def _get(session: AsyncSession, alert_id: uuid.UUID) -> AlertRecord:
    alert = await repo.get(session, alert_id, lock=True)
    if alert is None:
        raise NotFound("No alert with that id.")
    return alert


async def acknowledge(session: AsyncSession, alert_id: uuid.UUID, by: str, note: str | None) -> AlertRecord:
    """Idempotent: acknowledging twice keeps the first acknowledgement and tells the monitor once."""
    alert = await _get(session, alert_id)
    if alert.status == RESOLVED:
        raise Conflict("The alert is already resolved.", alert_id=str(alert_id))
    if alert.acknowledged_at is not None:
        return alert
    now = datetime.now(UTC)
    alert.acknowledged_at, alert.acknowledged_by, alert.ack_note, alert.updated_at = now, by, note, now
    await add_event(
        session,
        outbox,
        AlertAcknowledgedV1(alert_id=alert_id, acknowledged_by=by, acknowledged_at=now, note=note),
        correlation_id=str(alert.tenant_id or alert_id),
        event_id=uuid.uuid5(EVENT_NS, f"{alert_id}:acknowledged"),
    )
    log.info("alert acknowledged", alert_id=str(alert_id), by=by)
    return alert


async def silence(
    session: AsyncSession, alert_id: uuid.UUID, until: datetime | None, by: str, note: str | None = None
) -> AlertRecord:
    """Silence (``until``, with an optional ``note`` saying why) or lift the silence (None) of the alert's tenant and
    rule."""
    alert = await _get(session, alert_id)
    now = datetime.now(UTC)
    alert.silenced_until, alert.silenced_by, alert.updated_at = until, (by if until else None), now
    alert.silence_note = note if until else None
    await add_event(
        session,
        outbox,
        AlertSilencedV1(alert_id=alert_id, silenced_until=until, silenced_by=by, silenced_at=now),
        correlation_id=str(alert.tenant_id or alert_id),
    )
    log.info(
        "alert silenced" if until else "alert silence lifted",
        alert_id=str(alert_id),
        by=by,
        until=until.isoformat() if until else None,
    )
    return alert
