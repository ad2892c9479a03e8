"""Events in for the lifecycle context: the DNS service's and the provisioner's reports on tool-change phases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantToolChangeReportedV1
from letsbe_hub.db import inbox
from letsbe_hub.lifecycle import tools
from letsbe_platform.bus import Delivery, Handler
from letsbe_platform.db import unit_of_work
from letsbe_platform.outbox import claim

ON_TOOL_CHANGE_REPORTED = "hub-on-tool-change-reported"


def tool_change_report_handler(sessions: async_sessionmaker[AsyncSession]) -> Handler:
    """Keep each report on its job (one transaction with the inbox claim); the job runner acts on it."""

    async def on_reported(event: TenantToolChangeReportedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if await claim(session, inbox, ON_TOOL_CHANGE_REPORTED, delivery.event_id):
                await tools.on_report(session, event, datetime.now(UTC))

    return on_reported
