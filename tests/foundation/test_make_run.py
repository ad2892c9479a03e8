"""`make run`'s supervisor against the session's real servers: migrates, starts the control-plane services, each
answers /readyz, and Ctrl-C stops them all cleanly."""

import asyncio
import os
import signal
import subprocess
import sys

import httpx

from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import free_port


async def test_run_starts_every_service_ready_and_stops_cleanly(database_url, nats_url, bus_namespace):
    ports = {svc.port_env: str(free_port()) for svc in SERVICES}
    env = {
        **os.environ,
        **ports,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "LETSBE_BUS_NAMESPACE": bus_namespace,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "letsbe_platform.runner"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with httpx.AsyncClient() as client:
            pending = set(ports.values())
            async with asyncio.timeout(60):
                while pending:
                    for port in list(pending):
                        try:
                            if (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=1)).status_code == 200:
                                pending.discard(port)
                        except httpx.HTTPError:
                            pass
                    await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "LetsBe control plane is up" in out
    for svc in SERVICES:
        assert f"{svc.name:<15} http://127.0.0.1:{ports[svc.port_env]}" in out
