"""The provisioner as a real process: dns-ready in over NATS, kill -9 mid-step, a new process finishes the job."""

from __future__ import annotations

import signal
from typing import Any

from sqlalchemy import select, text

from letsbe_contracts import ProvisionedV1, ProvisioningStepV1, StepStatus, decode
from letsbe_fakes.ssh_target import SshTarget
from letsbe_platform.bus import Bus
from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import ServiceProcess
from letsbe_platform.testing.stream import stream_envelopes
from letsbe_provisioner.jobs.handlers import DURABLE
from letsbe_provisioner.jobs.models import JobStep

from ..conftest import dns_ready


async def stream(bus: Bus, event_cls: type) -> list[Any]:
    """Every event of a type in the JetStream stream (de-duplicated there), in stream order."""
    return [decode(env) for env in await stream_envelopes(bus, event_cls)]


async def test_a_killed_provisioner_resumes_at_the_interrupted_step_and_reruns_no_finished_step(
    provisioner_env: dict[str, str], processes: list[ServiceProcess], target: SshTarget, bus: Bus, sessions: Any
) -> None:
    target.hang("ufw", 30)  # step 4 will sit in its first ufw call
    first = ServiceProcess("letsbe_provisioner", provisioner_env, port_env="LETSBE_PROVISIONER_PORT").start()
    processes.append(first)
    await first.wait_ready()
    event = dns_ready(target)
    await bus.publish(event, correlation_id=str(event.order.order_id))

    async def step(n: int) -> JobStep | None:
        async with sessions() as s:
            return (await s.execute(select(JobStep).where(JobStep.number == n))).scalar_one_or_none()

    async def mid_step_4() -> bool:
        row = await step(4)
        return row is not None and row.status == StepStatus.RUNNING and bool(target.calls("ufw"))

    await eventually(mid_step_4, "step 4 running", timeout=30)
    target.clear("ufw")
    first.kill(signal.SIGKILL)
    calls_before = len(target.calls())

    second = ServiceProcess("letsbe_provisioner", provisioner_env, port_env="LETSBE_PROVISIONER_PORT").start()
    processes.append(second)
    await second.wait_ready()

    async def provisioned() -> bool:
        return bool(await stream(bus, ProvisionedV1))

    await eventually(provisioned, "provisioned", timeout=45)

    async def settled() -> bool:
        """The dns-ready acknowledged (nothing of it left to run or to come again) and every staged event sent:
        whatever the job published is in the stream now."""
        info = await bus.js.consumer_info(bus.stream, DURABLE)
        async with sessions() as s:
            unsent = await s.scalar(text("SELECT count(*) FROM provisioner.outbox WHERE published_at IS NULL"))
        return info.num_ack_pending == 0 and info.num_pending == 0 and unsent == 0

    await eventually(settled, "the dns-ready handled and its events published", timeout=45)

    assert len(await stream(bus, ProvisionedV1)) == 1
    rows = {n: await step(n) for n in range(1, 11)}
    assert all(r is not None and r.status == StepStatus.SUCCEEDED for r in rows.values())
    assert [rows[n].attempt for n in (1, 2, 3)] == [1, 1, 1], "finished steps were not run again"  # type: ignore[union-attr]
    assert rows[4].attempt == 2  # type: ignore[union-attr]
    after = [c[0] for c in target.calls()[calls_before:]]
    assert not {"nproc", "timedatectl", "fallocate", "useradd", "passwd", "sshd"} & set(after)
    assert "ufw" in after
    succeeded = [e.step for e in await stream(bus, ProvisioningStepV1) if e.status == StepStatus.SUCCEEDED]
    assert sorted(succeeded) == list(range(1, 11)) and len(succeeded) == 10
