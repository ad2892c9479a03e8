"""Liveness as ordered rules: a round runs ``RULES`` in order until one returns True (the round is decided).

Each rule says what it judges; the order is the policy: no judgement during the startup grace, a silent pipeline
is one platform alert (nobody is marked offline), a fresh window after it or after a mass incident, a mass silence is
one fleet incident, and only then are tenants marked offline and, after ``offline_settle``, alerted one by one.
What must outlive a restart (the fresh window, whether the pipeline was stalled) is in ``sweep_state``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_monitor.alerts import repository as repo
from letsbe_monitor.alerts.models import SweepState
from letsbe_monitor.alerts.service import AlertEngine, Observation
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.metrics import TENANTS_OFFLINE, TENANTS_WATCHED
from letsbe_monitor.tenants.models import OFFLINE, ONLINE, Tenant
from letsbe_platform.logging import get_logger

if TYPE_CHECKING:
    from letsbe_monitor.alerts.worker import SweepResult

log = get_logger(__name__)

MASS, STALLED, STALE = "fleet.mass_offline", "heartbeat.ingest_stalled", "heartbeat.stale"


@dataclass
class Round:
    """One liveness round: what the rules read, and what they found (``result``, ``newly_stale``)."""

    session: AsyncSession
    state: SweepState
    engine: AlertEngine
    settings: MonitorSettings
    now: datetime
    started_at: datetime  # when this process started (the startup grace counts from it)
    result: SweepResult
    # Counted by ``mass_offline``: online tenants past their deadline, and those plus the offline ones not alerted.
    newly_stale: int = 0
    silent: int = 0

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.settings.heartbeat_window_seconds)


Rule = Callable[[Round], Awaitable[bool]]  # True: the round is decided


async def startup_grace(r: Round) -> bool:
    """Just started (the consumer may still be catching up on queued heartbeats): old last_seen values prove
    nothing yet, neither about tenants nor about the pipeline."""
    r.result.in_grace = r.now < r.started_at + timedelta(seconds=r.settings.startup_grace)
    return r.result.in_grace


async def ingest_stalled(r: Round) -> bool:
    """None of a fleet of at least ``mass_offline_min`` heard from for ``ingest_gap_seconds``: the hub (or the way
    from it) is down, not the tenants. Two index look-ups, not a count of the fleet (heartbeats rewrite every row)."""
    s = r.settings
    freshest = await r.session.scalar(select(func.max(Tenant.last_seen)).where(Tenant.watched))
    silent_for = (r.now - freshest).total_seconds() if freshest is not None else 0.0
    if silent_for <= s.ingest_gap_seconds or not await fleet_at_least(r.session, s.mass_offline_min):
        return False
    watched = await fleet(r.session)
    r.state.ingest_stalled = True
    r.result.stalled = True
    message = (
        f"No heartbeat from any of {watched} tenants for {silent_for:.0f} s: the hub or the way from it to the "
        "monitor is down, not the tenants"
    )
    observation = Observation(None, STALLED, True, message, value=round(silent_for, 1), threshold=s.ingest_gap_seconds)
    await r.engine.apply(r.session, [observation], r.now)
    return True


async def ingest_flowing_again(r: Round) -> bool:
    """Heartbeats flow again after a stall: every tenant gets a fresh window."""
    if r.state.ingest_stalled:
        r.state.ingest_stalled = False
        r.state.grace_until = max(r.state.grace_until or r.now, r.now + r.window)
        flowing = Observation(None, STALLED, False, "Heartbeats reach the monitor again")
        await r.engine.apply(r.session, [flowing], r.now)
        log.info("heartbeats flow again: fresh window for every tenant", until=r.state.grace_until.isoformat())
    return False


async def fresh_window(r: Round) -> bool:
    """Nobody is declared offline before the fresh window has passed."""
    r.result.in_grace = r.state.grace_until is not None and r.now < r.state.grace_until
    return r.result.in_grace


async def mass_offline(r: Round) -> bool:
    """At least max(mass_offline_min, mass_offline_fraction × fleet) tenants silent and not alerted: one fleet
    incident. Counted before anything is marked, so a mass silence costs one alert, not an UPDATE of every row."""
    s, session = r.settings, r.session
    r.newly_stale = await session.scalar(
        select(func.count()).where(Tenant.watched, Tenant.liveness == ONLINE, Tenant.offline_at < r.now)
    )
    settling = await session.scalar(
        select(func.count()).where(Tenant.watched, Tenant.liveness == OFFLINE, ~Tenant.offline_alerted)
    )
    silent = r.silent = r.newly_stale + settling
    TENANTS_OFFLINE.set(silent)
    if silent < s.mass_offline_min:  # only then does the fleet's size matter
        return False
    watched = await fleet(session)
    threshold = max(s.mass_offline_min, math.ceil(s.mass_offline_fraction * watched))
    if silent < threshold:
        return False
    r.result.mass_incident = True
    message = f"{silent} of {watched} tenants went silent together: one incident, not {silent} alerts"
    observation = Observation(None, MASS, True, message, value=float(silent), threshold=float(threshold))
    await r.engine.apply(session, [observation], r.now)
    return True


async def mass_offline_cleared(r: Round) -> bool:
    """The incident clears: the stragglers get a fresh window before any is alerted alone."""
    if await repo.open_alert(r.session, None, MASS) is None:
        return False
    r.state.grace_until = r.now + r.window
    await r.engine.apply(r.session, [Observation(None, MASS, False, f"Only {r.silent} tenants still silent")], r.now)
    return True


async def mark_offline(r: Round) -> bool:
    """One UPDATE over the ``offline_at`` index: online tenants past their deadline (last_seen + N intervals)."""
    if r.newly_stale:
        marked = await r.session.execute(
            update(Tenant)
            .where(Tenant.watched, Tenant.liveness == ONLINE, Tenant.offline_at < r.now)
            .values(liveness=OFFLINE, offline_since=r.now)
        )
        r.result.marked_offline = marked.rowcount
    return False


async def alert_settled(r: Round) -> bool:
    """Tenants offline for ``offline_settle`` are alerted, at most ``sweep_batch`` a round."""
    s = r.settings
    settled = r.now - timedelta(seconds=s.offline_settle)
    due = (
        select(Tenant.tenant_id)
        .where(Tenant.watched, Tenant.liveness == OFFLINE, ~Tenant.offline_alerted, Tenant.offline_since <= settled)
        .order_by(Tenant.offline_since)
        .limit(s.sweep_batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = (
        await r.session.execute(
            update(Tenant)
            .where(Tenant.tenant_id.in_(due))
            .values(offline_alerted=True)
            .returning(Tenant.tenant_id, Tenant.last_seen, Tenant.interval_seconds)
        )
    ).all()
    if not rows:
        return True
    obs = []
    for tenant_id, last_seen, interval in rows:
        silent = (r.now - last_seen).total_seconds()
        message = (
            f"No heartbeat since {last_seen:%Y-%m-%d %H:%M:%S} UTC: {silent / interval:.1f} intervals of "
            f"{interval} s missed (threshold {s.missed_beats:g})"
        )
        obs.append(
            Observation(tenant_id, STALE, True, message, value=round(silent / interval, 2), threshold=s.missed_beats)
        )
    applied = await r.engine.apply(r.session, obs, r.now)
    r.result.alerted = len(applied.raised)
    return True


RULES: tuple[Rule, ...] = (
    startup_grace,
    ingest_stalled,
    ingest_flowing_again,
    fresh_window,
    mass_offline,
    mass_offline_cleared,
    mark_offline,
    alert_settled,
)


async def judge(r: Round, rules: tuple[Rule, ...] = RULES) -> SweepResult:
    for rule in rules:
        if await rule(r):
            break
    return r.result


async def fleet(session: AsyncSession) -> int:
    watched = await session.scalar(select(func.count()).where(Tenant.watched)) or 0
    TENANTS_WATCHED.set(watched)
    return watched


async def fleet_at_least(session: AsyncSession, n: int) -> bool:
    some = select(Tenant.tenant_id).where(Tenant.watched).limit(n).subquery()
    return (await session.scalar(select(func.count()).select_from(some)) or 0) >= n
