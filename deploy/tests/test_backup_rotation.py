"""backup.sh rotates by itself: 14 daily, 8 weekly, 3 monthly, locally and off-site, fed a fake calendar of files."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest


def pg_env(url: str) -> dict[str, str]:
    """libpq's own variables for a URL: backup.sh works from these as well as from DATABASE_URL."""
    parts = urlsplit(url)
    env = {"PGDATABASE": parts.path.lstrip("/"), "PGUSER": parts.username or "postgres"}
    host = parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
    if host:
        env["PGHOST"] = host
    if parts.port:
        env["PGPORT"] = str(parts.port)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    return env


def name(at: datetime) -> str:
    return f"hub_{at:%Y%m%dT%H%M%S}Z.dump"


def daily(first: date, last: date) -> list[datetime]:
    days = (last - first).days + 1
    return [datetime(first.year, first.month, first.day, 3, tzinfo=UTC) + timedelta(days=i) for i in range(days)]


def lay_out(folder: Path, times: list[datetime]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for at in times:
        (folder / name(at)).write_text("an older backup\n")
        (folder / (name(at) + ".sha256")).write_text(f"{'0' * 64}  {name(at)}\n")


def dumps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("hub_*.dump"))


def days(*stamps: str) -> list[str]:
    """'2026-01-04' -> hub_20260104T030000Z.dump; a full 'YYYY-MM-DDTHH:MM' keeps its time."""
    out = []
    for s in stamps:
        at = datetime.fromisoformat(s if "T" in s else s + "T03:00").replace(tzinfo=UTC)
        out.append(name(at))
    return sorted(out)


# 2026-01-01 is a Thursday, so ISO week 1 of 2026 runs Mon 2025-12-29 .. Sun 2026-01-04; Sundays are the newest
# backup of their week.
FORTY_DAYS_KEPT = days(
    # daily: the 14 newest days; 2026-02-03 had a manual 14:30 backup, the newer of that day wins
    "2026-02-10",
    "2026-02-09",
    "2026-02-08",
    "2026-02-07",
    "2026-02-06",
    "2026-02-05",
    "2026-02-04",
    "2026-02-03T14:30",
    "2026-02-02",
    "2026-02-01",
    "2026-01-31",
    "2026-01-30",
    "2026-01-29",
    "2026-01-28",
    # weekly: weeks 5..7 are already held by dailies; then the Sundays of weeks 4, 3, 2, 1 (only 4 of 8 exist)
    "2026-01-25",
    "2026-01-18",
    "2026-01-11",
    "2026-01-04",
    # monthly: January's newest (01-31) is already a daily, and there is no older month
)


def test_forty_days_of_backups_rotate_to_the_right_ones_locally_and_off_site(kit, script_env, pg_admin_url, tmp_path):
    local = Path(script_env["BACKUP_DIR"])
    remote = tmp_path / "offsite"
    calendar = [*daily(date(2026, 1, 1), date(2026, 2, 9)), datetime(2026, 2, 3, 14, 30, tzinfo=UTC)]
    assert len(calendar) == 41
    lay_out(local, calendar)
    lay_out(remote, calendar)
    strangers = ["notes.txt", "hub_latest.dump", "other_20260101T030000Z.dump"]
    for stranger in strangers:
        (local / stranger).write_text("not a backup of ours\n")
    env = {
        **script_env,
        **pg_env(pg_admin_url),
        "BACKUP_NOW": "2026-02-10T03:00:00Z",
        "RCLONE_CONFIG_OFFSITE_TYPE": "local",
        "BACKUP_RCLONE_REMOTE": f"offsite:{remote}",
    }

    done = kit.run("backup.sh", env=env)

    assert done.returncode == 0, done.stderr
    assert dumps(local) == [*FORTY_DAYS_KEPT, "hub_latest.dump"]
    assert sorted(p.name for p in local.glob("*.sha256")) == [n + ".sha256" for n in FORTY_DAYS_KEPT]
    assert all((local / s).exists() for s in strangers)
    assert dumps(remote) == FORTY_DAYS_KEPT
    assert sorted(p.name for p in remote.glob("*.sha256")) == [n + ".sha256" for n in FORTY_DAYS_KEPT]
    # The new backup went off-site byte for byte.
    assert (remote / name(datetime(2026, 2, 10, 3, tzinfo=UTC))).read_bytes() == (
        local / name(datetime(2026, 2, 10, 3, tzinfo=UTC))
    ).read_bytes()
    report = json.loads((local / "backup-status.json").read_text())
    assert report["rotation"] == {"status": "success", "kept": 18, "deleted": 24}
    assert report["remote_sync"]["status"] == "success"
    assert report["databases"]["postgres"]["file"] == "hub_20260210T030000Z.dump"


def test_a_long_history_keeps_exactly_14_daily_8_weekly_and_3_monthly(kit, script_env, pg_admin_url):
    local = Path(script_env["BACKUP_DIR"])
    lay_out(local, daily(date(2025, 6, 1), date(2026, 2, 9)))
    env = {**script_env, "DATABASE_URL": pg_admin_url, "BACKUP_NOW": "2026-02-10T03:00:00Z"}

    done = kit.run("backup.sh", env=env)

    assert done.returncode == 0, done.stderr
    assert dumps(local) == days(
        # 14 daily
        "2026-02-10",
        "2026-02-09",
        "2026-02-08",
        "2026-02-07",
        "2026-02-06",
        "2026-02-05",
        "2026-02-04",
        "2026-02-03",
        "2026-02-02",
        "2026-02-01",
        "2026-01-31",
        "2026-01-30",
        "2026-01-29",
        "2026-01-28",
        # 8 weekly: Sundays of ISO weeks 2026-W04 .. 2026-W01 (which holds 2025-12-29..31), 2025-W52 .. W49
        "2026-01-25",
        "2026-01-18",
        "2026-01-11",
        "2026-01-04",
        "2025-12-28",
        "2025-12-21",
        "2025-12-14",
        "2025-12-07",
        # 3 monthly: December's newest (the 31st) belongs to week 2026-W01, whose pick was the 4th, so it
        # counts as December's; then November and October
        "2025-12-31",
        "2025-11-30",
        "2025-10-31",
    )
    report = json.loads((local / "backup-status.json").read_text())
    assert report["rotation"]["kept"] == 14 + 8 + 3


@pytest.mark.parametrize(
    ("setting", "value"),
    [("BACKUP_KEEP_DAILY", "0"), ("BACKUP_KEEP_WEEKLY", "eight"), ("BACKUP_NOW", "the day after tomorrow-ish")],
)
def test_a_bad_setting_exits_1_before_touching_any_backup(kit, script_env, setting, value):
    local = Path(script_env["BACKUP_DIR"])
    lay_out(local, daily(date(2025, 6, 1), date(2025, 8, 31)))
    before = sorted(p.name for p in local.iterdir())

    done = kit.run("backup.sh", env={**script_env, setting: value, "PGHOST": "127.0.0.1", "PGPORT": "1"})

    assert done.returncode == 1
    assert setting in done.stderr or value in done.stderr
    assert sorted(p.name for p in local.iterdir()) == before
