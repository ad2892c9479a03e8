"""The order path's fault run: every worker on the order's path is killed (-9) once mid-flow and restarted, and the
order still reaches FULFILLED with no duplicate side effect: one Hetzner server, one DNS record set, one email."""

import httpx
import pytest

from letsbe_contracts import ProvisioningStepV1, decode
from letsbe_platform.testing import eventually
from letsbe_sandbox.plane import FAST_RECOVERY


@pytest.fixture
def fast_recovery(monkeypatch):
    for k, v in FAST_RECOVERY.items():
        monkeypatch.setenv(k, v)


async def test_killing_each_worker_mid_flow_still_fulfils_once(fast_recovery, plane):
    world = plane.world
    # Each slow step is held until its worker has been killed and restarted: the kill lands mid-operation.
    world.hetzner.hold_actions = True  # the server is still being created (its action "running")
    world.cloudflare.hold_dns()  # the records are written but not yet on the nameservers
    world.each_vps(lambda vps: vps.target.hold("docker"))  # step 5 is running

    async with httpx.AsyncClient(timeout=30) as client:
        created = await plane.order(client, "faults.example.com", ["nextcloud"])
        order_id = created["id"]
        await plane.pay(client, created["checkout_session_id"])

        # 1. The hub (its allocation worker) dies while Hetzner is still creating the server.
        async def hetzner_creating() -> bool:
            return world.hetzner.creates == 1

        await eventually(hetzner_creating, "the Hetzner create call", timeout=60, every=0.1)
        assert (await plane.get_order(client, order_id))["status"] == "AWAITING_SERVER"
        await plane.restart("hub-api")
        world.hetzner.hold_actions = False

        # 2. The DNS service dies after writing the records, while it waits to see them served.
        async def records_written() -> bool:
            try:
                zone = world.cloudflare.zone("faults.example.com")
            except KeyError:
                return False
            return len(world.cloudflare.records(zone.id)) >= 2

        await eventually(records_written, "the DNS records", timeout=60, every=0.1)
        assert (await plane.get_order(client, order_id))["status"] == "DNS_PENDING"
        await plane.restart("dns")
        world.cloudflare.hold_dns(False)

        # 3. The provisioner dies in the middle of step 5.
        async def step_5_running() -> bool:
            steps = [decode(e) for e in await plane.events(ProvisioningStepV1, order_id)]
            return any(s.step == 5 and s.status == "RUNNING" for s in steps)

        await eventually(step_5_running, "step 5 to start", timeout=60, every=0.1)
        await plane.restart("provisioner")
        world.vps_of_order(order_id).target.release("docker")

        order = await plane.wait_status(client, order_id, "FULFILLED", timeout=120)

        assert world.hetzner.creates == 1 and world.hetzner.deleted == []
        zone = world.cloudflare.zone("faults.example.com")
        records = [(r["type"], r["name"]) for r in world.cloudflare.records(zone.id)]
        assert sorted(records) == sorted(set(records)) and len(records) == 4  # A+AAAA, root+wildcard, once each

        # A sent welcome email is never sent again (one row per order, "sent" is final): then count the mail.
        async def welcome_sent() -> bool:
            return ((await plane.get_order(client, order_id)).get("welcome_email") or {}).get("state") == "sent"

        await eventually(welcome_sent, "the welcome email sent", timeout=30, every=0.1)
        assert len(world.smtp.messages) == 1

        # The steps that had finished before the kill were not run again.
        steps = [decode(e) for e in await plane.events(ProvisioningStepV1, order_id)]
        for n in range(1, 5):
            assert [s.status for s in steps if s.step == n].count("SUCCEEDED") == 1, n
        assert order["status"] == "FULFILLED"
