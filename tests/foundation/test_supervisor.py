"""`make run`'s supervisor: a service, Postgres or NATS killed with SIGKILL comes back by itself and the services
return to ready; a crash loop stops everything with that service's last log lines; a second `letsbe-run` on the same
data folder refuses at once and leaves the running stack alone; `--help` of every console script starts nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from letsbe_platform.testing import free_port
from letsbe_platform.testing.make_run import RUN, Run, eventually, start_run, stop_run, without_servers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """`letsbe-run` with its own embedded Postgres and NATS (no DATABASE_URL / NATS_URL), as `make run` starts it."""
    tmp = tmp_path_factory.mktemp("make-run")
    env = {**without_servers(), "LETSBE_PG_PORT": str(free_port()), "LETSBE_NATS_PORT": str(free_port())}
    run = start_run(tmp, env, "--max-restarts", "10")
    try:
        yield run
    finally:
        code = stop_run(run)
        assert code == 0, run.output()[-4000:]


async def test_embedded_stack_comes_up(embedded: Run):
    await eventually(embedded.all_ready, "every service ready", timeout=180)
    # Its services reach the embedded Postgres (no TLS on loopback) without asking for TLS at each connection.
    hub = embedded.child_pid("letsbe_hub")
    assert hub is not None
    environ = dict(v.split("=", 1) for v in Path(f"/proc/{hub}/environ").read_text().split("\0") if "=" in v)  # noqa: ASYNC240 - procfs
    assert environ.get("PGSSLMODE") == "disable" and environ["DATABASE_URL"].startswith("postgresql://")


async def test_second_start_on_the_same_data_dir_refuses_and_leaves_the_first_alone(embedded: Run, tmp_path: Path):
    await eventually(embedded.all_ready, "every service ready", timeout=180)
    pg_pid = (embedded.data_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0]
    second = await asyncio.to_thread(
        subprocess.run,
        [*RUN, "--data-dir", str(embedded.data_dir)],
        env=without_servers(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert f"{embedded.data_dir} is in use by another letsbe-run (pid {embedded.proc.pid})" in second.stderr
    assert "nothing was started" in second.stderr
    assert "starting embedded Postgres" not in second.stdout
    # The first stack did not notice: same postmaster, every service still ready.
    assert (embedded.data_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0] == pg_pid
    assert embedded.proc.poll() is None
    assert await embedded.all_ready()


async def test_killed_service_is_restarted_and_ready_again(embedded: Run):
    await eventually(embedded.all_ready, "every service ready", timeout=180)
    old = embedded.child_pid("letsbe_provisioner")
    assert old is not None
    os.kill(old, signal.SIGKILL)

    async def replaced() -> bool:
        new = embedded.child_pid("letsbe_provisioner")
        return new is not None and new != old and await embedded.all_ready()

    await eventually(replaced, "provisioner restarted and every service ready", timeout=90)
    out = embedded.output()
    assert "provisioner exited with -9; restarting it in" in out
    assert "provisioner restarted (pid" in out
    assert embedded.proc.poll() is None


@pytest.mark.parametrize(
    ("server", "pid_file"),
    [("postgres", "postgres/pgdata/postmaster.pid"), ("nats", "nats/nats.pid")],
)
async def test_killed_embedded_server_is_restarted_and_services_ready_again(embedded: Run, server: str, pid_file: str):
    await eventually(embedded.all_ready, "every service ready", timeout=180)
    path = embedded.data_dir / pid_file
    old = int(path.read_text().split()[0])
    os.kill(old, signal.SIGKILL)

    async def gone() -> bool:
        return not await embedded.all_ready()

    await eventually(gone, f"services notice {server} is down", timeout=30, every=0.1)

    async def back() -> bool:
        try:
            new = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        # The services may reconnect before the supervisor's own check says so: wait for both.
        return new != old and await embedded.all_ready() and f"embedded {server} is running again" in embedded.output()

    await eventually(back, f"{server} restarted, said so, and every service ready again", timeout=120)
    assert f"embedded {server} is not running; starting it again" in embedded.output()


async def test_crash_loop_stops_everything_with_the_last_lines_of_its_log(
    tmp_path: Path, database_url: str, nats_url: str, bus_namespace: str
):
    # Port 0 is refused by the monitor's settings: it dies at every start.
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "LETSBE_BUS_NAMESPACE": bus_namespace,
        "LETSBE_MONITOR_PORT": "0",
    }
    # A short backoff: the count of restarts and the crash-loop verdict are what is checked, not the waits between.
    run = start_run(tmp_path, env, "--max-restarts", "2", "--restart-backoff", "0.05")
    try:
        code = run.proc.wait(timeout=120)
    finally:
        stop_run(run)
    out = run.output()
    assert code == 1, out[-4000:]
    assert out.count("monitor exited with 1; restarting it in") == 2
    assert "monitor is crash-looping: it exited 3 times within 60 s" in out
    assert "last " in out and "lines of monitor's log:" in out
    assert "stopping everything" in out


async def test_sandbox_refusing_its_settings_stops_the_run_with_its_reason(
    tmp_path: Path, database_url: str, nats_url: str, bus_namespace: str
):
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "LETSBE_BUS_NAMESPACE": bus_namespace,
        "LETSBE_SANDBOX_SLOW_SECONDS": "soon",
    }
    run = start_run(tmp_path, env)
    try:
        # Well inside the 60 s the run gives a sandbox to become ready: it must not wait for that.
        code = run.proc.wait(timeout=45)
    finally:
        stop_run(run)
    out = run.output()
    assert code == 1, out[-4000:]
    assert "sandbox exited with 1 before it was ready" in out
    assert "LETSBE_SANDBOX_SLOW_SECONDS='soon': expected seconds between 0 and 600" in out
    assert "stopping everything" in out
    assert "Traceback" not in out


PYPROJECTS = [ROOT / "pyproject.toml", *ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]
SCRIPTS = sorted(
    name for p in PYPROJECTS for name in tomllib.loads(p.read_text()).get("project", {}).get("scripts", {})
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_console_script_prints_help_and_starts_nothing(script: str, tmp_path: Path):
    env = without_servers() | {
        "LETSBE_DATA_DIR": str(tmp_path / "data"),
        "LETSBE_SANDBOX_DIR": str(tmp_path / "sandbox"),
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / script), "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "--help created files: it started something"
