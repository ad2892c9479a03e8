"""The §9.1 / §8.3 rules as pure functions: a report in, observations out (no I/O, no clock of their own).

Threshold semantics follow the seed literally: disk "> 85 %", memory "> 90 %", heartbeat "> 3 missed
intervals", TLS "< 14 days" are strict; the token pool's "80 %, 90 %, 100 %" are reached at the value (>=).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from letsbe_contracts.events import BackupStatus, ContainerState, HeartbeatDetails
from letsbe_monitor.alerts.service import Observation
from letsbe_monitor.config import MonitorSettings, RuleConfig

# Docker states that mean "not running as it should" whatever the restart count says.
CRASH_STATES = frozenset({"restarting", "dead"})


def above(tenant_id: uuid.UUID | None, rule: str, cfg: RuleConfig, value: float, what: str) -> Observation:
    """Fires when value > threshold; clears when value <= clear (hysteresis band in between holds)."""
    assert cfg.threshold is not None
    clear = cfg.clear if cfg.clear is not None else cfg.threshold
    if value > cfg.threshold:
        firing: bool | None = True
        summary = f"{what} at {value:.1f} % (threshold {cfg.threshold:g} %)"
    elif value <= clear:
        firing = False
        summary = f"{what} back to {value:.1f} %"
    else:
        firing = None
        summary = f"{what} at {value:.1f} %, inside the hysteresis band"
    return Observation(tenant_id, rule, firing, summary, value=value, threshold=cfg.threshold)


def evaluate_details(
    tenant_id: uuid.UUID,
    details: HeartbeatDetails,
    previous_restarts: Mapping[str, int],
    settings: MonitorSettings,
) -> tuple[list[Observation], dict[str, int]]:
    """Disk, memory and containers of one heavy heartbeat; returns observations and the restart counts to keep."""
    obs = [
        above(tenant_id, "disk.usage", settings.rule("disk.usage"), details.disk.percent, f"Disk {details.disk.path}"),
        above(tenant_id, "memory.usage", settings.rule("memory.usage"), details.memory.percent, "Memory"),
    ]
    crash_obs, restarts = evaluate_containers(tenant_id, details.containers, previous_restarts)
    return obs + crash_obs, restarts


def evaluate_containers(
    tenant_id: uuid.UUID, containers: tuple[ContainerState, ...], previous_restarts: Mapping[str, int]
) -> tuple[list[Observation], dict[str, int]]:
    crashed: list[str] = []
    for c in containers:
        before = previous_restarts.get(c.name)
        # A container seen for the first time has no baseline: only its state can tell that it is crashing.
        if (before is not None and c.restart_count > before) or c.state in CRASH_STATES:
            crashed.append(f"{c.name} ({c.state}, {c.restart_count} restarts)")
    oom = [c.name for c in containers if c.oom_killed]
    obs = [
        Observation(
            tenant_id,
            "container.crash",
            bool(crashed),
            ("Crashed: " + ", ".join(crashed[:10])) if crashed else "No container crashed since the last report",
            value=float(len(crashed)),
        ),
        Observation(
            tenant_id,
            "container.oom",
            bool(oom),
            ("Killed for lack of memory (OOM): " + ", ".join(oom[:10])) if oom else "No container OOM-killed",
            value=float(len(oom)),
        ),
    ]
    return obs, {c.name: c.restart_count for c in containers}


def evaluate_backup(
    tenant_id: uuid.UUID, status: BackupStatus, settings: MonitorSettings, now: datetime, *, new_run: bool
) -> list[Observation]:
    """§8.3. Failure rules count backup runs, not reports: the same run reported again is no new observation."""
    obs = [backup_staleness(tenant_id, status.last_run, settings, now)]
    if not new_run:
        return obs
    failed = sorted(name for name, db in status.databases.items() if db.status == "failed")
    remote_failed = status.remote_sync.status == "failed"
    total = len(status.databases)
    all_failed = (total > 0 and len(failed) == total) or (total == 0 and remote_failed)
    any_failed = bool(failed) or remote_failed
    parts = [f"{name}: {status.databases[name].error or 'failed'}" for name in failed[:10]]
    if remote_failed:
        parts.append(f"remote sync: {status.remote_sync.error or 'failed'}")
    detail = "; ".join(parts)
    run = status.last_run.isoformat()
    obs.append(
        Observation(
            tenant_id,
            "backup.all_failed",
            all_failed,
            f"Every backup of the run at {run} failed ({detail})" if all_failed else f"Backup run at {run} succeeded",
            value=float(len(failed)),
        )
    )
    partial = any_failed and not all_failed
    obs.append(
        Observation(
            tenant_id,
            "backup.failed",
            partial,
            f"{len(failed)} of {total} database backups failed in the run at {run} ({detail})"
            if partial
            else f"No partial backup failure in the run at {run}",
            value=float(len(failed)),
        )
    )
    return obs


def offsite_staleness(
    tenant_id: uuid.UUID, status: BackupStatus, offsite_at: datetime | None, settings: MonitorSettings, now: datetime
) -> Observation:
    """The off-site copy: missing when the latest run copied nothing off-site (no target), stale when the last run
    that did is older than the threshold (48 h). A failed copy of one run is backup.failed; this one is the age."""
    hours = settings.rule("backup.offsite").threshold or 48
    if status.remote_sync.status == "skipped":
        return Observation(
            tenant_id, "backup.offsite", True, f"The backup run at {status.last_run.isoformat()} has no off-site copy"
        )
    if offsite_at is None or (now - offsite_at).total_seconds() / 3600 > hours:
        since = f"since {offsite_at.isoformat()}" if offsite_at else "ever"
        return Observation(
            tenant_id, "backup.offsite", True, f"No off-site copy succeeded {since} (threshold {hours:g} h)",
            threshold=hours,
        )  # fmt: skip
    return Observation(tenant_id, "backup.offsite", False, f"Off-site copy of the run at {offsite_at.isoformat()}")


def backup_staleness(
    tenant_id: uuid.UUID,
    last_run: datetime | None,
    settings: MonitorSettings,
    now: datetime,
    since: datetime | None = None,
) -> Observation:
    """backup-status.json older than the threshold (48 h) — or never seen that long after watching began."""
    hours = settings.rule("backup.stale").threshold or 48
    reference = last_run or since
    if reference is None:
        return Observation(tenant_id, "backup.stale", None, "No backup information yet")
    age = (now - reference).total_seconds() / 3600
    if age > hours:
        what = f"Last backup run {last_run.isoformat()}" if last_run else "No backup report ever received"
        return Observation(
            tenant_id,
            "backup.stale",
            True,
            f"{what}: {age:.0f} h ago (threshold {hours:g} h)",
            value=round(age, 2),
            threshold=hours,
        )
    return Observation(
        tenant_id,
        "backup.stale",
        False,
        f"Backups are current (last run {age:.0f} h ago)",
        value=round(age, 2),
        threshold=hours,
    )


def evaluate_tls(
    tenant_id: uuid.UUID, not_after: Mapping[str, datetime], settings: MonitorSettings, now: datetime
) -> Observation | None:
    """One observation over every host of the tenant: the soonest expiry decides. None when nothing answered."""
    if not not_after:
        return None
    cfg = settings.rule("tls.expiry")
    assert cfg.threshold is not None
    clear = cfg.clear if cfg.clear is not None else cfg.threshold
    days = {host: (na - now).total_seconds() / 86400 for host, na in not_after.items()}
    soonest = min(days.values())
    expiring = sorted((h for h, d in days.items() if d < cfg.threshold), key=lambda h: days[h])
    if expiring:
        listed = ", ".join(
            f"{h} {'EXPIRED' if days[h] <= 0 else f'in {days[h]:.1f} days'} ({not_after[h]:%Y-%m-%d %H:%M} UTC)"
            for h in expiring[:10]
        )
        return Observation(
            tenant_id,
            "tls.expiry",
            True,
            f"TLS certificate expiring: {listed}",
            value=round(soonest, 3),
            threshold=cfg.threshold,
        )
    if soonest >= clear:
        return Observation(
            tenant_id,
            "tls.expiry",
            False,
            f"Every certificate valid for at least {soonest:.0f} more days",
            value=round(soonest, 3),
            threshold=cfg.threshold,
        )
    return Observation(tenant_id, "tls.expiry", None, "inside the hysteresis band", value=round(soonest, 3))
