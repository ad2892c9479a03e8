"""A control-plane service forked from the test fork server behaves as `python -m` would for everything a test
relies on: its own environment (not the server's), its module run as __main__, its exit code, its output in its log
file, and signals that end it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

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
