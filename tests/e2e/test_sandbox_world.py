"""The sandbox behaves like the real thing. Every order gets its own Hetzner server of the type that fits
its tools, its own VPS of that size and its own agents started from the files the provisioner rendered; a restart
of the whole sandbox continues where it stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from letsbe_contracts import ProvisioningLogV1, decode, load_catalog
from letsbe_platform.bus import Bus
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import free_port
from letsbe_sandbox.plane import ControlPlane
from letsbe_sandbox.world import Ports

from .conftest import control_plane

ALL_TOOLS = [t.name for t in load_catalog().selectable]
# (tier, domain, tools, the cheapest Hetzner type in nbg1 with the CPUs, RAM and disk the tools need)
ORDERS = [
    ("lite", "lite.example.com", ["uptime_kuma"], "cx22"),  # 768 MB, 22 GB
    ("build", "build.example.com", ["nextcloud", "ghost"], "cx32"),  # 1792 MB, 46 GB: cx22 has 40 GB
    ("build", "build2.example.com", ["listmonk"], "cx22"),
    ("scale", "scale.example.com", ["nextcloud", "chatwoot", "odoo", "keycloak", "ghost"], "cx32"),  # 4608 MB, 80 GB
    ("enterprise", "enterprise.example.com", ALL_TOOLS, "cpx31"),  # 7936 MB, 118 GB: cx32 has 80 GB disk
]


async def place(plane: ControlPlane, client: httpx.AsyncClient, tier: str, domain: str, tools: list[str]) -> str:
    created = await plane.order(client, domain, tools, tier=tier)
    await plane.pay(client, created["checkout_session_id"])
    return created["id"]


def agent_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


async def test_five_orders_at_once_one_per_tier_each_on_its_own_overflow_server_and_vps(plane):
    """Every order once failed preflight on its overflow server (the tier's catalog type was smaller than the
    tier's nominal size; the sandbox VPS always said 16 CPUs/64 GB), and concurrent orders shared one VPS whose
    registration-token files overwrote each other."""
    world = plane.world
    async with httpx.AsyncClient(timeout=30) as client:
        ids = await asyncio.gather(*(place(plane, client, t, d, tools) for t, d, tools, _ in ORDERS))
        await asyncio.gather(*(plane.wait_status(client, i, "FULFILLED", timeout=240) for i in ids))
        await asyncio.gather(*(plane.heartbeating(client, i) for i in ids))

    assert world.hetzner.creates == len(ORDERS) and world.hetzner.deleted == []
    roots, credentials = set(), set()
    for order_id, (_, _, _, expected) in zip(ids, ORDERS, strict=True):
        vps = world.vps_of_order(order_id)
        server = world.hetzner.servers[vps.server_id]
        stype = server["server_type"]
        assert stype["name"] == expected, order_id
        # Preflight saw the size of what was ordered.
        lines = [decode(e).line for e in await plane.events(ProvisioningLogV1, order_id)]
        found = f"found Debian 12 with {stype['cores']} CPUs, {int(stype['memory'] * 1024)} MB RAM, {stype['disk']} GB"
        assert any(line.startswith(found) for line in lines), lines[:5]
        # Its own root, agents and files: every path an agent was given lies under its own VPS root.
        roots.add(vps.root)
        assert set(vps.agents) == {"safety-wrapper", "secrets-proxy", "openclaw"}  # openclaw: the gateway stand-in
        for name, proc in vps.agents.items():
            assert proc.poll() is None, name
            if name == "openclaw":
                continue  # no paths, no credential: it only answers the chat relay
            paths = [v for v in agent_environ(proc.pid).values() if v.startswith("/")]
            assert paths and all(p.startswith(str(vps.root) + "/") for p in paths), paths
            credentials.add(vps.path(f"/var/lib/letsbe/{name}/credential.json").read_text())
    assert len(roots) == len(ORDERS) and len(credentials) == 2 * len(ORDERS)


async def test_a_restarted_sandbox_continues_where_it_stopped(
    sandbox_root: Path, service_env: dict[str, str], bus: Bus
):
    """The second start of `make run` gave the VPS a new SSH port and numbered Hetzner's servers from 1000 again
    (unique-key violations in the hub, orders stuck in AWAITING_SERVER)."""
    ports = Ports(*(free_port() for _ in range(4)))
    names = [s.name for s in SERVICES]
    first = control_plane(sandbox_root, ports, service_env, bus)
    try:
        await first.start(*names)
        async with httpx.AsyncClient(timeout=30) as client:
            one = await place(first, client, "lite", "first.example.com", ["uptime_kuma"])
            await first.wait_status(client, one, "FULFILLED", timeout=120)
        port = first.world.ssh_port
        vps = first.world.vps_of_order(one)
        address, fingerprint, server_id = vps.address, vps.target.fingerprint, vps.server_id
    finally:
        first.stop_all()
        first.world.stop()
    logs = first.logs()

    second = control_plane(sandbox_root, ports, service_env, bus)
    try:
        await second.start(*names)
        again = second.world.vps_of_order(one)
        assert (second.world.ssh_port, again.address, again.target.fingerprint) == (port, address, fingerprint)
        async with httpx.AsyncClient(timeout=30) as client:
            two = await place(second, client, "lite", "second.example.com", ["uptime_kuma"])
            await second.wait_status(client, two, "FULFILLED", timeout=120)
            # The first tenant's agents came back with the VPS (as containers do after a reboot) and heartbeat.
            await second.heartbeating(client, one)
            await second.heartbeating(client, two)
        new = second.world.vps_of_order(two)
        assert new.server_id > server_id and new.address != address
        logs += second.logs()
    finally:
        second.stop_all()
        second.world.stop()
    for bad in ("UniqueViolation", "duplicate key"):
        assert bad not in logs
