"""Start a service as a real OS process (``python -m <package>``) and wait until it answers /readyz."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from letsbe_platform.runner import tenant_env
from letsbe_platform.testing import free_port


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
        self.port = port or free_port()
        # A tenant agent inherits no control-plane settings (it has none on a tenant, and refuses unknown LETSBE_ ones).
        inherited = tenant_env(dict(os.environ)) if tenant_side else os.environ
        self.env = {**inherited, **env}
        if port_env:
            self.env[port_env] = str(self.port)
        self.log_path = Path(tempfile.mkstemp(prefix=f"{module}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    async def wait_ready(self, timeout: float = 30.0) -> ServiceProcess:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while asyncio.get_running_loop().time() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
                try:
                    r = await client.get(self.url + "/readyz", timeout=1.0)
                    if r.status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.module} not ready after {timeout}s:\n{self.logs()[-4000:]}")

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
