"""The periodic sweep: staleness of heartbeats (and of backups), decided from indexed columns, not per-tenant timers.

Liveness, per run (the startup grace of step 2 comes first):
1. Pipeline check. If none of a fleet of at least ``mass_offline_min`` tenants has been heard from for
   ``ingest_gap_seconds``, the hub (or the way from it) is down, not the tenants: one platform alert, nobody marked
   offline. When heartbeats flow again, every tenant gets a fresh window before anyone can be declared offline.
2. Grace. Nothing is judged before ``startup_grace`` after this process started (its consumer may still be catching
   up on the heartbeats queued while it was away), and nobody is declared offline before a fresh window (above)
   has passed.
3. Count, then mark: one UPDATE over the ``offline_at`` index for online tenants whose deadline (last_seen + N
   intervals) passed.
4. One incident, not thousands. Offline tenants wait ``offline_settle`` before being alerted one by one; if meanwhile
   at least max(mass_offline_min, mass_offline_fraction × fleet) tenants are silent and not alerted, it is one fleet
   incident (counted over the indexes before anything is marked). When it clears, the stragglers get a fresh window.

State that must outlive a restart (the fresh window, whether the pipeline was stalled) is in ``sweep_state``; a
Postgres advisory lock keeps replicas from sweeping at the same time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from letsbe_monitor.alerts import repository as repo
from letsbe_monitor.alerts.models import Alert, SweepState
from letsbe_monitor.alerts.rules import backup_staleness
from letsbe_monitor.alerts.service import AlertEngine, Observation
from letsbe_monitor.clock import Clock, utcnow
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.metrics import SWEEP_SECONDS, TENANTS_OFFLINE, TENANTS_WATCHED
from letsbe_monitor.tenants.models import OFFLINE, ONLINE, Tenant
from letsbe_platform.db import unit_of_work
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

SWEEP_LOCK_KEY = 0x6C62_6D6F_6E73  # "lbmons": one sweeper at a time across replicas
MASS, STALLED, STALE = "fleet.mass_offline", "heartbeat.ingest_stalled", "heartbeat.stale"


@dataclass
class SweepResult:
    skipped: bool = False  # another replica holds the sweep lock
    in_grace: bool = False
    stalled: bool = False
    marked_offline: int = 0
    alerted: int = 0
    mass_incident: bool = False
    backup_stale: int = 0


class Sweep:
    """Liveness, backup and expiry judgement over every tenant (run by a ``letsbe_platform.workers.Periodic``).

    Replica-safe by a lease: one replica holds the ``monitor-sweep`` lease and runs the rounds; each round also takes
    a transaction-level advisory lock (``SWEEP_LOCK_KEY``) in the same transaction as its writes, the fencing that
    keeps a holder cut off from Postgres and its successor from judging at once (its transaction and its lock die
    together).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        engine: AlertEngine,
        settings: MonitorSettings,
        clock: Clock = utcnow,
    ):
        self.sessions = sessions
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.started_at = clock()

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
        s = self.settings
        result = SweepResult()
        window = timedelta(seconds=s.heartbeat_window_seconds)
        if now < self.started_at + timedelta(seconds=s.startup_grace):
            # Just started: the consumer may still be catching up, so old last_seen values prove nothing yet —
            # neither about tenants nor about the pipeline.
            result.in_grace = True
            return result

        # Two index look-ups, not a count of the fleet: heartbeats keep rewriting every row, so a full count
        # would visit the whole table on every sweep.
        freshest = await session.scalar(select(func.max(Tenant.last_seen)).where(Tenant.watched))
        silent_for = (now - freshest).total_seconds() if freshest is not None else 0.0
        if silent_for > s.ingest_gap_seconds and await self._fleet_at_least(session, s.mass_offline_min):
            watched = await self._fleet(session)
            state.ingest_stalled = True
            result.stalled = True
            await self.engine.apply(
                session,
                [
                    Observation(
                        None,
                        STALLED,
                        True,
                        f"No heartbeat from any of {watched} tenants for {silent_for:.0f} s: the hub or the "
                        "way from it to the monitor is down, not the tenants",
                        value=round(silent_for, 1),
                        threshold=s.ingest_gap_seconds,
                    )
                ],
                now,
            )
            return result
        if state.ingest_stalled:
            state.ingest_stalled = False
            state.grace_until = max(state.grace_until or now, now + window)
            await self.engine.apply(
                session, [Observation(None, STALLED, False, "Heartbeats reach the monitor again")], now
            )
            log.info("heartbeats flow again: fresh window for every tenant", until=state.grace_until.isoformat())

        if state.grace_until is not None and now < state.grace_until:
            result.in_grace = True
            return result

        # Counted before anything is marked, so a mass silence costs one alert, not an UPDATE of every row.
        newly_stale = await session.scalar(
            select(func.count()).where(Tenant.watched, Tenant.liveness == ONLINE, Tenant.offline_at < now)
        )
        settling = await session.scalar(
            select(func.count()).where(Tenant.watched, Tenant.liveness == OFFLINE, ~Tenant.offline_alerted)
        )
        silent = newly_stale + settling
        TENANTS_OFFLINE.set(silent)
        watched, mass_threshold = 0, None
        if silent >= s.mass_offline_min:  # only then does the fleet's size matter
            watched = await self._fleet(session)
            mass_threshold = max(s.mass_offline_min, math.ceil(s.mass_offline_fraction * watched))
        if mass_threshold is not None and silent >= mass_threshold:
            result.mass_incident = True
            await self.engine.apply(
                session,
                [
                    Observation(
                        None,
                        MASS,
                        True,
                        f"{silent} of {watched} tenants went silent together: one incident, not {silent} alerts",
                        value=float(silent),
                        threshold=float(mass_threshold),
                    )
                ],
                now,
            )
            return result
        if await repo.open_alert(session, None, MASS) is not None:
            state.grace_until = now + window  # the stragglers get a fresh window before any is alerted alone
            await self.engine.apply(
                session, [Observation(None, MASS, False, f"Only {silent} tenants still silent")], now
            )
            return result

        if newly_stale:
            marked = await session.execute(
                update(Tenant)
                .where(Tenant.watched, Tenant.liveness == ONLINE, Tenant.offline_at < now)
                .values(liveness=OFFLINE, offline_since=now)
            )
            result.marked_offline = marked.rowcount

        settled = now - timedelta(seconds=s.offline_settle)
        due = (
            select(Tenant.tenant_id)
            .where(Tenant.watched, Tenant.liveness == OFFLINE, ~Tenant.offline_alerted, Tenant.offline_since <= settled)
            .order_by(Tenant.offline_since)
            .limit(s.sweep_batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = (
            await session.execute(
                update(Tenant)
                .where(Tenant.tenant_id.in_(due))
                .values(offline_alerted=True)
                .returning(Tenant.tenant_id, Tenant.last_seen, Tenant.interval_seconds)
            )
        ).all()
        if not rows:
            return result
        obs = []
        for tenant_id, last_seen, interval in rows:
            silent = (now - last_seen).total_seconds()
            obs.append(
                Observation(
                    tenant_id,
                    STALE,
                    True,
                    f"No heartbeat since {last_seen:%Y-%m-%d %H:%M:%S} UTC: {silent / interval:.1f} intervals of "
                    f"{interval} s missed (threshold {s.missed_beats:g})",
                    value=round(silent / interval, 2),
                    threshold=s.missed_beats,
                )
            )
        applied = await self.engine.apply(session, obs, now)
        result.alerted = len(applied.raised)
        return result

    async def _fleet(self, session: AsyncSession) -> int:
        watched = await session.scalar(select(func.count()).where(Tenant.watched)) or 0
        TENANTS_WATCHED.set(watched)
        return watched

    @staticmethod
    async def _fleet_at_least(session: AsyncSession, n: int) -> bool:
        some = select(Tenant.tenant_id).where(Tenant.watched).limit(n).subquery()
        return (await session.scalar(select(func.count()).select_from(some)) or 0) >= n

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
