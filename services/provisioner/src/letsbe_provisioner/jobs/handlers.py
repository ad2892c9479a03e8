"""dns-ready in: the durable consumer ``provisioner-on-dns-ready`` hands each event to the pipeline.

No inbox claim here on purpose: the job row is the idempotency key. A redelivery must *resume* an unfinished
job (after a crash) or a failed one (an operator's retry), and do nothing for a finished one.
"""

from __future__ import annotations

from letsbe_contracts import DnsReadyV1
from letsbe_contracts.events import (
    TenantKeyRotationRequestedV1,
    TenantServerTaskRequestedV1,
    TenantToolChangeRequestedV1,
)
from letsbe_platform.bus import Delivery, Handler
from letsbe_provisioner.jobs.rotation import Rotator
from letsbe_provisioner.jobs.server_tasks import ServerTasks
from letsbe_provisioner.jobs.service import Pipeline
from letsbe_provisioner.jobs.tools import ToolChanger

DURABLE = "provisioner-on-dns-ready"
# Key rotations (rotate-credential for the tenant's AI-stack keys): the rotation row is the idempotency key, as the
# job row is for dns-ready; a redelivery resumes an unfinished rotation or reports a finished one again.
ROTATION_DURABLE = "provisioner-on-key-rotation-requested"
# A decommission's final backup and stopping the agents: the task id is the idempotency key on the server.
SERVER_TASK_DURABLE = "provisioner-on-server-task-requested"
# Tool changes on a live tenant (the hub's tool-change job): every phase is idempotent on the server, so a redelivery
# runs it to the same end and reports again (same event id).
TOOL_CHANGE_DURABLE = "provisioner-on-tool-change-requested"


def dns_ready_handler(pipeline: Pipeline) -> Handler:
    async def on_dns_ready(event: DnsReadyV1, delivery: Delivery) -> None:
        await pipeline.on_dns_ready(event, delivery)

    return on_dns_ready


def key_rotation_handler(rotator: Rotator) -> Handler:
    async def on_key_rotation_requested(event: TenantKeyRotationRequestedV1, delivery: Delivery) -> None:
        await rotator.on_requested(event, delivery)

    return on_key_rotation_requested


def server_task_handler(tasks: ServerTasks) -> Handler:
    async def on_server_task_requested(event: TenantServerTaskRequestedV1, delivery: Delivery) -> None:
        await tasks.on_requested(event, delivery)

    return on_server_task_requested


def tool_change_handler(changer: ToolChanger) -> Handler:
    async def on_tool_change_requested(event: TenantToolChangeRequestedV1, delivery: Delivery) -> None:
        await changer.on_requested(event, delivery)

    return on_tool_change_requested
