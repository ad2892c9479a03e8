"""Events in for the commands context: the provisioner's key-rotation reports move their commands."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantKeyRotationReportedV1
from letsbe_hub.commands import service
from letsbe_hub.db import inbox
from letsbe_platform.bus import Delivery
from letsbe_platform.outbox import inboxed

ON_ROTATION_REPORTED = "hub-on-key-rotation-reported"


class RotationReports:
    """The provisioner's key-rotation reports move their commands (one transaction with the inbox claim)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    @inboxed(inbox)
    async def on_reported(self, session: AsyncSession, event: TenantKeyRotationReportedV1, delivery: Delivery) -> None:
        await service.provisioner_report(session, event)
