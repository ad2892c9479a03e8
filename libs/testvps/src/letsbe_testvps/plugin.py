"""Pytest plugin (loaded through the ``pytest11`` entry point): the ``vps`` marker and the ``test_vps`` fixture.

Any test that asks for ``test_vps`` gets a freshly booted Debian 12 system and is marked ``vps`` (so
``-m "not vps"`` leaves it out). ``testvps_report`` collects text that is printed in the terminal summary (the
per-step table of a real provisioning run), because a passing test's own output is captured.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import asyncssh
import pytest

from letsbe_testvps.vps import Vps, boot, sweep

_REPORTS: list[tuple[str, str]] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vps: boots a real Debian 12 test VPS (systemd-nspawn; root)")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "test_vps" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vps)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    for title, text in _REPORTS:
        terminalreporter.write_sep("=", title)
        terminalreporter.write_line(text)


@pytest.fixture
def testvps_report() -> Iterator[list[tuple[str, str]]]:
    """Append (title, text) to show it in the terminal summary."""
    yield _REPORTS


@pytest.fixture(scope="session")
def testvps_key() -> asyncssh.SSHKey:
    """The SSH key the VPS's root authorizes (the provisioner's key in a provisioning test)."""
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture(scope="session")
def _testvps_host() -> None:
    tools = ("systemd-nspawn", "debootstrap", "docker-registry")
    if os.geteuid() != 0 or not all(shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") for t in tools):
        pytest.skip(f"the Debian 12 test VPS needs root and {', '.join(tools)} (scripts/ensure-system-tools.sh)")
    sweep()  # what killed runs left behind


@pytest.fixture
def test_vps(_testvps_host: None, testvps_key: asyncssh.SSHKey) -> Iterator[Vps]:
    """A fresh Debian 12 VPS (booted for this test, killed and removed after it, whatever happened)."""
    vps = boot(testvps_key.export_public_key().decode())
    try:
        yield vps
    finally:
        vps.stop()
