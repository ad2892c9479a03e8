"""A test's service process whose chosen port is taken before it binds (by another xdist worker's process) starts
again on another port instead of failing the test; its log file goes when the test process ends."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from letsbe_platform.testing.processes import ServiceProcess


async def test_a_port_taken_between_choosing_and_binding_is_replaced(service_env, processes):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        monitor = ServiceProcess("letsbe_monitor", service_env, port_env="LETSBE_MONITOR_PORT")
        monitor.port, monitor.env["LETSBE_MONITOR_PORT"] = taken, str(taken)  # the race, made certain
        processes.append(monitor.start())
        await monitor.wait_ready(timeout=60)
    assert monitor.port != taken


async def test_a_port_the_caller_gave_is_not_changed(service_env, processes):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        monitor = ServiceProcess("letsbe_monitor", service_env, port=taken, port_env="LETSBE_MONITOR_PORT")
        processes.append(monitor.start())
        with pytest.raises(RuntimeError, match="address already in use"):
            await monitor.wait_ready(timeout=60)


def test_each_xdist_worker_takes_ports_from_its_own_block_below_the_ephemeral_range(monkeypatch):
    from letsbe_platform.testing import free_port

    blocks = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        blocks[worker] = [free_port() for _ in range(20)]
    assert len(set(blocks["gw0"])) == len(set(blocks["gw1"])) == 20  # no port handed out twice
    assert all(12000 <= p < 14000 for p in blocks["gw0"]) and all(14000 <= p < 16000 for p in blocks["gw1"])
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert free_port() >= 32768  # outside xdist: the kernel's choice, as before


def test_the_service_logs_of_a_test_process_are_removed_when_it_exits():
    # A process that starts a service, lets it write its log, and exits (as a pytest worker does at the end).
    script = (
        "import sys\n"
        "from letsbe_platform.testing.processes import ServiceProcess\n"
        "p = ServiceProcess('letsbe_monitor', {}, argv=[sys.executable, '-c', 'print(\\'a line\\')'])\n"
        "p.start().proc.wait()\n"
        "assert p.logs() == 'a line\\n', p.logs()\n"
        "print(p.log_path)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    log = Path(ran.stdout.strip())
    assert log.name.startswith("letsbe_monitor-") and not log.exists() and not log.parent.exists()
