"""`letsbe-run` (what `make run` starts) as a real process for tests: its own embedded Postgres and NATS, its ports,
its data folder, its output, and the pids of what it supervises."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import eventually as shared_eventually
from letsbe_platform.testing import free_port

RUN = [sys.executable, "-m", "letsbe_platform.runner"]
# The embedded servers' pid files under the data folder (letsbe_platform.devstack).
SERVER_PID_FILES = {"postgres": "postgres/pgdata/postmaster.pid", "nats": "nats/nats.pid"}


# The whole stack's waits are long (Postgres, NATS and four services start): 90 s unless a caller says otherwise.
eventually = functools.partial(shared_eventually, timeout=90.0, every=0.25)


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    ports: dict[str, int]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def child_pid(self, module: str) -> int | None:
        """The pid of the runner's child running ``python -m module``."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        for pid in children:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if module.encode() in argv:
                return int(pid)
        return None

    def server_pid(self, server: str) -> int | None:
        """The pid of the embedded ``postgres`` or ``nats`` (from its pid file), None while it has none."""
        try:
            return int((self.data_dir / SERVER_PID_FILES[server]).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def url(self, service: str) -> str:
        svc = next(s for s in SERVICES if s.name == service)
        return f"http://127.0.0.1:{self.ports[svc.port_env]}"

    async def ready(self, *services: str) -> bool:
        """Every one of ``services`` (default: all) answers /readyz with 200."""
        async with httpx.AsyncClient() as client:
            for name in services or [s.name for s in SERVICES]:
                try:
                    if (await client.get(self.url(name) + "/readyz", timeout=2)).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
        return True

    async def all_ready(self) -> bool:
        return await self.ready()


def without_servers() -> dict[str, str]:
    """The environment minus the session's servers: `letsbe-run` then starts its own, as `make run` does."""
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}


def start_run(tmp: Path, env: dict[str, str], *args: str) -> Run:
    ports = {svc.port_env: free_port() for svc in SERVICES}
    log = tmp / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*RUN, "--data-dir", str(tmp / "data"), *args],
            env={**{k: str(v) for k, v in ports.items()}, **env},
            stdout=out,
            stderr=out,
        )
    return Run(proc, tmp / "data", log, ports)


def stop_run(run: Run) -> int:
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)
        try:
            run.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()
    return run.proc.returncode
