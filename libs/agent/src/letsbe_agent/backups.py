"""The daily backup check (seed §8.3): read backup-status.json at 06:00 and report what it says (or that it is
missing or unreadable: a stale or absent file is itself something the hub alerts on)."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from letsbe_agent.wire import BackupReport, BackupStatus, checked, parse


def running(lock: Path) -> bool:
    """Is letsbe-backup running? It holds an flock on ``lock`` while it runs; the file alone proves nothing (a run
    that was killed leaves it behind). Unreadable: say running, so an update waits rather than races a dump."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops our shared lock
    return False


def read_status(path: Path) -> tuple[BackupStatus | None, str | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, f"{path} is missing"
    except OSError as exc:
        return None, f"{path} is unreadable: {exc.strerror}"
    try:
        return parse(BackupStatus, json.loads(raw)), None
    except ValueError as exc:  # msgspec.ValidationError is one
        return None, f"{path} is not a valid backup status: {str(exc)[:500]}"


def build_report(path: Path, today: date, now: datetime | None = None) -> BackupReport:
    status, problem = read_status(path)
    return checked(BackupReport(report_date=today, checked_at=now or datetime.now(UTC), status=status, problem=problem))


def next_check(now: datetime, at: time, tz: str) -> datetime:
    """The next daily check time after ``now`` (aware), in the tenant's timezone."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate


def due_date(now: datetime, at: time, tz: str) -> date | None:
    """Today's date (tenant-local) once today's check time has passed, else None."""
    local = now.astimezone(ZoneInfo(tz))
    return local.date() if local.time() >= at else None
