"""The billing worker: grace periods that ended → suspension, export windows that ended → decommission, billing
emails, old rate counters. Safe with several hub replicas: each due row is taken with ``FOR UPDATE SKIP LOCKED`` in
its own transaction, so two replicas never act on the same row. The clock is injectable (tests call :meth:`tick`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_hub.billing import service
from letsbe_hub.billing.emails import BillingMailer
from letsbe_hub.config import HubSettings
from letsbe_hub.web import limits
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class BillingWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: HubSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self.mailer = BillingMailer(sessions, settings)

    async def tick(self) -> dict[str, int]:
        now = self.clock()
        done = {"suspended": 0, "decommissioned": 0}
        for name, step in (
            ("suspended", lambda s: service.suspend_due(s, self.settings, now)),
            ("decommissioned", lambda s: service.decommission_due(s, now)),
        ):
            while True:  # one row per transaction: a failure stops at that row, the rest is committed
                async with unit_of_work(self.sessions) as session:
                    if await step(session) is None:
                        break
                done[name] += 1
        async with unit_of_work(self.sessions) as session:
            await limits.prune(session, now - timedelta(days=1))  # every route's attempt counters
        done["emails"] = await self.mailer.send_due()
        return done

    async def round(self) -> bool:
        """One periodic round (letsbe_platform.workers.Periodic); True if it did something (look again at once)."""
        done = await self.tick()
        if any(done.values()):
            log.info("billing tick", **done)
        return any(done.values())
