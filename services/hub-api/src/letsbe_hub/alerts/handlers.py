"""The alerts context's background work, wired from ``letsbe_hub.app.start_workers``.

- ``hub-on-alert-raised`` / ``hub-on-alert-resolved``: keep the hub's alert table current (the dashboard).
- ``hub-self-check``: refreshes the hub's own health gauges (disk, outbox backlog) for Prometheus (§9.3).
"""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts import AlertRaisedV1, AlertResolvedV1
from letsbe_hub.alerts import repository as repo
from letsbe_hub.alerts.health import SELF_CHECK_SECONDS, self_check
from letsbe_hub.config import HubSettings
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.web import Runtime

log = get_logger(__name__)

ON_RAISED, ON_RESOLVED = "hub-on-alert-raised", "hub-on-alert-resolved"


class NotRaisedYet(Exception):
    """alert-resolved overtook its alert-raised (separate consumers): retry shortly, the raised one will be there."""


class AlertHandlers:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    # Both are idempotent by construction (upsert by alert id that never goes backwards; resolve only what is
    # open), so they need no inbox rows: the alert table is its own de-duplication.
    async def on_raised(self, event: AlertRaisedV1, delivery: Delivery) -> None:
        async with unit_of_work(self.sessions) as session:
            await repo.upsert_raised(session, event)

    async def on_resolved(self, event: AlertResolvedV1, delivery: Delivery) -> None:
        async with unit_of_work(self.sessions) as session:
            outcome = await repo.mark_resolved(session, event)
        if outcome is None:
            raise NotRaisedYet(f"alert {event.alert_id} resolved before the hub saw it raised")


def start(rt: Runtime, settings: HubSettings) -> None:
    handlers = AlertHandlers(rt.sessions)
    rt.consume(ON_RAISED, AlertRaisedV1, handlers.on_raised, concurrency=4)
    rt.consume(ON_RESOLVED, AlertResolvedV1, handlers.on_resolved, backoff=(0.5, 1, 2, 5, 10, 30))
    rt.every("hub-self-check", SELF_CHECK_SECONDS, partial(self_check, rt))
