"""Events in for the commands context: the provisioner's key-rotation reports move their commands."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_contracts.events import TenantKeyRotationReportedV1
from letsbe_hub.commands import service
from letsbe_hub.db import inbox
from letsbe_platform.bus import Delivery, Handler
from letsbe_platform.db import unit_of_work
from letsbe_platform.outbox import claim

ON_ROTATION_REPORTED = "hub-on-key-rotation-reported"


def rotation_report_handler(sessions: async_sessionmaker[AsyncSession]) -> Handler:
    """The provisioner's key-rotation reports move their commands (one transaction with the inbox claim)."""

    async def on_reported(event: TenantKeyRotationReportedV1, delivery: Delivery) -> None:
        async with unit_of_work(sessions) as session:
            if await claim(session, inbox, ON_ROTATION_REPORTED, delivery.event_id):
                await service.provisioner_report(session, event)

    return on_reported
