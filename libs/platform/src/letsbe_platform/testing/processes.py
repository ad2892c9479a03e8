"""Start a service as a real OS process (``python -m <package>``) and wait until it answers /readyz."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from letsbe_platform.runner import SERVICES, tenant_env
from letsbe_platform.testing import free_port
from letsbe_platform.testing.forkserver import ForkedProcess
from letsbe_platform.tls import client_context

# Control-plane services start forked from a server with their libraries imported (forkserver.py); anything else,
# the tenant agents above all, as `python -m` starts it.
_FORKED = {s.module for s in SERVICES}

# A start is mostly imports: a few seconds on an idle machine, several times that beside a CPU-heavy process. The
# wait ends as soon as /readyz answers, and a start that fails ends it at once (the process exits); this bound only
# has to outlast a slow start.
READY_TIMEOUT = 90.0


@functools.cache
def _log_dir() -> Path:
    """This process's directory for the logs of the services it starts, removed when it exits: thousands of tests
    start services, and a failing test has put the tail of the log that explains it in its message already."""
    path = Path(tempfile.mkdtemp(prefix="letsbe-service-logs-"))
    atexit.register(shutil.rmtree, path, True)
    return path


class ServiceProcess:
    def __init__(
        self,
        module: str,
        env: dict[str, str],
        *,
        port: int | None = None,
        port_env: str | None = None,
        tenant_side: bool = False,
        argv: list[str] | None = None,
    ):
        self.module = module
        self.argv = argv or [sys.executable, "-m", module]
        self._forked = argv is None and not tenant_side and module.split(".")[0] in _FORKED
        self.port = port or free_port()
        # A port we chose ourselves can be taken between choosing and binding (another xdist worker's process):
        # then the process is started again on another one (see wait_ready).
        self._port_env = port_env if port is None else None
        # A tenant agent inherits no control-plane settings (it has none on a tenant, and refuses unknown LETSBE_ ones).
        inherited = tenant_env(dict(os.environ)) if tenant_side else os.environ
        self.env = {**inherited, **env}
        if port_env:
            self.env[port_env] = str(self.port)
        self.log_path = Path(tempfile.mkstemp(prefix=f"{module}-", suffix=".log", dir=_log_dir())[1])
        self.proc: subprocess.Popen[bytes] | ForkedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        if self._forked:
            self.proc = ForkedProcess(self.module, self.env, self.log_path)
            return self
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> ServiceProcess:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(verify=client_context()) as client:  # plain HTTP: no context of its own
            while asyncio.get_running_loop().time() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    if self._port_env and "address already in use" in self.logs():
                        self._restart_on_another_port()
                        continue
                    raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
                try:
                    r = await client.get(self.url + "/readyz", timeout=1.0)
                    if r.status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.module} not ready after {timeout}s:\n{self.logs()[-4000:]}")

    def _restart_on_another_port(self) -> None:
        assert self._port_env is not None
        self.port = free_port()
        self.env[self._port_env] = str(self.port)
        self.log_path.write_bytes(b"")  # the refused start's lines are not this process's
        self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def terminate(self) -> int | None:
        """SIGTERM and wait: the graceful path (drain, finish in-flight work)."""
        self.kill(signal.SIGTERM)
        return self.proc.returncode if self.proc else None
