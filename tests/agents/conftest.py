"""Fixtures of the tests of the agents against the hub and against the provisioner's rendered files."""

from collections.abc import Iterator

import pytest

from hub_testing.tenants import admin, hub, hub_settings  # noqa: F401 - fixtures
from letsbe_fakes.ssh_target import SshTarget


@pytest.fixture
def target() -> Iterator[SshTarget]:
    """A loopback "server" (its root is a temporary directory) that the rendered files are written onto."""
    with SshTarget() as t:
        yield t
