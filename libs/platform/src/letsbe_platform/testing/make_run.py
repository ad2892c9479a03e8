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

from letsbe_platform.runner import SERVICES, port
from letsbe_platform.testing import eventually as shared_eventually
from letsbe_platform.testing import free_port
from letsbe_platform.tls import client_context

RUN = [sys.executable, "-m", "letsbe_platform.runner"]
# The embedded servers' pid files under the data folder (letsbe_platform.devstack): postgres, and each NATS node
# (nats, nats-2, … in a cluster).
POSTGRES_PID_FILE = "postgres/pgdata/postmaster.pid"


# The whole stack's waits are long (Postgres, NATS and four services start): 90 s unless a caller says otherwise.
eventually = functools.partial(shared_eventually, timeout=90.0, every=0.25)


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    ports: dict[str, int]
    replicas: int = 1

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def child_pid(self, module: str, replica: int = 1) -> int | None:
        """The pid of the runner's child running ``python -m module`` (its ``replica``-th process)."""
        svc = next((s for s in SERVICES if s.module == module), None)
        listen = f"{svc.port_env}={port(svc, self.env, replica)}".encode() if svc else None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        for pid in children:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if module.encode() in argv and (listen is None or listen in environ):
                return int(pid)
        return None

    @property
    def env(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.ports.items()}

    def server_pid(self, server: str) -> int | None:
        """The pid of the embedded ``postgres`` or NATS node (``nats``, ``nats-2``, …) from its pid file, None while
        it has none."""
        pid_file = POSTGRES_PID_FILE if server == "postgres" else f"{server}/nats.pid"
        try:
            return int((self.data_dir / pid_file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def url(self, service: str, replica: int = 1) -> str:
        svc = next(s for s in SERVICES if s.name == service)
        return f"http://127.0.0.1:{port(svc, self.env, replica)}"

    async def ready(self, *services: str, replica: int | None = None) -> bool:
        """Every replica (or the given one) of each of ``services`` (default: all) answers /readyz with 200."""
        return not await self.not_ready(*services, replica=replica)

    async def not_ready(self, *services: str, replica: int | None = None) -> dict[str, str]:
        """What each replica that is not ready answers /readyz (its status and body, or the connection error)."""
        replicas = [replica] if replica else range(1, self.replicas + 1)
        answers: dict[str, str] = {}
        async with httpx.AsyncClient(verify=client_context()) as client:  # polled: no context of its own
            for name in services or [s.name for s in SERVICES]:
                for n in replicas:
                    try:
                        r = await client.get(self.url(name, n) + "/readyz", timeout=2)
                    except httpx.HTTPError as exc:
                        answers[f"{name}#{n}"] = repr(exc)
                        continue
                    if r.status_code != 200:
                        answers[f"{name}#{n}"] = f"{r.status_code} {r.text[:300]}"
        return answers

    async def all_ready(self) -> bool:
        """Every service ready; fails at once (with the run's last lines) if ``letsbe-run`` itself has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"letsbe-run exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
        return await self.ready()


def without_servers() -> dict[str, str]:
    """The environment minus the session's servers: `letsbe-run` then starts its own, as `make run` does."""
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL", "PGSSLMODE")}


def start_run(tmp: Path, env: dict[str, str], *args: str) -> Run:
    """``letsbe-run`` on free ports (every replica's, with ``LETSBE_REPLICAS`` in ``env``)."""
    replicas = int(env.get("LETSBE_REPLICAS") or 1)
    ports = {
        svc.port_env + ("" if n == 1 else f"_{n}"): free_port() for svc in SERVICES for n in range(1, replicas + 1)
    }
    log = tmp / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*RUN, "--data-dir", str(tmp / "data"), *args],
            env={**{k: str(v) for k, v in ports.items()}, **env},
            stdout=out,
            stderr=out,
        )
    return Run(proc, tmp / "data", log, ports, replicas)


def stop_run(run: Run) -> int:
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)
        try:
            run.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()
    return run.proc.returncode
