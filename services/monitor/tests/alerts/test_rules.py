"""Each §9.1 / §8.3 rule fires past its threshold and not at or below it (pure functions, no I/O)."""

import uuid
from datetime import timedelta

import pytest

from letsbe_contracts.events import BackupStatus, ContainerState
from letsbe_monitor.alerts.rules import (
    evaluate_backup,
    evaluate_containers,
    evaluate_details,
    evaluate_tls,
    offsite_staleness,
)
from letsbe_monitor.config import MonitorSettings

from ..conftest import T0, details

TID = uuid.uuid4()
S = MonitorSettings()


def by_rule(observations):
    return {o.rule: o.firing for o in observations}


@pytest.mark.parametrize(
    ("disk", "memory", "disk_firing", "memory_firing"),
    [
        (85.0, 90.0, None, None),  # at the threshold: not firing ("> 85 %", "> 90 %"), inside the clear band
        (85.1, 90.1, True, True),
        (82.0, 87.0, None, None),  # inside the hysteresis band (clear at 80 / 85): hold
        (80.0, 85.0, False, False),
        (10.0, 10.0, False, False),
    ],
)
def test_disk_and_memory_fire_only_above_their_thresholds(disk, memory, disk_firing, memory_firing):
    obs, _ = evaluate_details(TID, details(disk=disk, memory=memory), {}, S)
    got = by_rule(obs)
    assert (got["disk.usage"], got["memory.usage"]) == (disk_firing, memory_firing)


def test_thresholds_and_severities_are_settings():
    s = MonitorSettings.model_validate({"rules": {"disk.usage": {"threshold": 95, "clear": 90, "severity": "hard"}}})
    assert s.rules["disk.usage"].severity == "hard"
    assert s.rules["memory.usage"].threshold == 90  # untouched defaults stay
    obs, _ = evaluate_details(TID, details(disk=94), {}, s)
    assert by_rule(obs)["disk.usage"] is None  # 94 is now inside the band, not firing


def container(name, restarts=0, state="running", oom=False):
    return ContainerState(name=name, image="x:1", state=state, restart_count=restarts, oom_killed=oom)


def test_a_container_crash_is_a_restart_count_that_grew_or_a_crashing_state():
    obs, restarts = evaluate_containers(TID, (container("ghost", 2), container("odoo", 0)), {})
    assert by_rule(obs) == {"container.crash": False, "container.oom": False}  # first sight: no baseline yet
    obs, _ = evaluate_containers(TID, (container("ghost", 3), container("odoo", 0)), restarts)
    assert by_rule(obs)["container.crash"] is True
    obs, _ = evaluate_containers(TID, (container("ghost", 3), container("odoo", 0)), {"ghost": 3, "odoo": 0})
    assert by_rule(obs)["container.crash"] is False
    obs, _ = evaluate_containers(TID, (container("odoo", 0, state="restarting"),), {})
    assert by_rule(obs)["container.crash"] is True
    obs, _ = evaluate_containers(TID, (container("odoo", 0, state="exited", oom=True),), {})
    assert by_rule(obs)["container.oom"] is True


def backup(statuses, remote="success", age_hours=4):
    return BackupStatus.model_validate(
        {
            "last_run": (T0 - timedelta(hours=age_hours)).isoformat(),
            "duration_seconds": 342,
            "databases": {n: {"status": st, "size_mb": 1} for n, st in statuses.items()},
            "remote_sync": {"status": remote},
        }
    )


@pytest.mark.parametrize(
    ("statuses", "remote", "age", "expected"),
    [
        ({"ghost": "success", "chatwoot": "success"}, "success", 4, (False, False, False)),
        ({"ghost": "success", "nextcloud": "failed"}, "success", 4, (True, False, False)),  # any → medium
        ({"ghost": "success"}, "failed", 4, (True, False, False)),  # the off-site copy failing counts
        ({"ghost": "failed", "nextcloud": "failed"}, "success", 4, (False, True, False)),  # all → hard
        ({"ghost": "success"}, "success", 48, (False, False, False)),  # exactly 48 h: not yet stale
        ({"ghost": "success"}, "success", 48.1, (False, False, True)),  # > 48 h → hard
    ],
)
def test_backup_rules_follow_section_8_3(statuses, remote, age, expected):
    got = by_rule(evaluate_backup(TID, backup(statuses, remote, age), S, T0, new_run=True))
    assert (got["backup.failed"], got["backup.all_failed"], got["backup.stale"]) == expected


def test_a_backup_run_reported_again_is_not_a_new_failure():
    got = by_rule(evaluate_backup(TID, backup({"ghost": "failed", "x": "success"}), S, T0, new_run=False))
    assert set(got) == {"backup.stale"}


@pytest.mark.parametrize(
    ("remote", "age", "last_offsite_hours", "firing"),
    [
        ("success", 4, 4, False),  # this run's copy is off-site
        ("skipped", 4, None, True),  # no off-site target: the copy is missing, at once
        ("skipped", 4, 10, True),  # a target that went away
        ("failed", 4, 24, False),  # one failed copy is backup.failed; the one before is recent enough
        ("failed", 4, 48.5, True),  # no copy for over 48 h: stale
        ("failed", 4, None, True),  # never copied off-site
    ],
)
def test_the_off_site_copy_alerts_when_missing_or_stale(remote, age, last_offsite_hours, firing):
    offsite_at = None if last_offsite_hours is None else T0 - timedelta(hours=last_offsite_hours)
    obs = offsite_staleness(TID, backup({"ghost": "success"}, remote, age), offsite_at, S, T0)
    assert (obs.rule, obs.firing) == ("backup.offsite", firing)


@pytest.mark.parametrize(("days", "firing"), [(14.0, False), (13.99, True), (1, True), (-2, True), (60, False)])
def test_tls_fires_under_14_days_left(days, firing):
    obs = evaluate_tls(TID, {"example.com": T0 + timedelta(days=days)}, S, T0)
    assert obs is not None and obs.firing is firing


def test_tls_soonest_host_decides_and_unreachable_decides_nothing():
    hosts = {"example.com": T0 + timedelta(days=80), "files.example.com": T0 + timedelta(days=3)}
    obs = evaluate_tls(TID, hosts, S, T0)
    assert obs.firing is True and obs.value == 3.0
    assert "files.example.com in 3.0 days" in obs.summary and obs.summary.count("example.com") == 1
    assert evaluate_tls(TID, {}, S, T0) is None


def test_a_misspelt_rule_in_the_settings_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown rule"):
        MonitorSettings.model_validate({"rules": {"disk.usag": {"severity": "hard", "threshold": 90}}})
    s = MonitorSettings.model_validate({"rules": {"token_pool.95": {"severity": "hard", "threshold": 95}}})
    assert [name for name, _ in s.token_pool_rules] == [
        "token_pool.80",
        "token_pool.90",
        "token_pool.95",
        "token_pool.100",
    ]
