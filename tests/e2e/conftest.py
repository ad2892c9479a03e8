"""The whole control plane as real processes: the four services started with `python -m`, the sandbox world of
`make run` (the same fakes, the same settings, one VPS with its own agents per order) in this process, and the
session's real Postgres and NATS."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from hub_testing.browser import browser  # noqa: F401 - fixture: one headless Chromium per module
from letsbe_platform.bus import Bus
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import free_port
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports, Sandbox


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    # Short: each VPS's Docker socket lives under it, and a unix socket path has at most 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="lbsb-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def control_plane(root: Path, ports: Ports, service_env: dict[str, str], bus: Bus) -> ControlPlane:
    world = Sandbox(root, ports).start()
    return ControlPlane(world, {**service_env, "LETSBE_SANDBOX_DIR": str(root)}, bus)


@pytest_asyncio.fixture
async def plane(sandbox_root: Path, service_env: dict[str, str], bus: Bus) -> AsyncIterator[ControlPlane]:
    cp = control_plane(sandbox_root, Ports(*(free_port() for _ in range(4))), service_env, bus)
    try:
        await cp.start(*(s.name for s in SERVICES))
        yield cp
    finally:
        cp.stop_all()
        cp.world.stop()
