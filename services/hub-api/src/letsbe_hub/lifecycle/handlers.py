"""Events in for the lifecycle jobs: the reports of the tenant operations that restore, recovery and migration
jobs asked for (from the provisioner and the DNS service)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantOperationReportedV1
from letsbe_hub.db import inbox
from letsbe_hub.lifecycle import recovery
from letsbe_platform.bus import Delivery, Handler
from letsbe_platform.db import unit_of_work
from letsbe_platform.outbox import claim

ON_OPERATION_REPORTED = "hub-on-tenant-operation-reported"


def operation_report_handler(sessions: async_sessionmaker[AsyncSession]) -> Handler:
    """A report lands in its job's data and makes the job due (one transaction with the inbox claim)."""

    async def on_reported(event: TenantOperationReportedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if await claim(session, inbox, ON_OPERATION_REPORTED, delivery.event_id):
                await recovery.record_report(session, event)

    return on_reported
