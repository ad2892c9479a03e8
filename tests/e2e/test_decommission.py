"""Decommission of a provisioned tenant with the control plane as real processes, the lifecycle worker (in the hub)
killed with SIGKILL twice on the way: while the final backup runs on the tenant's sandbox VPS, and while Hetzner
deletes the server. It still ends with exactly one final backup (taken before the agents stopped), the agents
stopped, one server delete, and the tenant's DNS records gone."""

from __future__ import annotations

import json

import httpx
import pytest

from letsbe_platform.testing import eventually
from letsbe_sandbox.plane import FAST_RECOVERY

from . import test_key_rotation
from .test_key_rotation import heartbeating

DOMAIN = "farewell.example.com"


plane = test_key_rotation.plane  # the plane given time to start on a loaded machine


@pytest.fixture
def fast_recovery(monkeypatch):
    for k, v in {
        **FAST_RECOVERY,
        "LETSBE_HUB_LIFECYCLE_LEASE_SECONDS": "3",  # a killed worker's job is taken over after 3 s
        "LETSBE_HUB_LIFECYCLE_POLL_SECONDS": "0.2",
    }.items():
        monkeypatch.setenv(k, v)


async def kill_hub(plane) -> None:
    """SIGKILL the hub (its lifecycle worker with it) and start it again (patiently: the machine may be loaded)."""
    plane.procs["hub-api"].kill()
    await plane.start("hub-api", ready_timeout=240)


@pytest.mark.timeout(900)
async def test_a_killed_worker_mid_decommission_still_backs_up_once_deletes_once_and_releases_dns(
    fast_recovery, plane
):
    world = plane.world
    async with httpx.AsyncClient(timeout=30) as client:
        created = await plane.order(client, DOMAIN, ["ghost"])
        tenant_id = created["id"]
        await plane.pay(client, created["checkout_session_id"])
        await plane.wait_status(client, tenant_id, "FULFILLED", timeout=240)
        await heartbeating(plane, client, tenant_id)
        vps = world.vps_of_order(tenant_id)
        zone = world.cloudflare.zone(DOMAIN)
        assert world.cloudflare.records(zone.id, name=DOMAIN)
        server_ref = next(iter(world.hetzner.servers))
        before = len(vps.target.calls("docker"))

        def dumps() -> list[int]:  # where in the docker calls since the request the database was dumped
            calls = vps.target.calls("docker")[before:]
            return [i for i, c in enumerate(calls) if c[1:3] == ["exec", "letsbe-ghost-db"]]
        vps.target.output("docker", "-- a database dump --\n")
        vps.target.hold("docker", "exec letsbe-ghost-db")  # the dump runs until the hub has been killed

        r = await client.post(f"{plane.hub}/api/v1/admin/tenants/{tenant_id}/decommission", headers=plane.headers)
        assert r.status_code == 200, r.text
        job_id = r.json()["decommission_job_id"]

        async def job() -> dict:
            got = await client.get(f"{plane.hub}/api/v1/admin/lifecycle/jobs/{job_id}", headers=plane.headers)
            return got.json()

        # 1. The hub dies while the provisioner runs the final backup on the server.
        await eventually(lambda: bool(dumps()), "the final backup's dump", timeout=120, every=0.1)
        assert (await job())["status"] == "FINAL_BACKUP"
        assert vps.agents, "the agents run until the final backup was reported"
        await kill_hub(plane)
        vps.target.release("docker")

        async def in_export_window() -> bool:
            return (await job())["status"] == "EXPORT_WINDOW"

        await eventually(in_export_window, "the backup reported and the agents stopped", timeout=180, every=0.3)
        await eventually(lambda: not vps.agents, "the AI agent and the agents stopped", timeout=30, every=0.2)
        vps.target.clear("docker")

        # 2. The operator ends the export window early; the hub dies while Hetzner deletes the server.
        world.hetzner.hold_actions = True  # the server is being deleted until the hub has been killed
        ended = await client.post(f"{plane.hub}/api/v1/admin/lifecycle/jobs/{job_id}/run-now", headers=plane.headers)
        assert ended.status_code == 200, ended.text
        await eventually(lambda: len(world.hetzner.deleted) == 1, "the Hetzner delete call", timeout=60, every=0.1)
        await kill_hub(plane)
        world.hetzner.hold_actions = False

        async def succeeded() -> bool:
            return (await job())["status"] == "SUCCEEDED"

        await eventually(succeeded, "the decommission finished", timeout=180, every=0.3)
        done = await job()

    steps = [h["to_status"] for h in done["history"]]
    assert steps == ["FINAL_BACKUP", "STOPPING_AGENTS", "EXPORT_WINDOW", "RELEASING_SERVER", "SUCCEEDED"], steps
    # Exactly one final backup: one set kept on the server, one dump of the tool's database.
    finals = [p for p in vps.path("/var/backups/letsbe/final").iterdir()]
    assert len(finals) == 1 and (finals[0] / "ghost.mysql.gz").exists()
    kept = json.loads((finals[0] / "backup-status.json").read_text())
    assert kept["databases"]["ghost"]["status"] == "success"
    assert done["data"]["tasks"]["final-backup"]["result"] == kept
    [dumped] = dumps()
    # The agents were stopped after the backup, once, and no longer run.
    calls = vps.target.calls("docker")[before:]
    stops = [i for i, c in enumerate(calls) if "compose" in c and "stop" in c]
    assert len(stops) == 1 and stops[0] > dumped
    assert calls[stops[0]][-3:] == ["openclaw", "safety-wrapper", "secrets-proxy"]
    # One server delete, and the tenant's DNS records are gone.
    assert [d["id"] for d in world.hetzner.deleted] == [server_ref]
    assert sum(1 for m, _ in world.hetzner.requests if m == "DELETE") == 1
    assert world.cloudflare.records(zone.id, name=DOMAIN) == []
