"""dns-ready in: the durable consumer ``provisioner-on-dns-ready`` hands each event to the pipeline.

No inbox claim here on purpose: the job row is the idempotency key. A redelivery must *resume* an unfinished
job (after a crash) or a failed one (an operator's retry), and do nothing for a finished one.
"""

from __future__ import annotations

from letsbe_contracts import DnsReadyV1
from letsbe_platform.bus import Delivery, Handler
from letsbe_provisioner.jobs.service import Pipeline

DURABLE = "provisioner-on-dns-ready"


def dns_ready_handler(pipeline: Pipeline) -> Handler:
    async def on_dns_ready(event: DnsReadyV1, delivery: Delivery) -> None:
        await pipeline.on_dns_ready(event, delivery)

    return on_dns_ready
