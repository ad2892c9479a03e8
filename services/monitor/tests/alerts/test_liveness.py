"""Each liveness rule alone, against the real database: what it decides and what it leaves to the rules after it.
(The rules in order, round after round, are what ``test_sweep.py`` drives.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from letsbe_monitor.alerts import liveness
from letsbe_monitor.alerts import repository as repo
from letsbe_monitor.alerts.worker import SweepResult
from letsbe_monitor.tenants.models import OFFLINE, Tenant
from letsbe_platform.db import unit_of_work

from ..conftest import Monitor


@pytest.fixture
def monitor(make_settings, sessions, clock) -> Monitor:
    # A fleet of 3 is "mass"; no startup grace and no settle time unless a test asks for them.
    return Monitor(
        sessions, make_settings(startup_grace_seconds=0, offline_settle_seconds=0, mass_offline_min=3), clock
    )


async def run(monitor: Monitor, rule: liveness.Rule, *, started_ago: float = 3600, **state: object):
    """Run one rule in its own transaction; returns (decided, the round)."""
    async with unit_of_work(monitor.sessions) as session:
        sweep_state = await repo.sweep_state(session)
        for k, v in state.items():
            setattr(sweep_state, k, v)
        now = monitor.clock()
        started = now - timedelta(seconds=started_ago)
        r = liveness.Round(session, sweep_state, monitor.engine, monitor.settings, now, started, SweepResult())
        decided = await rule(r)
    return decided, r


def test_the_rules_run_in_the_documented_order():
    assert [rule.__name__ for rule in liveness.RULES] == [
        "startup_grace",
        "ingest_stalled",
        "ingest_flowing_again",
        "fresh_window",
        "mass_offline",
        "mass_offline_cleared",
        "mark_offline",
        "alert_settled",
    ]


async def test_startup_grace_judges_nothing_until_it_has_passed(make_settings, sessions, clock):
    monitor = Monitor(sessions, make_settings(startup_grace_seconds=120), clock)
    decided, r = await run(monitor, liveness.startup_grace, started_ago=119)
    assert decided and r.result.in_grace
    decided, r = await run(monitor, liveness.startup_grace, started_ago=120)
    assert not decided and not r.result.in_grace


async def test_ingest_stalled_is_one_platform_alert_when_a_whole_fleet_of_mass_offline_min_is_silent(monitor, clock):
    await monitor.provision()
    await monitor.provision()
    clock.advance(3600)
    assert (await run(monitor, liveness.ingest_stalled))[0] is False  # 2 tenants: too few to judge the pipeline
    await monitor.provision()
    clock.advance(monitor.settings.ingest_gap_seconds)
    assert (await run(monitor, liveness.ingest_stalled))[0] is False  # not longer than the gap yet
    clock.advance(1)
    decided, r = await run(monitor, liveness.ingest_stalled)
    assert decided and r.result.stalled and r.state.ingest_stalled
    [alert] = await monitor.alerts("heartbeat.ingest_stalled", open_only=True)
    assert alert.tenant_id is None


async def test_ingest_flowing_again_gives_every_tenant_a_fresh_window_and_goes_on(monitor, clock):
    decided, r = await run(monitor, liveness.ingest_flowing_again, ingest_stalled=True)
    assert not decided and not r.state.ingest_stalled
    assert r.state.grace_until == clock.now + timedelta(seconds=monitor.settings.heartbeat_window_seconds)
    # Not stalled: nothing changes.
    decided, r = await run(monitor, liveness.ingest_flowing_again, ingest_stalled=False, grace_until=None)
    assert not decided and r.state.grace_until is None


async def test_fresh_window_judges_nobody_until_it_ends(monitor, clock):
    decided, r = await run(monitor, liveness.fresh_window, grace_until=clock.now + timedelta(seconds=1))
    assert decided and r.result.in_grace
    decided, r = await run(monitor, liveness.fresh_window, grace_until=clock.now)
    assert not decided and not r.result.in_grace


async def test_mass_offline_is_one_incident_and_nobody_is_marked(monitor, clock):
    fleet = [await monitor.provision() for _ in range(3)]
    clock.advance(monitor.settings.heartbeat_window_seconds + 1)
    decided, r = await run(monitor, liveness.mass_offline)
    assert decided and r.result.mass_incident and r.newly_stale == r.silent == len(fleet)
    [incident] = await monitor.alerts("fleet.mass_offline", open_only=True)
    assert incident.value == 3
    assert (await run(monitor, liveness.mark_offline))[1].result.marked_offline == 0  # the count ran, no mark


async def test_mass_offline_counts_a_few_silent_tenants_and_leaves_them_to_the_rules_after_it(monitor, clock):
    silent = await monitor.provision()
    clock.advance(monitor.settings.heartbeat_window_seconds + 1)
    for _ in range(3):
        await monitor.beat(await monitor.provision())
    decided, r = await run(monitor, liveness.mass_offline)
    assert not decided and not r.result.mass_incident and (r.newly_stale, r.silent) == (1, 1)
    assert silent and await monitor.alerts() == []


async def test_mass_offline_cleared_resolves_the_incident_with_a_fresh_window(monitor, clock):
    assert (await run(monitor, liveness.mass_offline_cleared))[0] is False  # no incident open: go on
    for _ in range(3):
        await monitor.provision()
    clock.advance(monitor.settings.heartbeat_window_seconds + 1)
    await run(monitor, liveness.mass_offline)
    clock.advance(60)
    decided, r = await run(monitor, liveness.mass_offline_cleared)
    assert decided and r.state.grace_until == clock.now + timedelta(seconds=monitor.settings.heartbeat_window_seconds)
    [incident] = await monitor.alerts("fleet.mass_offline")
    assert incident.resolved_at == clock.now


async def test_mark_offline_marks_the_tenants_past_their_deadline_and_goes_on(monitor, clock):
    tid = await monitor.provision()
    clock.advance(monitor.settings.heartbeat_window_seconds + 1)

    async def mark(newly_stale: int):
        async def rule(r: liveness.Round) -> bool:
            r.newly_stale = newly_stale  # what mass_offline counted before
            return await liveness.mark_offline(r)

        return await run(monitor, rule)

    decided, r = await mark(0)
    assert not decided and r.result.marked_offline == 0  # counted none: no UPDATE
    decided, r = await mark(1)
    assert not decided and r.result.marked_offline == 1
    async with monitor.sessions() as s:
        assert (await s.get(Tenant, tid)).liveness == OFFLINE


async def test_alert_settled_alerts_tenants_offline_for_the_settle_time(make_settings, sessions, clock):
    monitor = Monitor(sessions, make_settings(startup_grace_seconds=0, offline_settle_seconds=30), clock)
    tid = await monitor.provision()
    clock.advance(monitor.settings.heartbeat_window_seconds + 1)

    async def mark_all(r: liveness.Round) -> bool:
        r.newly_stale = 1
        return await liveness.mark_offline(r)

    await run(monitor, mark_all)
    clock.advance(29)
    decided, r = await run(monitor, liveness.alert_settled)
    assert decided and r.result.alerted == 0
    clock.advance(1)
    decided, r = await run(monitor, liveness.alert_settled)
    assert decided and r.result.alerted == 1
    [alert] = await monitor.alerts("heartbeat.stale")
    assert alert.tenant_id == tid
