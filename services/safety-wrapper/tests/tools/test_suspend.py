"""Billing's suspend/resume commands: the customer's tool containers stop (data kept) and the tool gate closes;
resume starts them and opens the gate, unless an operator's own kill switch is engaged."""

import shutil
import tempfile
from pathlib import Path

import pytest

from letsbe_agent.commands import CommandRegistry
from letsbe_agent.docker import DockerClient
from letsbe_fakes.docker_engine import DockerEngineFake
from letsbe_safety_wrapper.tools import commands


@pytest.fixture
def docker():
    d = Path(tempfile.mkdtemp(prefix="dk"))  # unix socket paths must stay short
    with DockerEngineFake(d / "d.sock") as fake:
        fake.add_container("letsbe-ghost", "ghost:5", labels={"biz.letsbe.tool": "ghost"})
        fake.add_container(
            "letsbe-ghost-db", "mysql:8", labels={"biz.letsbe.tool": "ghost", "biz.letsbe.role": "database"}
        )
        fake.add_container("letsbe-safety-wrapper", "sw:1")
        fake.add_container("letsbe-nginx", "nginx:1", labels={"biz.letsbe.managed": "true"})
        yield fake
    shutil.rmtree(d, ignore_errors=True)


def _running(fake: DockerEngineFake) -> set[str]:
    return {c["Name"].lstrip("/") for c in fake.containers.values() if c["State"]["Running"]}


async def test_suspend_stops_the_tools_and_closes_the_gate_and_resume_undoes_both(wrapper, docker):
    client = DockerClient(docker.socket_path)
    try:
        result = await commands.suspend(wrapper.tools, client, {"reason": "payment overdue"})
        assert result == {"suspended": True, "stopped": ["letsbe-ghost", "letsbe-ghost-db"]}
        assert _running(docker) == {"letsbe-safety-wrapper", "letsbe-nginx"}
        assert docker.by_name("letsbe-ghost") is not None  # stopped, not removed: the data stays
        r = await wrapper.call("ghost", "posts.list")
        assert r.status_code == 423 and r.json()["reason"] == "suspended: payment overdue"
        # Idempotent: a redelivered suspend finds nothing left to stop.
        again = await commands.suspend(wrapper.tools, client, {"reason": "payment overdue"})
        assert again["stopped"] == []

        result = await commands.resume(wrapper.tools, client, {"reason": "invoice paid"})
        assert result == {"suspended": False, "started": ["letsbe-ghost", "letsbe-ghost-db"]}
        assert _running(docker) == {"letsbe-ghost", "letsbe-ghost-db", "letsbe-safety-wrapper", "letsbe-nginx"}
        assert (await wrapper.call("ghost", "posts.list")).status_code == 200
    finally:
        await client.aclose()


async def test_resume_leaves_an_operators_kill_switch_engaged(wrapper, docker):
    client = DockerClient(docker.socket_path)
    try:
        await commands.suspend(wrapper.tools, client, {"reason": "payment overdue"})
        await commands.kill_switch(wrapper.tools, {"engaged": True, "reason": "incident 12"})
        await commands.resume(wrapper.tools, client, {})
        r = await wrapper.call("ghost", "posts.list")
        assert r.status_code == 423 and r.json()["reason"] == "incident 12"
    finally:
        await client.aclose()


def test_suspend_and_resume_are_registered_for_the_hub_with_their_params(wrapper, docker):
    registry = CommandRegistry()
    commands.register(registry, wrapper.tools, DockerClient(docker.socket_path))
    assert {"kill-switch", "set-autonomy", "suspend", "resume"} <= set(registry._handlers)
    assert registry._handlers["suspend"].params.__name__ == "SuspendParams"
