"""dns-ready in: the durable consumer ``provisioner-on-dns-ready`` hands each event to the pipeline.

No inbox claim here on purpose: the job row is the idempotency key. A redelivery must *resume* an unfinished
job (after a crash) or a failed one (an operator's retry), and do nothing for a finished one.
"""

from __future__ import annotations

from letsbe_contracts import DnsReadyV1
from letsbe_contracts.events import TenantKeyRotationRequestedV1
from letsbe_platform.bus import Delivery, Handler
from letsbe_provisioner.jobs import operations, server_tasks, tools
from letsbe_provisioner.jobs.rotation import Rotator
from letsbe_provisioner.jobs.service import Pipeline
from letsbe_provisioner.jobs.tasks import TenantTasks

DURABLE = "provisioner-on-dns-ready"
# Key rotations (rotate-credential for the tenant's AI-stack keys): the rotation row is the idempotency key, as the
# job row is for dns-ready; a redelivery resumes an unfinished rotation or reports a finished one again.
ROTATION_DURABLE = "provisioner-on-key-rotation-requested"


def dns_ready_handler(pipeline: Pipeline) -> Handler:
    async def on_dns_ready(event: DnsReadyV1, delivery: Delivery) -> None:
        await pipeline.on_dns_ready(event, delivery)

    return on_dns_ready


def key_rotation_handler(rotator: Rotator) -> Handler:
    async def on_key_rotation_requested(event: TenantKeyRotationRequestedV1, delivery: Delivery) -> None:
        await rotator.on_requested(event, delivery)

    return on_key_rotation_requested


def tenant_tasks(pipeline: Pipeline) -> TenantTasks:
    """The hub's tenant tasks that are the provisioner's, each kind to what does it (the inbox: ``jobs.tasks``)."""
    runners = {
        server_tasks.KINDS: server_tasks.ServerTasks(pipeline).run,
        operations.KINDS: operations.Operations(pipeline).run,
        tools.KINDS: tools.ToolChanger(pipeline).run,
    }
    return TenantTasks(pipeline, {kind: run for kinds, run in runners.items() for kind in kinds})
