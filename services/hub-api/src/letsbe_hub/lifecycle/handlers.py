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
from letsbe_platform.bus import Delivery, Handler
from letsbe_platform.db import unit_of_work
from letsbe_platform.outbox import claim

ON_OPERATION_REPORTED = "hub-on-tenant-operation-reported"
ON_SERVER_TASK_REPORTED = "hub-on-server-task-reported"
ON_TOOL_CHANGE_REPORTED = "hub-on-tool-change-reported"


def operation_report_handler(sessions: async_sessionmaker[AsyncSession]) -> Handler:
    async def on_reported(event: TenantOperationReportedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if await claim(session, inbox, ON_OPERATION_REPORTED, delivery.event_id):
                await recovery.record_report(session, event)

    return on_reported


def server_task_report_handler(sessions: async_sessionmaker[AsyncSession]) -> Handler:
    async def on_reported(event: TenantServerTaskReportedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if await claim(session, inbox, ON_SERVER_TASK_REPORTED, delivery.event_id):
                await service.server_task_reported(session, event, datetime.now(UTC))

    return on_reported


def tool_change_report_handler(sessions: async_sessionmaker[AsyncSession]) -> Handler:
    async def on_reported(event: TenantToolChangeReportedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if await claim(session, inbox, ON_TOOL_CHANGE_REPORTED, delivery.event_id):
                await tools.on_report(session, event, datetime.now(UTC))

    return on_reported
