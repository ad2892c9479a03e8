"""A 3-node JetStream cluster on loopback (what `LETSBE_NATS_CLUSTER=3 make run` starts) and how `letsbe-run` scales
out: R3 streams keep every message through the loss of a node, and the node comes back as a current replica."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from letsbe_platform import devstack
from letsbe_platform.bus import Bus
from letsbe_platform.runner import SERVICES, port, replica_name, scale
from letsbe_platform.service_config import TOOLING_VARIABLES
from letsbe_platform.testing import eventually


@pytest.fixture
def nats_cluster() -> Iterator[list[devstack.Nats]]:
    root = Path(tempfile.mkdtemp(prefix="lbnats-"))
    nodes = devstack.nats_nodes(root, devstack.free_port(), 3)
    try:
        for node in nodes:
            node.start()
        devstack.wait_for_meta_leader(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_r3_stream_keeps_every_message_through_a_dead_node_and_the_node_catches_up(nats_cluster):
    url = ",".join(n.url for n in nats_cluster)
    bus = await Bus.connect(url, namespace="clustertest", replicas=3)
    try:
        info = await bus.js.stream_info(bus.stream)
        assert info.config.num_replicas == 3 and len(info.cluster.replicas or []) == 2

        async def publish(n: int) -> None:
            # What the outbox relay does: a publish that fails (the node it went through died) is retried, and the
            # same Nats-Msg-Id keeps the retry from adding a second copy.
            async def once() -> bool:
                try:
                    await bus.publish_raw("letsbe.test.v1", str(n).encode(), msg_id=f"m{n}")
                    return True
                except Exception:
                    return False

            await eventually(once, f"message {n} published", timeout=30, every=0.2)

        for n in range(10):
            await publish(n)
        victim = nats_cluster[0]
        os.kill(victim.pid(), signal.SIGKILL)
        for n in range(10, 20):
            await publish(n)
        victim.start()

        async def caught_up() -> bool:
            info = await bus.js.stream_info(bus.stream)
            return info.state.messages == 20 and all(r.current for r in info.cluster.replicas or [])

        await eventually(caught_up, "20 messages, every replica current again", timeout=30, every=0.2)
    finally:
        await bus.close()  # the cluster and its stream go with the fixture (a delete right after a node's restart
        # can outwait its API timeout while the cluster settles)


def test_replicas_get_their_own_ports_and_names():
    hub = SERVICES[0]
    env = {hub.port_env: "4000"}
    assert [port(hub, env, n) for n in (1, 2, 3)] == [4000, 4100, 4200]
    assert port(hub, {**env, f"{hub.port_env}_2": "5000"}, 2) == 5000
    assert [replica_name(hub, n) for n in (1, 2)] == ["hub-api", "hub-api-2"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, (1, 1)), ({"LETSBE_REPLICAS": "2", "LETSBE_NATS_CLUSTER": "3"}, (2, 3))],
)
def test_scale_settings(env, expected):
    assert scale(env) == expected


@pytest.mark.parametrize("env", [{"LETSBE_REPLICAS": "0"}, {"LETSBE_REPLICAS": "9"}, {"LETSBE_NATS_CLUSTER": "2"}])
def test_bad_scale_settings_are_refused(env):
    with pytest.raises(ValueError):
        scale(env)


def test_tenant_agents_do_not_take_the_scale_settings_for_typos():
    assert {"LETSBE_REPLICAS", "LETSBE_NATS_CLUSTER"} <= TOOLING_VARIABLES
