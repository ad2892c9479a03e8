"""``letsbe-hub tenants rotate-key``: one command for the operator, through the hub's API; it waits for the
provisioner's outcome and exits 1 when the rotation failed."""

from __future__ import annotations

import json
import uuid

from letsbe_contracts.events import TenantKeyRotationReportedV1

from .conftest import Cli


async def test_rotate_key_queues_for_the_provisioner_and_reports_a_failure_with_exit_1(cli: Cli, bus):
    tenant = str(uuid.uuid4())
    r = await cli("tenants", "registration-token", tenant, "--domain", "keys.acme.test", "--tier", "lite",
                  "--region", "eu")  # fmt: skip
    assert r.code == 0, r.stderr
    r = await cli("tenants", "rotate-key", tenant, "tools-token", "--idempotency-key", "k1", "--no-wait", "--json")
    assert r.code == 0, r.stderr
    queued = json.loads(r.stdout)
    assert (queued["agent"], queued["status"], queued["created_by"]) == ("provisioner", "QUEUED", "token:ops-jane")

    reason = "the tenant is not provisioned yet (its job is RUNNING); rotate once it is"
    await bus.publish(
        TenantKeyRotationReportedV1(
            command_id=queued["id"], tenant_id=tenant, key="tools-token", status="FAILED", error=reason
        ),
        correlation_id=tenant,
    )
    # The same idempotency key answers the first rotation; the command waits until it has an outcome.
    r = await cli("tenants", "rotate-key", tenant, "tools-token", "--idempotency-key", "k1", "--timeout", "30")
    assert r.code == 1, (r.stdout, r.stderr)
    assert queued["id"] in r.stdout and "FAILED" in r.stdout and reason in r.stdout

    r = await cli("tenants", "rotate-key", tenant, "gateway-token", "--no-wait")
    assert r.code == 3 and "422" in r.stderr
