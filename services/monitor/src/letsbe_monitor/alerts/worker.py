"""The periodic sweep: staleness of heartbeats (and of backups), decided from indexed columns, not per-tenant timers.

Liveness is an ordered list of rules (``alerts/liveness.py``): the startup grace, the pipeline check, a fresh
window, one incident for a mass silence, then marking and alerting tenants one by one.

State that must outlive a restart (the fresh window, whether the pipeline was stalled) is in ``sweep_state``; a
Postgres advisory lock keeps replicas from sweeping at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_monitor.alerts import liveness
from letsbe_monitor.alerts import repository as repo
from letsbe_monitor.alerts.models import Alert, SweepState
from letsbe_monitor.alerts.rules import backup_staleness
from letsbe_monitor.alerts.service import Judge
from letsbe_monitor.metrics import SWEEP_SECONDS
from letsbe_monitor.tenants.models import Tenant
from letsbe_platform.db import unit_of_work

SWEEP_LOCK_KEY = 0x6C62_6D6F_6E73  # "lbmons": one sweeper at a time across replicas


@dataclass
class SweepResult:
    skipped: bool = False  # another replica holds the sweep lock
    in_grace: bool = False
    stalled: bool = False
    marked_offline: int = 0
    alerted: int = 0
    mass_incident: bool = False
    backup_stale: int = 0


class Sweep(Judge):
    """Liveness, backup and expiry judgement over every tenant (run by a ``letsbe_platform.workers.Periodic``).

    Replica-safe by a lease: one replica holds the ``monitor-sweep`` lease and runs the rounds; each round also takes
    a transaction-level advisory lock (``SWEEP_LOCK_KEY``) in the same transaction as its writes, the fencing that
    keeps a holder cut off from Postgres and its successor from judging at once (its transaction and its lock die
    together).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.started_at = self.clock()

    async def run_round(self) -> None:
        with SWEEP_SECONDS.time():
            await self.once()

    async def once(self) -> SweepResult:
        now = self.clock()
        async with unit_of_work(self.sessions) as session:
            locked = await session.scalar(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK_KEY)))
            if not locked:
                return SweepResult(skipped=True)
            state = await repo.sweep_state(session)
            result = await self._liveness(session, state, now)
            result.backup_stale = await self._backups(session, now)
            await self.engine.resolve_expired(session, now)
            state.last_sweep_at = now
        return result

    # --- liveness ----------------------------------------------------------------------------------------------

    async def _liveness(self, session: AsyncSession, state: SweepState, now: datetime) -> SweepResult:
        return await liveness.judge(
            liveness.Round(session, state, self.engine, self.settings, now, self.started_at, SweepResult())
        )

    # --- backups -------------------------------------------------------------------------------------------------

    async def _backups(self, session: AsyncSession, now: datetime) -> int:
        """backup-status.json older than 48 h (or never seen 48 h after watching began) for tenants not yet alerted.
        Resolution comes with the next fresh report (tenants/service.py)."""
        hours = self.settings.rule("backup.stale").threshold or 48
        cutoff = now - timedelta(hours=hours)
        already = exists().where(
            Alert.tenant_id == Tenant.tenant_id, Alert.rule == "backup.stale", Alert.resolved_at.is_(None)
        )
        rows = (
            await session.execute(
                select(Tenant.tenant_id, Tenant.backup_last_run, Tenant.watched_since)
                .where(
                    Tenant.watched,
                    or_(
                        Tenant.backup_last_run < cutoff,
                        and_(Tenant.backup_last_run.is_(None), Tenant.watched_since < cutoff),
                    ),
                    ~already,
                )
                .limit(self.settings.sweep_batch)
                .with_for_update(skip_locked=True)
            )
        ).all()
        obs = [backup_staleness(tid, last_run, self.settings, now, since=since) for tid, last_run, since in rows]
        applied = await self.engine.apply(session, obs, now)
        return len(applied.raised)
