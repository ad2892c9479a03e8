"""Event consumers of the alerts context: the hub's acknowledge / silence actions reach the monitor's routing."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import AlertAcknowledgedV1, AlertSilencedV1
from letsbe_monitor.alerts.service import AlertEngine
from letsbe_monitor.db import inbox
from letsbe_platform.bus import Delivery
from letsbe_platform.logging import get_logger
from letsbe_platform.outbox import inboxed
from letsbe_platform.web import Runtime

log = get_logger(__name__)


class AlertHandlers:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: AlertEngine):
        self.sessions = sessions
        self.engine = engine

    @inboxed(inbox)
    async def on_acknowledged(self, session: AsyncSession, event: AlertAcknowledgedV1, delivery: Delivery) -> None:
        if not await self.engine.acknowledge(session, event.alert_id, event.acknowledged_by, event.acknowledged_at):
            log.warning("acknowledged alert unknown here", alert_id=str(event.alert_id))

    @inboxed(inbox)
    async def on_silenced(self, session: AsyncSession, event: AlertSilencedV1, delivery: Delivery) -> None:
        if not await self.engine.silence(session, event.alert_id, event.silenced_until, event.silenced_by):
            log.warning("silenced alert unknown here", alert_id=str(event.alert_id))

    def consume(self, rt: Runtime) -> None:
        rt.consume("monitor-on-alert-acknowledged", AlertAcknowledgedV1, self.on_acknowledged)
        rt.consume("monitor-on-alert-silenced", AlertSilencedV1, self.on_silenced)
