"""Events in for the lifecycle jobs: the reports of the tasks they asked other services for (the provisioner, the
DNS service). Each report lands in its job and makes the job due, in one transaction with the inbox claim."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantTaskReportedV1
from letsbe_hub.db import inbox
from letsbe_hub.lifecycle import exchange
from letsbe_platform.bus import Delivery, Handler
from letsbe_platform.db import unit_of_work
from letsbe_platform.outbox import claim

ON_TASK_REPORTED = "hub-on-tenant-task-reported"


def task_report_handler(sessions: async_sessionmaker[AsyncSession]) -> Handler:
    async def on_reported(event: TenantTaskReportedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if await claim(session, inbox, ON_TASK_REPORTED, delivery.event_id):
                await exchange.on_report(session, event, datetime.now(UTC))

    return on_reported
