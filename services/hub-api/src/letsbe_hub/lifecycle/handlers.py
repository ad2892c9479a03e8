"""Events in for the lifecycle context: the provisioner's reports of server tasks move their decommission jobs."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantServerTaskReportedV1
from letsbe_hub.db import inbox
from letsbe_hub.lifecycle import service
from letsbe_platform.bus import Delivery, Handler
from letsbe_platform.db import unit_of_work
from letsbe_platform.outbox import claim

ON_SERVER_TASK_REPORTED = "hub-on-server-task-reported"


def server_task_report_handler(sessions: async_sessionmaker[AsyncSession]) -> Handler:
    """A report lands in its job and makes it due (one transaction with the inbox claim)."""

    async def on_reported(event: TenantServerTaskReportedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if await claim(session, inbox, ON_SERVER_TASK_REPORTED, delivery.event_id):
                await service.server_task_reported(session, event, datetime.now(UTC))

    return on_reported
