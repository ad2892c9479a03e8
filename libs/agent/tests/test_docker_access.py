"""The agents run as uid 1001 and reach the Docker socket (root:<docker group> 0660) only through that group: what
compose's ``group_add: [$DOCKER_GID]`` gives them. Here the agent's own client, in a process that really is
uid 1001, talks to a socket owned by another group, with and without that group."""

import asyncio
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from letsbe_agent.docker import DockerClient, DockerError
from letsbe_fakes.docker_engine import DockerEngineFake

AGENT_UID = 1001
SOCKET_GID = 4343  # the server's docker group: any gid the agent's own group is not

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="becoming uid 1001 needs root (make test runs as root)")


@pytest.fixture
def engine() -> Iterator[DockerEngineFake]:
    d = Path(tempfile.mkdtemp(prefix="dk"))  # unix socket paths must stay short
    d.chmod(0o755)
    with DockerEngineFake(d / "d.sock") as fake:
        os.chown(fake.socket_path, 0, SOCKET_GID)
        os.chmod(fake.socket_path, 0o660)
        yield fake


def list_containers_as_agent(socket: Path, groups: list[int]) -> str:
    """In a forked child that drops to uid/gid 1001 with ``groups`` as supplementary groups (as the container is)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(r)
        try:
            os.setgroups(groups)
            os.setgid(AGENT_UID)
            os.setuid(AGENT_UID)

            async def call() -> str:
                client = DockerClient(socket)
                try:
                    return f"ok: {len(await client.list_containers())} containers"
                except DockerError as exc:
                    return f"refused: {exc}"
                finally:
                    await client.aclose()

            out = asyncio.run(call())
        except BaseException as exc:  # anything goes back to the test
            out = f"crashed: {exc!r}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as pipe:
        return pipe.read()


def test_the_agent_reaches_the_docker_api_through_the_sockets_group(engine: DockerEngineFake) -> None:
    assert list_containers_as_agent(engine.socket_path, [SOCKET_GID]).startswith("ok: ")


def test_without_the_sockets_group_the_agent_is_refused(engine: DockerEngineFake) -> None:
    out = list_containers_as_agent(engine.socket_path, [])
    assert out.startswith("refused: ") and "Permission denied" in out
