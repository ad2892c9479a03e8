"""``letsbe-hub lifecycle recover|restore|backups``: the runbook's manual recoveries as commands, through the hub's
API, against a hub with its workers. The tenant side (the provisioner's and the DNS service's operations) is the
stand-in of tests/lifecycle/test_recovery.py: each requested operation reported done once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

from hub_testing.orders import insert_order
from hub_testing.servers import add_servers, staged
from letsbe_contracts.events import TenantTaskReportedV1, TenantTaskRequestedV1
from letsbe_hub.lifecycle import exchange
from letsbe_hub.servers.models import InventoryStatus, Server
from letsbe_hub.tenants.models import Tenant
from letsbe_platform.db import unit_of_work

from .conftest import Cli


async def answer_operations(sessions, stop: asyncio.Event) -> list[str]:
    done: dict[uuid.UUID, str] = {}
    while not stop.is_set():
        for _, req in await staged(sessions, TenantTaskRequestedV1):
            if req.request_id in done:
                continue
            done[req.request_id] = req.task.kind
            now = datetime.now(UTC)
            async with unit_of_work(sessions) as s:
                await exchange.on_report(
                    s,
                    TenantTaskReportedV1(
                        request_id=req.request_id, job_id=req.job_id, tenant_id=req.tenant_id, kind=req.task.kind,
                        attempt=req.attempt, status="SUCCEEDED", started_at=now, finished_at=now,
                    ),
                    now,
                )  # fmt: skip
        await asyncio.sleep(0.05)
    return list(done.values())


async def test_recover_is_one_command_that_follows_the_job_to_the_end(cli: Cli, sessions):
    order_id = await insert_order(sessions, status="FULFILLED", tools=["nextcloud"])
    (lost,) = await add_servers(sessions, 1, status=InventoryStatus.IN_USE, order_id=order_id, tenant_id=order_id)
    (spare,) = await add_servers(sessions, 1)
    async with unit_of_work(sessions) as s:
        s.add(Tenant(id=order_id, order_id=order_id, domain="lost.acme.test", tier="build", region="eu",
                     server_id=lost.id, status="ACTIVE"))  # fmt: skip
    tenant = str(order_id)

    listed = await cli("lifecycle", "backups", tenant)
    assert (listed.code, listed.stdout) == (0, "(empty)\n"), "no backup reported yet"
    refused = await cli("lifecycle", "restore", tenant, "--tool", "odoo")
    assert refused.code == 3 and "409" in refused.stderr and "no tool odoo" in refused.stderr

    stop = asyncio.Event()
    tenant_side = asyncio.create_task(answer_operations(sessions, stop))
    started = time.monotonic()
    ran = await cli("lifecycle", "recover", tenant, "--follow")
    took = time.monotonic() - started
    stop.set()
    assert await tenant_side == ["provision", "restore", "switch-dns"]
    assert ran.code == 0, ran.stderr
    first, *events = ran.stdout.splitlines()
    assert first.endswith("recover  ALLOCATING")
    seen = [json.loads(line) for line in events]
    assert [e.get("to") for e in seen[:-1]] == [
        "ALLOCATING", "PROVISIONING", "RESTORING", "SWITCHING_DNS", "RELEASING_OLD", "SUCCEEDED"
    ]  # fmt: skip
    assert "drained" in seen[-2]["reason"] and "recover took" in seen[-2]["reason"]
    async with sessions() as s:
        assert (await s.get(Tenant, order_id)).server_id == spare.id
        assert (await s.get(Server, lost.id)).status == "DRAINING"  # a Netcup server: wiped before reuse
    print(f"letsbe-hub lifecycle recover --follow: {took:.1f}s in the sandbox")
