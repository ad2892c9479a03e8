"""Tenant facts in, observations out: heartbeats, provisioning, backup reports and token usage.

Each function locks the tenant row first, so everything that decides about one tenant's alerts is serialized.
"""

from __future__ import annotations

import calendar
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts import AgentKind, ProvisionedV1, TenantHeartbeatV1, Tier, load_catalog
from letsbe_contracts.events import BackupStatus, TenantBackupReportedV1, TenantUsageReportedV1
from letsbe_monitor.alerts.rules import evaluate_backup, evaluate_details, offsite_staleness
from letsbe_monitor.alerts.service import AlertEngine, Applied, Observation
from letsbe_monitor.config import MonitorSettings
from letsbe_monitor.tenants.models import OFFLINE, ONLINE, Tenant, TokenPoolFired, UsageReport
from letsbe_platform.logging import get_logger

log = get_logger(__name__)


async def lock_tenant(session: AsyncSession, tenant_id: uuid.UUID, *, create: bool) -> Tenant | None:
    tenant = await session.get(Tenant, tenant_id, with_for_update=True)
    if tenant is None and create:
        await session.execute(insert(Tenant).values(tenant_id=tenant_id).on_conflict_do_nothing())
        tenant = await session.get(Tenant, tenant_id, with_for_update=True, populate_existing=True)
    return tenant


def _deadline(tenant: Tenant, settings: MonitorSettings) -> datetime | None:
    if tenant.last_seen is None:
        return None
    return tenant.last_seen + timedelta(seconds=tenant.interval_seconds * settings.missed_beats)


def _came_back(tenant: Tenant, when: datetime, now: datetime) -> list[Observation]:
    """A fresh heartbeat (or a re-provisioning) ends an offline spell; resolve its alert if one was raised."""
    if tenant.liveness != OFFLINE or tenant.offline_at is None or tenant.offline_at <= now:
        return []
    tenant.liveness, tenant.offline_since = ONLINE, None
    if not tenant.offline_alerted:
        return []
    tenant.offline_alerted = False
    return [
        Observation(
            tenant.tenant_id, "heartbeat.stale", False, f"Heartbeats arrive again (at {when:%Y-%m-%d %H:%M:%S} UTC)"
        )
    ]


async def record_heartbeat(
    session: AsyncSession, engine: AlertEngine, settings: MonitorSettings, event: TenantHeartbeatV1, now: datetime
) -> Applied:
    """Liveness from the Safety Wrapper's heartbeats (§9.1); rules over the heavy part when it is newer.

    Idempotent without an inbox (heartbeats are the monitor's busiest input): ``last_seen`` only moves forward and
    the heavy part is evaluated only when newer than the last one evaluated, so a redelivery changes nothing.
    """
    if event.agent != AgentKind.SAFETY_WRAPPER:
        return Applied()  # §9.1 measures freshness on the Safety Wrapper's heartbeat
    received = min(event.received_at, now)  # a hub clock ahead of ours must not push the deadline out
    tenant = await lock_tenant(session, event.tenant_id, create=True)
    assert tenant is not None
    tenant.domain = tenant.domain or event.domain  # the provisioned event's domain is the authority
    tenant.interval_seconds = event.interval_seconds
    if tenant.last_seen is None or received > tenant.last_seen:
        tenant.last_seen = received
    tenant.offline_at = _deadline(tenant, settings)
    obs = _came_back(tenant, received, now)

    details = event.details
    if details is not None and (tenant.details_at is None or received > tenant.details_at):
        tenant.details_at = received
        detail_obs, tenant.container_restarts = evaluate_details(
            tenant.tenant_id, details, tenant.container_restarts or {}, settings
        )
        obs += detail_obs
        if details.backup is not None:
            obs += _backup(tenant, details.backup, settings, now)
    if not tenant.watched:
        return Applied()  # not provisioned yet: keep the baseline, alert on nothing
    return await engine.apply(session, obs, now)


def _backup(tenant: Tenant, status: BackupStatus, settings: MonitorSettings, now: datetime) -> list[Observation]:
    new_run = tenant.backup_last_run is None or status.last_run > tenant.backup_last_run
    if new_run:
        tenant.backup_last_run = status.last_run
    if status.remote_sync.status == "success" and (
        tenant.backup_offsite_at is None or status.last_run > tenant.backup_offsite_at
    ):
        tenant.backup_offsite_at = status.last_run
    obs = evaluate_backup(tenant.tenant_id, status, settings, now, new_run=new_run)
    return [*obs, offsite_staleness(tenant.tenant_id, status, tenant.backup_offsite_at, settings, now)]


async def record_backup_report(
    session: AsyncSession, engine: AlertEngine, settings: MonitorSettings, event: TenantBackupReportedV1, now: datetime
) -> Applied:
    """The Safety Wrapper's daily reading of backup-status.json (§8.3)."""
    tenant = await lock_tenant(session, event.tenant_id, create=True)
    assert tenant is not None
    if event.status is None:
        # Missing or unreadable file: no run to judge; staleness (the sweep) decides once it is 48 h without news.
        log.info("backup report without status", tenant_id=str(event.tenant_id), problem=(event.problem or "")[:300])
        return Applied()
    obs = _backup(tenant, event.status, settings, now)
    if not tenant.watched:
        return Applied()
    return await engine.apply(session, obs, now)


async def record_provisioned(
    session: AsyncSession, engine: AlertEngine, settings: MonitorSettings, event: ProvisionedV1, now: datetime
) -> Applied:
    """A tenant exists from now on: watch it, with a fresh heartbeat window (its agents just registered)."""
    tenant = await lock_tenant(session, event.tenant_id, create=True)
    assert tenant is not None
    tenant.domain = event.order.domain
    tenant.tier = event.order.tier.value
    tenant.tools = list(event.order.tools)
    tenant.watched = True
    tenant.watched_since = tenant.watched_since or now
    tenant.billing_anchor = tenant.billing_anchor or now
    if tenant.last_seen is None:  # no heartbeat seen yet: assume the default interval until one says otherwise
        tenant.interval_seconds = settings.default_heartbeat_interval_seconds
    if tenant.last_seen is None or tenant.last_seen < now:
        tenant.last_seen = now
    tenant.offline_at = _deadline(tenant, settings)
    tenant.tls_checked_at = None  # check its certificates soon
    obs = _came_back(tenant, now, now)
    log.info("watching tenant", tenant_id=str(tenant.tenant_id), domain=tenant.domain, tools=len(tenant.tools))
    return await engine.apply(session, obs, now)


def tls_hosts(domain: str, tools: list[str]) -> list[str]:
    """The tenant's own name and each of its tools' subdomains (§10.2), from the catalog."""
    catalog = load_catalog()
    hosts = [domain]
    for name in tools:
        try:
            sub = catalog.tool(name).subdomain
        except KeyError:
            continue  # a tool the catalog no longer knows has no subdomain to check
        if sub:
            hosts.append(f"{sub}.{domain}")
    return list(dict.fromkeys(hosts))


# --- token pool (§9.1: 80 / 90 / 100 % of the billing period's allowance) ------------------------------------


def add_months(dt: datetime, months: int) -> datetime:
    year, month0 = divmod(dt.month - 1 + months, 12)
    year += dt.year
    day = min(dt.day, calendar.monthrange(year, month0 + 1)[1])
    return dt.replace(year=year, month=month0 + 1, day=day)


def billing_period(anchor: datetime, at: datetime) -> tuple[datetime, datetime]:
    """The monthly period, anchored on the day the tenant was provisioned, that contains ``at``."""
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    start = add_months(anchor, months)
    if start > at:
        months -= 1
        start = add_months(anchor, months)
    return start, add_months(anchor, months + 1)


async def record_usage(
    session: AsyncSession, engine: AlertEngine, settings: MonitorSettings, event: TenantUsageReportedV1, now: datetime
) -> Applied:
    tokens = sum(line.tokens_in + line.tokens_out for line in event.lines)
    inserted = await session.execute(
        insert(UsageReport)
        .values(tenant_id=event.tenant_id, hour=event.hour, sequence=event.sequence, tokens=tokens)
        .on_conflict_do_nothing()
        .returning(UsageReport.tenant_id)
    )
    if inserted.first() is None:
        return Applied()  # (tenant, hour, sequence) seen before: a retry never double-counts
    tenant = await lock_tenant(session, event.tenant_id, create=False)
    if tenant is None or not tenant.watched or tenant.tier is None or tenant.billing_anchor is None:
        return Applied()  # counted; judged once the tenant is provisioned
    applied = await engine.resolve_expired(session, now, tenant.tenant_id)  # last period's token alerts end
    start, end = billing_period(tenant.billing_anchor, now)
    if not start <= event.hour < end:
        return applied  # a late report for an earlier period changes nothing now
    used = await session.scalar(
        select(func.coalesce(func.sum(UsageReport.tokens), 0)).where(
            UsageReport.tenant_id == tenant.tenant_id, UsageReport.hour >= start, UsageReport.hour < end
        )
    )
    allowance = settings.token_allowance[Tier(tenant.tier)]
    percent = float(used) * 100 / allowance
    obs = []
    for name, cfg in settings.token_pool_rules:
        assert cfg.threshold is not None
        if percent < cfg.threshold:
            break
        fired = await session.execute(
            insert(TokenPoolFired)
            .values(tenant_id=tenant.tenant_id, period_start=start, rule=name)
            .on_conflict_do_nothing()
            .returning(TokenPoolFired.rule)
        )
        if fired.first() is None:
            continue  # this threshold already fired in this period
        obs.append(
            Observation(
                tenant.tenant_id,
                name,
                True,
                f"{used:,} of {allowance:,} AI tokens used ({percent:.1f} %) in the billing period "
                f"{start:%Y-%m-%d} – {end:%Y-%m-%d}",
                value=round(percent, 2),
                threshold=cfg.threshold,
                auto_resolve_at=end,
            )
        )
    more = await engine.apply(session, obs, now)
    applied.raised += more.raised
    return applied
