"""Connecting to a server whose sshd is not listening for a moment (it re-executes itself on ``systemctl reload ssh``,
as step 3 does, or it is still starting): a refused connection is tried again within the connect timeout, and a port
that never listens still fails as ``ConnectionFailed`` within that timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from letsbe_fakes.ssh_target import SshTarget
from letsbe_provisioner.jobs import ssh

from ..conftest import server_target


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], asyncio.Event]:
    """Each TCP connect attempt's outcome ("refused" or "ok"), and an event set at the first refusal."""
    seen: list[str] = []
    refused = asyncio.Event()
    real = ssh.asyncssh.create_connection

    async def counting(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await real(*args, **kwargs)
        except ConnectionRefusedError:
            seen.append("refused")
            refused.set()
            raise
        seen.append("ok")
        return result

    monkeypatch.setattr(ssh.asyncssh, "create_connection", counting)
    return seen, refused


async def test_a_port_that_starts_listening_a_moment_later_is_connected_to(attempts: Any) -> None:
    seen, refused = attempts
    target = SshTarget()  # its port is free and nobody listens on it yet
    try:
        connecting = asyncio.create_task(ssh.connect(server_target(target), target.client_key, timeout=10))
        await asyncio.wait_for(refused.wait(), 10)
        await asyncio.to_thread(target.start)  # sshd listens again
        conn = await connecting
        try:
            assert (await conn.run("true")).exit_status == 0
        finally:
            conn.close()
    finally:
        target.stop()
    assert seen[0] == "refused" and seen[-1] == "ok", seen


async def test_a_port_that_never_listens_fails_within_the_connect_timeout(attempts: Any) -> None:
    seen, _ = attempts
    target = SshTarget()  # never started
    try:
        started = time.monotonic()
        with pytest.raises(ssh.ConnectionFailed, match="ConnectionRefusedError"):
            await ssh.connect(server_target(target), target.client_key, timeout=1.5)
        took = time.monotonic() - started
    finally:
        target.stop()
    assert took <= 1.5 + 5, took  # the timeout, plus the slack of a busy machine (retrying on, it would hang)
    assert len(seen) > 1 and set(seen) == {"refused"}, seen  # tried again meanwhile, and gave up in time
