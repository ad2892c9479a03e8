"""Events in for the lifecycle jobs: the reports of the tasks they asked other services for (the provisioner, the
DNS service). Each report lands in its job and makes the job due, in one transaction with the inbox claim."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantTaskReportedV1
from letsbe_hub.db import inbox
from letsbe_hub.lifecycle import exchange
from letsbe_platform.bus import Delivery
from letsbe_platform.outbox import inboxed

ON_TASK_REPORTED = "hub-on-tenant-task-reported"


class ReportHandlers:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @inboxed(inbox)
    async def on_task_reported(self, session: AsyncSession, event: TenantTaskReportedV1, delivery: Delivery) -> None:
        await exchange.on_report(session, event, datetime.now(UTC))
