"""Events in for the lifecycle jobs: the reports of what they asked of other services — the tenant operations of
restore, recovery and migration jobs (provisioner, DNS service), the server tasks of decommissions (provisioner) and
the phases of tool changes (DNS service, provisioner). Each report lands in its job and makes the job due, in one
transaction with the inbox claim."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantOperationReportedV1, TenantServerTaskReportedV1, TenantToolChangeReportedV1
from letsbe_hub.db import inbox
from letsbe_hub.lifecycle import recovery, service, tools
from letsbe_platform.bus import Delivery
from letsbe_platform.outbox import inboxed

ON_OPERATION_REPORTED = "hub-on-tenant-operation-reported"
ON_SERVER_TASK_REPORTED = "hub-on-server-task-reported"
ON_TOOL_CHANGE_REPORTED = "hub-on-tool-change-reported"


class ReportHandlers:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @inboxed(inbox)
    async def on_operation_reported(
        self, session: AsyncSession, event: TenantOperationReportedV1, delivery: Delivery
    ) -> None:
        await recovery.record_report(session, event)

    @inboxed(inbox)
    async def on_server_task_reported(
        self, session: AsyncSession, event: TenantServerTaskReportedV1, delivery: Delivery
    ) -> None:
        await service.server_task_reported(session, event, datetime.now(UTC))

    @inboxed(inbox)
    async def on_tool_change_reported(
        self, session: AsyncSession, event: TenantToolChangeReportedV1, delivery: Delivery
    ) -> None:
        await tools.on_report(session, event, datetime.now(UTC))
