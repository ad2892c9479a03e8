"""The rollout engine: advances every active rollout (service.tick) every ``rollout_tick_seconds``.

Replica-safe by a lease: exactly one hub replica runs the rounds. Each tick also holds its rollout's row
``FOR UPDATE SKIP LOCKED`` for its transaction, so a holder cut off from Postgres mid-round and the replica that took
the lease over cannot tick the same rollout at once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_hub.config import HubSettings
from letsbe_hub.rollouts import repository as repo
from letsbe_hub.rollouts import service
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.web import Runtime

log = get_logger(__name__)


class RolloutEngine:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: HubSettings):
        self.sessions = sessions
        self.settings = settings

    async def run_once(self) -> None:
        async with unit_of_work(self.sessions) as session:
            ids = await repo.running_ids(session)
        for rollout_id in ids:
            try:
                async with unit_of_work(self.sessions) as session:  # one rollout, one transaction
                    await service.tick(session, rollout_id, heartbeat_interval=self.settings.heartbeat_interval_seconds)
            except Exception as exc:
                log.warning("rollout step failed; will retry", rollout_id=str(rollout_id), error=repr(exc))


def start(rt: Runtime, settings: HubSettings) -> None:
    engine = RolloutEngine(rt.sessions, settings)
    rt.every("rollout-engine", settings.rollout_tick_seconds, engine.run_once, leased=True)
