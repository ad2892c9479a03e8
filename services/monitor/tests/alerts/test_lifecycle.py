"""Alert lifecycle against real Postgres: one open alert per (tenant, rule), count / first / last seen,
auto-resolve with a resolved event, hysteresis, and idempotence under redelivery."""

import uuid
from datetime import timedelta

from letsbe_contracts.events import TenantBackupReportedV1
from letsbe_monitor.tenants import service as tenants
from letsbe_platform.db import unit_of_work

from ..conftest import T0, details, heartbeat


async def test_repeated_observations_bump_one_alert_instead_of_opening_more(monitor, clock):
    tid = await monitor.provision()
    for _ in range(3):
        await monitor.beat(tid, details(disk=91))
        clock.advance(60)
    [alert] = await monitor.alerts("disk.usage")
    assert (alert.count, alert.first_seen, alert.last_seen) == (3, T0, T0 + timedelta(seconds=120))
    assert alert.severity == "medium" and alert.value == 91 and alert.resolved_at is None
    raised = await monitor.events("alert-raised")
    assert len(raised) == 1  # re-announced only every refresh_seconds, not per heartbeat
    assert raised[0]["payload"]["rule"] == "disk.usage" and raised[0]["correlation_id"] == str(tid)

    clock.advance(300)
    await monitor.beat(tid, details(disk=92))
    raised = await monitor.events("alert-raised")
    assert [e["payload"]["count"] for e in raised] == [1, 4]
    assert {e["payload"]["alert_id"] for e in raised} == {str(alert.id)}


async def test_alert_resolves_itself_when_the_condition_clears(monitor, clock):
    tid = await monitor.provision()
    await monitor.beat(tid, details(disk=91))
    clock.advance(60)
    await monitor.beat(tid, details(disk=70))
    [alert] = await monitor.alerts("disk.usage")
    assert alert.resolved_at == clock.now
    [resolved] = await monitor.events("alert-resolved")
    assert resolved["payload"]["alert_id"] == str(alert.id) and "70.0" in resolved["payload"]["summary"]

    clock.advance(60)
    await monitor.beat(tid, details(disk=95))  # comes back: a new alert, not the old one reopened
    alerts = await monitor.alerts("disk.usage")
    assert len(alerts) == 2 and alerts[1].id != alerts[0].id and alerts[1].count == 1


async def test_a_value_flapping_around_the_threshold_stays_one_alert(monitor, clock):
    tid = await monitor.provision()
    for disk in (86, 84, 86, 84, 86, 82):  # 84 and 82 are inside the band (clear at 80)
        await monitor.beat(tid, details(disk=disk))
        clock.advance(60)
    [alert] = await monitor.alerts("disk.usage")
    assert alert.resolved_at is None and alert.count == 3
    assert len(await monitor.events("alert-raised")) == 1 and await monitor.events("alert-resolved") == []
    await monitor.beat(tid, details(disk=80))
    [alert] = await monitor.alerts("disk.usage")
    assert alert.resolved_at is not None


async def test_memory_needs_two_clear_reports_and_a_crash_three(monitor, clock):
    tid = await monitor.provision()
    ghost = {"name": "ghost", "image": "ghost:5", "state": "running", "restart_count": 0}
    await monitor.beat(tid, details(memory=95, containers=(ghost,)))
    clock.advance(60)
    await monitor.beat(tid, details(memory=95, containers=({**ghost, "restart_count": 1},)))
    assert {a.rule for a in await monitor.alerts(open_only=True)} == {"memory.usage", "container.crash"}
    for _ in range(2):
        clock.advance(60)
        await monitor.beat(tid, details(memory=50, containers=({**ghost, "restart_count": 1},)))
    assert {a.rule for a in await monitor.alerts(open_only=True)} == {"container.crash"}
    clock.advance(60)
    await monitor.beat(tid, details(memory=50, containers=({**ghost, "restart_count": 1},)))
    assert await monitor.alerts(open_only=True) == []


async def test_a_redelivered_heartbeat_changes_nothing(monitor, clock):
    tid = await monitor.provision()
    event = heartbeat(tid, clock(), det=details(disk=91))
    for _ in range(3):
        async with unit_of_work(monitor.sessions) as s:
            await tenants.record_heartbeat(s, monitor.engine, monitor.settings, event, clock())
    [alert] = await monitor.alerts("disk.usage")
    assert alert.count == 1


async def test_nothing_is_alerted_before_the_tenant_is_provisioned_or_from_other_agents(monitor, clock):
    tid = uuid.uuid4()
    await monitor.beat(tid, details(disk=99))
    assert await monitor.alerts() == []
    await monitor.provision(tid)
    clock.advance(60)
    await monitor.beat(tid, details(disk=99), agent="secrets-proxy")
    assert await monitor.alerts() == []
    await monitor.beat(tid, details(disk=99))
    assert [a.rule for a in await monitor.alerts()] == ["disk.usage"]


def backup_report(tid, last_run, failed=(), remote="success"):
    dbs = {"ghost": "success", "nextcloud": "success", "chatwoot": "success"}
    dbs.update({name: "failed" for name in failed})
    return TenantBackupReportedV1.model_validate(
        {
            "tenant_id": tid,
            "agent_id": uuid.uuid4(),
            "domain": "example.com",
            "report_date": "2026-11-27",
            "checked_at": T0.isoformat(),
            "status": {
                "last_run": last_run.isoformat(),
                "duration_seconds": 300,
                "databases": {
                    n: {"status": st, **({"error": "connection refused"} if st == "failed" else {})}
                    for n, st in dbs.items()
                },
                "remote_sync": {"status": remote},
            },
        }
    )


async def test_a_tenant_whose_backups_stop_reaching_off_site_is_alerted_until_a_copy_lands(monitor, clock):
    tid = await monitor.provision()

    async def report(event):
        async with unit_of_work(monitor.sessions) as s:
            await tenants.record_backup_report(s, monitor.engine, monitor.settings, event, clock())

    run = T0 - timedelta(hours=4)
    await report(backup_report(tid, run, remote="skipped"))  # provisioned without an off-site target
    [alert] = await monitor.alerts("backup.offsite")
    assert alert.severity == "medium" and "no off-site copy" in alert.summary
    await report(backup_report(tid, run + timedelta(days=1)))
    assert await monitor.alerts(open_only=True) == []
    for day in (2, 3, 4):  # the copy fails day after day: stale once the last one is over 48 h old
        clock.advance(86400)
        await report(backup_report(tid, run + timedelta(days=day), remote="failed"))
    assert "backup.offsite" in {a.rule for a in await monitor.alerts(open_only=True)}


async def test_backup_failures_count_runs_not_reports(monitor, clock):
    tid = await monitor.provision()

    async def report(event):
        async with unit_of_work(monitor.sessions) as s:
            await tenants.record_backup_report(s, monitor.engine, monitor.settings, event, clock())

    run1 = T0 - timedelta(hours=4)
    await report(backup_report(tid, run1, failed=("nextcloud",)))
    await report(backup_report(tid, run1, failed=("nextcloud",)))  # the same run, read again
    [alert] = await monitor.alerts("backup.failed")
    assert alert.count == 1 and alert.severity == "medium" and "nextcloud: connection refused" in alert.summary

    clock.advance(86400)
    await report(backup_report(tid, run1 + timedelta(days=1), failed=("ghost", "nextcloud", "chatwoot")))
    assert {a.rule: a.severity for a in await monitor.alerts(open_only=True)} == {"backup.all_failed": "hard"}

    clock.advance(86400)
    await report(backup_report(tid, run1 + timedelta(days=2)))
    assert await monitor.alerts(open_only=True) == []
