"""Fixtures of the tests of the agents with the hub, with their own services and with the provisioner's files."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_testing.tenants import admin, hub, hub_settings  # noqa: F401 - fixtures
from letsbe_fakes.docker_engine import DockerEngineFake
from letsbe_fakes.ssh_target import SshTarget


@pytest.fixture
def target() -> Iterator[SshTarget]:
    """A loopback "server" (its root is a temporary directory) that the rendered files are written onto."""
    with SshTarget() as t:
        yield t


@pytest.fixture
def docker_fake() -> Iterator[DockerEngineFake]:
    d = Path(tempfile.mkdtemp(prefix="dk"))  # unix socket paths must stay short (~100 bytes)
    with DockerEngineFake(d / "d.sock", health_delay=0.1) as fake:
        yield fake
