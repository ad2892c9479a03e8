"""Event consumers of the tenants context: heartbeats, provisioning, backup reports, token usage."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import ProvisionedV1, TenantHeartbeatV1
from letsbe_contracts.events import TenantBackupReportedV1, TenantUsageReportedV1
from letsbe_monitor.alerts.service import Judge
from letsbe_monitor.db import inbox
from letsbe_monitor.tenants import service
from letsbe_platform.bus import Delivery
from letsbe_platform.db import unit_of_work
from letsbe_platform.outbox import inboxed
from letsbe_platform.web import Runtime


class TenantHandlers(Judge):
    async def on_heartbeat(self, event: TenantHeartbeatV1, delivery: Delivery) -> None:
        # No inbox row per heartbeat: record_heartbeat is idempotent by itself (see there).
        async with unit_of_work(self.sessions) as session:
            await service.record_heartbeat(session, self.engine, self.settings, event, self.clock())

    @inboxed(inbox)
    async def on_provisioned(self, session: AsyncSession, event: ProvisionedV1, delivery: Delivery) -> None:
        await service.record_provisioned(session, self.engine, self.settings, event, self.clock())

    @inboxed(inbox)
    async def on_backup_reported(
        self, session: AsyncSession, event: TenantBackupReportedV1, delivery: Delivery
    ) -> None:
        await service.record_backup_report(session, self.engine, self.settings, event, self.clock())

    async def on_usage_reported(self, event: TenantUsageReportedV1, delivery: Delivery) -> None:
        # De-duplicated by (tenant, hour, sequence), which also covers a report re-sent under a new event id.
        async with unit_of_work(self.sessions) as session:
            await service.record_usage(session, self.engine, self.settings, event, self.clock())

    def consume(self, rt: Runtime) -> None:
        # Heartbeats: only the present matters to a brand-new consumer, not a week of history in the stream.
        rt.consume(
            "monitor-on-tenant-heartbeat", TenantHeartbeatV1, self.on_heartbeat, concurrency=4, deliver_new_only=True
        )
        rt.consume("monitor-on-provisioned", ProvisionedV1, self.on_provisioned)
        rt.consume("monitor-on-backup-reported", TenantBackupReportedV1, self.on_backup_reported)
        rt.consume("monitor-on-usage-reported", TenantUsageReportedV1, self.on_usage_reported, concurrency=2)
