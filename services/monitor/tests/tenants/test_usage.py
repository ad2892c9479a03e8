"""Token pool (§9.1): 80 / 90 / 100 % of the billing period's allowance, each at most once per period; a retried
usage report never double-counts."""

import uuid
from datetime import datetime, timedelta

from letsbe_contracts.events import TenantUsageReportedV1
from letsbe_monitor.alerts.worker import Sweep
from letsbe_monitor.tenants import service as tenants
from letsbe_monitor.tenants.service import billing_period
from letsbe_platform.db import unit_of_work

from ..conftest import UTC

ALLOWANCE = 15_000_000  # the build tier's default


def usage(tid, hour: datetime, tokens: int, sequence: int = 0) -> TenantUsageReportedV1:
    return TenantUsageReportedV1(
        tenant_id=tid,
        hour=hour,
        sequence=sequence,
        lines=({"model": "claude", "tokens_in": tokens // 2, "tokens_out": tokens - tokens // 2, "requests": 3},),
    )


async def report(monitor, event):
    async with unit_of_work(monitor.sessions) as s:
        await tenants.record_usage(s, monitor.engine, monitor.settings, event, monitor.clock())


async def rules_open(monitor):
    return sorted(a.rule for a in await monitor.alerts(open_only=True) if a.rule.startswith("token_pool"))


async def test_each_threshold_fires_once_per_billing_period(monitor, clock):
    tid = await monitor.provision()
    hour = clock.now.replace(minute=0)
    await report(monitor, usage(tid, hour, int(ALLOWANCE * 0.79)))
    assert await rules_open(monitor) == []
    await report(monitor, usage(tid, hour, int(ALLOWANCE * 0.01), sequence=1))  # exactly 80 %
    assert await rules_open(monitor) == ["token_pool.80"]
    for seq in range(2, 5):  # more usage below 90 %: the 80 % alert does not fire again
        await report(monitor, usage(tid, hour, 10_000, sequence=seq))
    [alert] = await monitor.alerts("token_pool.80")
    assert alert.count == 1 and alert.severity == "soft" and alert.value == 80.0
    await report(monitor, usage(tid, hour + timedelta(hours=1), int(ALLOWANCE * 0.25)))  # jumps past 100 %
    assert await rules_open(monitor) == ["token_pool.100", "token_pool.80", "token_pool.90"]
    assert {a.rule: a.severity for a in await monitor.alerts()} == {
        "token_pool.80": "soft",
        "token_pool.90": "medium",
        "token_pool.100": "hard",
    }


async def test_a_retried_usage_report_is_counted_once(monitor, clock):
    tid = await monitor.provision()
    hour = clock.now.replace(minute=0)
    event = usage(tid, hour, int(ALLOWANCE * 0.5))
    for _ in range(3):
        await report(monitor, event)
    assert await rules_open(monitor) == []  # counted three times it would be 150 %


async def test_a_new_billing_period_resolves_and_rearms_the_thresholds(monitor, clock):
    tid = await monitor.provision()
    start, end = billing_period(clock.now, clock.now)
    await report(monitor, usage(tid, clock.now.replace(minute=0), ALLOWANCE))
    assert len(await rules_open(monitor)) == 3

    clock.now = end + timedelta(minutes=5)
    await Sweep(monitor.sessions, monitor.engine, monitor.settings, clock).once()
    assert await rules_open(monitor) == []
    assert len(await monitor.events("alert-resolved")) == 3

    await report(monitor, usage(tid, clock.now.replace(minute=0), int(ALLOWANCE * 0.85)))
    assert await rules_open(monitor) == ["token_pool.80"]
    assert start < end


def test_billing_periods_are_monthly_from_the_provisioning_day():
    anchor = datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert billing_period(anchor, datetime(2026, 2, 15, tzinfo=UTC)) == (
        anchor,
        datetime(2026, 2, 28, 9, 30, tzinfo=UTC),
    )
    assert billing_period(anchor, datetime(2026, 3, 31, 9, 30, tzinfo=UTC)) == (
        datetime(2026, 3, 31, 9, 30, tzinfo=UTC),
        datetime(2026, 4, 30, 9, 30, tzinfo=UTC),
    )
    assert billing_period(anchor, datetime(2027, 1, 1, tzinfo=UTC))[0] == datetime(2026, 12, 31, 9, 30, tzinfo=UTC)


async def test_usage_from_before_the_billing_period_does_not_count(monitor, clock):
    tid = uuid.uuid4()
    await report(monitor, usage(tid, clock.now - timedelta(hours=1), int(ALLOWANCE * 0.7)))  # before provisioning
    await monitor.provision(tid)
    await report(monitor, usage(tid, clock.now, int(ALLOWANCE * 0.15)))
    assert await rules_open(monitor) == []
    await report(monitor, usage(tid, clock.now, int(ALLOWANCE * 0.65), sequence=1))
    assert await rules_open(monitor) == ["token_pool.80"]
