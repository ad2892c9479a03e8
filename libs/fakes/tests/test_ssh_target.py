"""The loopback SSH target announces each command's end, so whoever acts on what a command did (the sandbox starts a
VPS's agents after step 10's `docker compose up`) does so at once instead of at its next poll."""

from __future__ import annotations

import asyncio
import threading

import asyncssh

from letsbe_fakes.ssh_target import SshTarget
from letsbe_platform.testing import eventually


async def test_each_command_end_is_announced_after_its_stand_in_calls_are_recorded() -> None:
    ended = threading.Event()
    seen: list[list[list[str]]] = []
    with SshTarget() as target:

        def on_end() -> None:
            seen.append(target.calls("docker"))
            ended.set()

        target.on_command_end = on_end
        async with asyncssh.connect(
            target.host,
            target.port,
            username=target.user,
            client_keys=[target.client_key],
            known_hosts=None,
        ) as conn:
            result = await conn.run("docker compose -p letsbe-ai up -d")
        assert result.exit_status == 0
        assert await asyncio.to_thread(ended.wait, 30)
    assert seen[0] == [["docker", "compose", "-p", "letsbe-ai", "up", "-d"]]


async def test_a_held_stand_in_waits_until_released_and_only_calls_that_match() -> None:
    with SshTarget() as target:
        target.hold("docker", "exec db")
        async with asyncssh.connect(
            target.host, target.port, username=target.user, client_keys=[target.client_key], known_hosts=None
        ) as conn:
            assert (await conn.run("docker ps")).exit_status == 0  # not matched: runs at once
            held = asyncio.create_task(conn.run("docker exec db dump"))
            await eventually(lambda: ["docker", "exec", "db", "dump"] in target.calls("docker"), "the held call")
            assert (await conn.run("docker ps")).exit_status == 0  # a round trip later it still waits
            assert not held.done()
            target.release("docker")
            assert (await asyncio.wait_for(held, 30)).exit_status == 0
