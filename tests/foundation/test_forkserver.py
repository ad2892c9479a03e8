"""A control-plane service forked from the test fork server behaves as `python -m` would for everything a test
relies on: its own environment (not the server's), its module run as __main__, its exit code, its output in its log
file, and signals that end it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from letsbe_platform.testing.forkserver import ForkedProcess

PROBE = """
import os, sys, time
print("argv0", sys.argv[0])
print("name", __name__)
print("probe", os.environ.get("PROBE"), "home", os.environ.get("LETSBE_FORK_TEST_ONLY_IN_PARENT"))
print("cwd", os.getcwd())
sys.stdout.flush()
if os.environ.get("HANG"):
    time.sleep(600)
sys.exit(int(os.environ["CODE"]))
"""


def probe(tmp_path: Path, **env: str) -> tuple[ForkedProcess, Path]:
    (tmp_path / "fork_probe.py").write_text(PROBE)
    log = tmp_path / f"probe-{len(list(tmp_path.glob('probe-*')))}.log"
    child_env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path), **env}
    return ForkedProcess("fork_probe", child_env, log), log


def test_a_forked_module_runs_as_main_with_its_own_environment_and_exit_code(tmp_path, monkeypatch):
    monkeypatch.setenv("LETSBE_FORK_TEST_ONLY_IN_PARENT", "leaked")  # the caller's variable, not the child's
    proc, log = probe(tmp_path, PROBE="mine", CODE="3")
    assert proc.wait(timeout=60) == 3 and proc.returncode == 3
    lines = log.read_text().splitlines()
    assert f"argv0 {tmp_path / 'fork_probe.py'}" in lines
    assert "name __main__" in lines
    assert "probe mine home None" in lines
    assert f"cwd {os.getcwd()}" in lines
    assert proc.pid != os.getpid()


def test_a_forked_process_is_ended_by_signals_and_reports_them(tmp_path):
    proc, _ = probe(tmp_path, HANG="1", CODE="0")
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    # A failing import is a traceback in the log and exit 1, as with `python -m`.
    (tmp_path / "fork_broken.py").write_text("raise RuntimeError('broken on import')\n")
    log = tmp_path / "broken.log"
    broken = ForkedProcess("fork_broken", {"PYTHONPATH": str(tmp_path)}, log)
    assert broken.wait(timeout=60) == 1
    assert "RuntimeError: broken on import" in log.read_text()


def test_a_child_that_gets_an_old_childs_pid_is_not_reported_with_its_exit_code(tmp_path):
    """Over a whole suite the kernel hands every pid out again; a new service must not be taken for dead because an
    old one with its pid was killed. The kernel is asked for the old pid again (``ns_last_pid``, as CRIU does)."""
    if os.geteuid() != 0:
        pytest.skip("choosing the next pid (ns_last_pid) needs root")
    last_pid = Path("/proc/sys/kernel/ns_last_pid")
    old, _ = probe(tmp_path, HANG="1", CODE="0")
    old.kill()
    assert old.wait(timeout=30) == -signal.SIGKILL
    for _ in range(50):  # another process of the machine may take the pid first: try again
        last_pid.write_text(str(old.pid - 1))
        new, _ = probe(tmp_path, HANG="1", CODE="0")
        if new.pid == old.pid:
            break
        new.kill()
    assert new.pid == old.pid, "the kernel did not hand the old pid out again"
    try:
        assert new.poll() is None  # running, not "exited with -9"
    finally:
        new.kill()
    assert new.wait(timeout=30) == -signal.SIGKILL
