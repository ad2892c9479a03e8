"""The whole control plane as real processes: six services started with `python -m`, the sandbox world of
`make run` (the same fakes, the same settings) in this process, and the session's real Postgres and NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from letsbe_platform.bus import Bus
from letsbe_platform.devstack import free_port
from letsbe_platform.runner import SERVICES
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports, Sandbox


@pytest_asyncio.fixture
async def plane(tmp_path: Path, service_env: dict[str, str], bus: Bus) -> AsyncIterator[ControlPlane]:
    ports = Ports(*(free_port() for _ in range(6)))
    world = Sandbox(tmp_path / "sandbox", ports).start()
    cp = ControlPlane(world, {**service_env, "LETSBE_SANDBOX_DIR": str(tmp_path / "sandbox")}, bus)
    try:
        await cp.start(*(s.name for s in SERVICES))
        yield cp
    finally:
        cp.stop_all()
        world.stop()
