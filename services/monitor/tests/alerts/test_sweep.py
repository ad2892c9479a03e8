"""The liveness sweep: offline after more than 3 missed intervals, one incident for a mass silence, and no burst of
false offline alerts after a monitor restart or a hub outage."""

from sqlalchemy import func, select

from letsbe_monitor.alerts.worker import SWEEP_LOCK_KEY, Sweep


def sweep_for(monitor) -> Sweep:
    """A freshly started monitor process (its startup grace counts from now)."""
    return Sweep(monitor.sessions, monitor.engine, monitor.settings, monitor.clock)


async def beat_all(monitor, tenants):
    for tid in tenants:
        await monitor.beat(tid)


async def test_offline_after_more_than_three_missed_intervals_not_at_three(make_settings, sessions, clock):
    from ..conftest import Monitor

    monitor = Monitor(sessions, make_settings(startup_grace_seconds=0, offline_settle_seconds=0), clock)
    tid = await monitor.provision()
    sweep = sweep_for(monitor)
    clock.advance(180)  # exactly 3 intervals of 60 s
    assert (await sweep.once()).marked_offline == 0
    clock.advance(1)
    result = await sweep.once()
    assert (result.marked_offline, result.alerted) == (1, 1)
    await sweep.once()
    [alert] = await monitor.alerts("heartbeat.stale")
    assert alert.tenant_id == tid and alert.severity == "hard" and alert.count == 1 and alert.value > 3

    clock.advance(5)
    await monitor.beat(tid)
    [alert] = await monitor.alerts("heartbeat.stale")
    assert alert.resolved_at == clock.now
    assert [e["payload"]["alert_id"] for e in await monitor.events("alert-resolved")] == [str(alert.id)]


async def test_the_interval_each_agent_reports_sets_its_deadline(make_settings, sessions, clock):
    from ..conftest import Monitor

    monitor = Monitor(sessions, make_settings(startup_grace_seconds=0, offline_settle_seconds=0), clock)
    tid = await monitor.provision()
    await monitor.beat(tid, interval=300)  # the hub stretched this fleet's interval
    sweep = sweep_for(monitor)
    clock.advance(600)
    assert (await sweep.once()).marked_offline == 0
    clock.advance(301)
    assert (await sweep.once()).alerted == 1


async def test_a_monitor_restart_raises_no_false_offline_alerts(monitor, clock):
    live = [await monitor.provision() for _ in range(4)]
    dead = await monitor.provision()
    await beat_all(monitor, [*live, dead])

    # The monitor is down for 10 minutes. The tenants keep beating; their heartbeats wait in JetStream.
    queued = []
    for _ in range(10):
        clock.advance(60)
        queued.append(clock.now)
    restarted = sweep_for(monitor)
    first = await restarted.once()  # may run before the consumer has caught up on the backlog
    assert first.in_grace and first.marked_offline == 0

    for at in queued:  # the backlog drains
        for tid in live:
            async with monitor.sessions() as s, s.begin():
                from letsbe_monitor.tenants import service as tenants

                from ..conftest import heartbeat

                await tenants.record_heartbeat(s, monitor.engine, monitor.settings, heartbeat(tid, at), clock())
    for _ in range(5):  # live tenants keep beating; sweeps run every 60 s past the grace and the settle time
        clock.advance(60)
        await beat_all(monitor, live)
        await restarted.once()
    stale = await monitor.alerts("heartbeat.stale")
    assert [a.tenant_id for a in stale] == [dead]  # the one that really went silent, and only it


async def test_many_tenants_silent_at_once_are_one_incident(make_settings, sessions, clock):
    from ..conftest import Monitor

    monitor = Monitor(sessions, make_settings(startup_grace_seconds=0, mass_offline_min=5), clock)
    healthy = [await monitor.provision() for _ in range(4)]
    region = [await monitor.provision() for _ in range(8)]  # e.g. one provider region goes dark
    sweep = sweep_for(monitor)
    for tid in region:  # their last heartbeats are spread over a minute (agents beat with jitter)
        clock.advance(7)
        await monitor.beat(tid)
    for i in range(20):  # sweeps every 15 s; the healthy ones beat every 60 s
        clock.advance(15)
        if i % 4 == 0:
            await beat_all(monitor, healthy)
        await sweep.once()
    [incident] = await monitor.alerts("fleet.mass_offline")
    assert incident.tenant_id is None and incident.value == 8 and incident.resolved_at is None
    assert await monitor.alerts("heartbeat.stale") == []

    await beat_all(monitor, region[:6])  # most come back; two stay dark
    clock.advance(60)
    await beat_all(monitor, healthy + region[:6])
    await sweep.once()
    [incident] = await monitor.alerts("fleet.mass_offline")
    assert incident.resolved_at is not None
    for _ in range(5):  # a fresh window (3 min) for the stragglers, then the settle time
        clock.advance(60)
        await beat_all(monitor, healthy + region[:6])
        await sweep.once()
    assert sorted(a.tenant_id for a in await monitor.alerts("heartbeat.stale")) == sorted(region[6:])


async def test_a_hub_outage_is_one_pipeline_alert_then_a_fresh_window(make_settings, sessions, clock):
    from ..conftest import Monitor

    monitor = Monitor(sessions, make_settings(startup_grace_seconds=0, mass_offline_min=5), clock)
    fleet = [await monitor.provision() for _ in range(8)]
    sweep = sweep_for(monitor)
    for _ in range(6):  # the hub is down for 6 minutes: no heartbeat reaches the monitor at all
        clock.advance(60)
        result = await sweep.once()
    assert result.stalled and result.marked_offline == 0
    [stalled] = await monitor.alerts("heartbeat.ingest_stalled")
    assert stalled.resolved_at is None

    # The hub is back; agents return one by one over a few minutes (backoff with jitter); two never do.
    for i in range(6):
        clock.advance(40)
        await beat_all(monitor, fleet[: i + 1])
        await sweep.once()
    [stalled] = await monitor.alerts("heartbeat.ingest_stalled")
    assert stalled.resolved_at is not None
    for _ in range(6):
        clock.advance(60)
        await beat_all(monitor, fleet[:6])
        await sweep.once()
    assert sorted(a.tenant_id for a in await monitor.alerts("heartbeat.stale")) == sorted(fleet[6:])
    assert await monitor.alerts("fleet.mass_offline") == []


async def test_backups_never_reported_for_48_hours_are_stale(monitor, clock):
    tid = await monitor.provision()
    sweep = sweep_for(monitor)
    clock.advance(48 * 3600)
    await sweep.once()
    assert await monitor.alerts("backup.stale") == []
    clock.advance(60)
    await sweep.once()
    await sweep.once()
    [alert] = await monitor.alerts("backup.stale")
    assert alert.tenant_id == tid and alert.severity == "hard" and alert.count == 1


async def test_only_one_replica_sweeps_at_a_time(monitor, sessions):
    async with sessions() as other, other.begin():
        assert await other.scalar(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK_KEY)))
        assert (await sweep_for(monitor).once()).skipped


async def test_a_restart_after_a_long_outage_of_the_monitor_itself_is_not_a_pipeline_alert(
    make_settings, sessions, clock
):
    from ..conftest import Monitor

    monitor = Monitor(sessions, make_settings(mass_offline_min=5), clock)
    fleet = [await monitor.provision() for _ in range(8)]
    clock.advance(600)  # the monitor was down for 10 minutes; the heartbeats wait in JetStream
    restarted = sweep_for(monitor)
    assert (await restarted.once()).in_grace
    for _ in range(5):  # the backlog drains, then live heartbeats; sweeps go on past the startup grace
        await beat_all(monitor, fleet)
        clock.advance(60)
        assert not (await restarted.once()).stalled
    assert await monitor.alerts() == []
