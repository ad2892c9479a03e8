"""The monitor as a running service on real NATS and Postgres: events in, alerts out through its outbox, and a
restart that raises no false offline alerts."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from letsbe_contracts import AlertRaisedV1, AlertResolvedV1
from letsbe_contracts.events import AlertAcknowledgedV1
from letsbe_monitor.alerts.models import Alert, SweepState
from letsbe_monitor.app import create_app
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.db import outbox
from letsbe_monitor.tenants.models import Tenant
from letsbe_platform.testing import eventually, free_port

from .conftest import details, heartbeat, provisioned


class Collected:
    """Runs a consumer of one event type on the test's bus and keeps what it receives."""

    def __init__(self, bus, event_cls):
        self.events = []

        async def keep(event, delivery):
            self.events.append(event)

        self.consumer = bus.consumer(f"test-{uuid.uuid4().hex[:8]}", event_cls, keep)
        self.task = asyncio.create_task(self.consumer.run())

    async def wait(self, predicate, timeout=10.0):
        return await eventually(lambda: [e for e in self.events if predicate(e)], "a matching event", timeout=timeout)

    async def close(self):
        self.consumer.stop()
        await asyncio.wait_for(self.task, 5)


async def consumers_ready(bus, *durables, timeout=10.0):
    """Wait until the app's durable consumers exist: heartbeats are consumed from 'new' on, so one published
    before the very first start of the monitor would rightly be skipped."""

    async def exist() -> bool:
        try:
            for durable in durables:
                await bus.js.consumer_info(bus.stream, durable)
        except Exception:
            return False
        return True

    await eventually(exist, f"consumers {durables}", timeout=timeout)


async def watched(sessions, tenant_id, timeout=10.0):
    async def is_watched() -> bool:
        async with sessions() as s:
            return bool(await s.scalar(select(Tenant.watched).where(Tenant.tenant_id == tenant_id)))

    await eventually(is_watched, "the provisioned event handled", timeout=timeout)


def fast_settings(database_url, nats_url, bus_namespace, **extra) -> MonitorSettings:
    return MonitorSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "LETSBE_BUS_NAMESPACE": bus_namespace,
            "log_json": False,
            "default_heartbeat_interval_seconds": 1,
            "sweep_interval_seconds": 0.2,
            "offline_settle_seconds": 0,
            "shutdown_grace_seconds": 5,
            "rules": {"heartbeat.stale": {"threshold": 2}},
            # The TLS checker runs too: keep its probes on loopback (a closed port), never the real domains.
            "tls_connect_host": "127.0.0.1",
            "tls_port": free_port(),
            **extra,
        }
    )


@pytest.fixture
async def collected(bus):
    raised, resolved = Collected(bus, AlertRaisedV1), Collected(bus, AlertResolvedV1)
    yield raised, resolved
    await raised.close()
    await resolved.close()


async def test_events_in_alerts_out_through_the_outbox(database_url, nats_url, bus_namespace, bus, sessions, collected):
    raised, resolved = collected
    app = create_app(fast_settings(database_url, nats_url, bus_namespace, default_heartbeat_interval_seconds=60))
    async with LifespanManager(app):
        await consumers_ready(bus, "monitor-on-tenant-heartbeat", "monitor-on-alert-acknowledged")
        tid = uuid.uuid4()
        await bus.publish(provisioned(tid), correlation_id=tid)
        await watched(sessions, tid)  # heartbeats before the provisioned event only set a baseline
        await bus.publish(heartbeat(tid, datetime.now(UTC), det=details(disk=96)), correlation_id=tid)
        [alert] = await raised.wait(lambda e: e.tenant_id == tid and e.rule == "disk.usage")
        assert alert.severity == "medium" and alert.value == 96

        await bus.publish(
            AlertAcknowledgedV1(
                alert_id=alert.alert_id, acknowledged_by="ops-alice", acknowledged_at=datetime.now(UTC)
            ),
            correlation_id=alert.alert_id,
        )
        await bus.publish(heartbeat(tid, datetime.now(UTC), det=details(disk=40)), correlation_id=tid)
        [done] = await resolved.wait(lambda e: e.alert_id == alert.alert_id)
        assert "40.0" in done.summary
        async with sessions() as s:
            row = await s.scalar(select(Alert).where(Alert.id == alert.alert_id))
        assert row.acknowledged_by == "ops-alice" and row.resolved_at is not None


async def seen_by_the_monitor(sessions, live, dead) -> bool:
    """Every tenant watched, and a heartbeat of each live one stored."""
    async with sessions() as s:
        rows = (
            await s.execute(
                select(Tenant.tenant_id, Tenant.watched, Tenant.last_seen).where(Tenant.tenant_id.in_([*live, dead]))
            )
        ).all()
    stored = {tid: (watched, last_seen) for tid, watched, last_seen in rows}
    return len(stored) == len(live) + 1 and all(w for w, _ in stored.values()) and all(stored[t][1] for t in live)


async def past_deadline(sessions, tenants, by: float) -> bool:
    """The stored deadlines (last heartbeat + the missed intervals) of all ``tenants`` lie ``by`` seconds behind."""
    async with sessions() as s:
        deadlines = (await s.scalars(select(Tenant.offline_at).where(Tenant.tenant_id.in_(tenants)))).all()
    cutoff = datetime.now(UTC) - timedelta(seconds=by)
    return len(deadlines) == len(tenants) and all(d is not None and d < cutoff for d in deadlines)


async def more_sweeps(sessions, rounds: int) -> None:
    """Wait for ``rounds`` sweep rounds committed after this call (each writes its own ``last_sweep_at``)."""
    seen = set()

    async def counted() -> bool:
        async with sessions() as s:
            seen.add(await s.scalar(select(SweepState.last_sweep_at)))
        return len(seen) > rounds  # the first value read may be a round from before the call

    await eventually(counted, f"{rounds} more sweeps", timeout=30)


async def all_raised_received(sessions, raised: Collected) -> bool:
    """The relay has published every row of the monitor's outbox, and each alert-raised one reached ``raised``."""
    async with sessions() as s:
        pending = await s.scalar(select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None)))
        written = await s.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.envelope["type"].astext == AlertRaisedV1.TYPE)
        )
    return pending == 0 and len(raised.events) >= written


async def test_a_restarted_monitor_raises_no_false_offline_alerts(
    database_url, nats_url, bus_namespace, bus, sessions, collected
):
    raised, _ = collected
    settings = fast_settings(database_url, nats_url, bus_namespace)
    live, dead = [uuid.uuid4(), uuid.uuid4()], uuid.uuid4()
    stop = asyncio.Event()

    async def agents():  # the live tenants beat every 0.3 s whatever the monitor is doing
        while not stop.is_set():
            for tid in live:
                await bus.publish(heartbeat(tid, datetime.now(UTC), interval=1), correlation_id=tid)
            await asyncio.sleep(0.3)

    async with LifespanManager(create_app(settings)):
        await consumers_ready(bus, "monitor-on-tenant-heartbeat", "monitor-on-provisioned")
        for tid in [*live, dead]:
            await bus.publish(provisioned(tid), correlation_id=tid)
        beating = asyncio.create_task(agents())
        await eventually(lambda: seen_by_the_monitor(sessions, live, dead), "all watched, the live ones heard")
    try:
        # Down until the stored heartbeats of the live tenants are an interval past their deadline (the ones
        # beaten since wait in the stream): a restart that judged at once would call them offline.
        await eventually(lambda: past_deadline(sessions, live, by=1), "the live tenants stale in the db", timeout=30)
        async with LifespanManager(create_app(settings)):
            # After the grace window the one that really went silent is alerted; then a few more sweeps.
            await raised.wait(lambda e: e.rule == "heartbeat.stale", timeout=settings.startup_grace + 30)
            await more_sweeps(sessions, 3)
            await eventually(lambda: all_raised_received(sessions, raised), "every alert raised so far received")
    finally:
        stop.set()
        await beating
    stale = [e.tenant_id for e in raised.events if e.rule == "heartbeat.stale" and e.count == 1]
    assert stale == [dead]
