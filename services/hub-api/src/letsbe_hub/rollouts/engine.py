"""The rollout engine: a loop that advances every active rollout (service.tick) every few seconds."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_hub.config import HubSettings
from letsbe_hub.rollouts import repository as repo
from letsbe_hub.rollouts import service
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger
from letsbe_platform.metrics import BACKGROUND_TASK_LAST_SUCCESS
from letsbe_platform.web import Runtime

log = get_logger(__name__)


class RolloutEngine:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: HubSettings):
        self.sessions = sessions
        self.settings = settings
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self) -> None:
        async with unit_of_work(self.sessions) as session:
            ids = await repo.running_ids(session)
        for rollout_id in ids:
            try:
                async with unit_of_work(self.sessions) as session:  # one rollout, one transaction
                    await service.tick(session, rollout_id, heartbeat_interval=self.settings.heartbeat_interval_seconds)
            except Exception as exc:
                log.warning("rollout step failed; will retry", rollout_id=str(rollout_id), error=repr(exc))

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
                BACKGROUND_TASK_LAST_SUCCESS.labels("rollout-engine").set_to_current_time()
            except Exception as exc:
                log.warning("rollout engine pass failed", error=repr(exc))
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.rollout_tick_seconds)
            except TimeoutError:
                pass


def start(rt: Runtime, settings: HubSettings) -> None:
    assert rt.sessions is not None
    engine = RolloutEngine(rt.sessions, settings)
    rt.start("rollout-engine", engine.run(), engine.stop)
