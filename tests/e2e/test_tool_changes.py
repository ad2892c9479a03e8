"""Tools added to and removed from a live sandbox tenant, through the hub's API, with the provisioner killed (-9) in
the middle of the add's stack and of the remove's final backup: each ends with exactly one of each effect (one DNS
record created or deleted, the tool's compose file and vhost written once or removed once, one final backup), and
the hub's tool list changes when each job succeeds.

The zone refuses wildcard records, so the tenant has one record per tool subdomain and the DNS phase has work to do.
What runs for real: the hub's job and API, the DNS service against the Cloudflare fake, the provisioner's rendered
scripts over SSH on the sandbox VPS, the Safety Wrapper recreated from the re-rendered files. What does not: the
tools' containers (the sandbox's ``docker`` is a recording stand-in, so the final backup's database dump is empty
and no volume is found to archive); the real-server run of the same scripts is in
services/provisioner/tests/vps/test_steps_on_debian.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from letsbe_platform.bus import Bus
from letsbe_platform.devstack import free_port
from letsbe_platform.runner import SERVICES
from letsbe_platform.testing import eventually
from letsbe_sandbox.plane import FAST_RECOVERY, ControlPlane
from letsbe_sandbox.world import Ports

from .conftest import control_plane
from .test_ai_stack import env_file

DOMAIN = "tools.example.com"


@pytest.fixture
def fast_recovery(monkeypatch):
    for k, v in {
        **FAST_RECOVERY,
        "LETSBE_HUB_LIFECYCLE_POLL_SECONDS": "0.3",
        "LETSBE_HUB_TENANT_TASK_TIMEOUT_SECONDS": "60",
    }.items():
        monkeypatch.setenv(k, v)


@pytest_asyncio.fixture
async def plane(
    fast_recovery, sandbox_root: Path, service_env: dict[str, str], bus: Bus
) -> AsyncIterator[ControlPlane]:
    """The sandbox plane, given time to start on a loaded machine (four services import at once)."""
    cp = control_plane(sandbox_root, Ports(*(free_port() for _ in range(4))), service_env, bus)
    try:
        await cp.start(*(s.name for s in SERVICES), ready_timeout=240)
        yield cp
    finally:
        cp.stop_all()
        cp.world.stop()


async def job_of(plane, client: httpx.AsyncClient, job_id: str) -> dict:
    r = await client.get(f"{plane.hub}/api/v1/admin/lifecycle/jobs/{job_id}", headers=plane.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def until_status(plane, client, job_id: str, status: str, timeout: float = 180) -> dict:
    seen: dict = {}

    async def reached() -> bool:
        seen.update(await job_of(plane, client, job_id))
        assert seen["status"] != "FAILED", seen
        return seen["status"] == status

    try:
        await eventually(reached, f"tool-change job {job_id} {status}", timeout=timeout, every=0.3)
    except AssertionError:
        raise AssertionError(f"job: {seen}\n{plane.logs()}") from None
    return seen


def wrote(job: dict, path: str) -> int:
    return sum(f"wrote {path}" in (h["reason"] or "") for h in job["history"])


@pytest.mark.timeout(900)
async def test_a_tool_added_with_the_provisioner_killed_and_another_removed_change_each_thing_once(plane):
    world = plane.world
    zone = world.cloudflare.add_zone(DOMAIN)
    world.cloudflare.refuse_wildcards(DOMAIN)
    async with httpx.AsyncClient(timeout=30) as client:
        created = await plane.order(client, DOMAIN, ["nextcloud", "ghost"])
        tenant_id = created["id"]
        await plane.pay(client, created["checkout_session_id"])
        await plane.wait_status(client, tenant_id, "FULFILLED", timeout=240)
        vps = world.vps_of_order(tenant_id)

        def records(name: str) -> list[str]:
            """The types of the records at ``name`` (A, and AAAA where the server has IPv6)."""
            return sorted(r["type"] for r in world.cloudflare.records(zone.id) if r["name"] == name)

        per_tool = records(f"blog.{DOMAIN}")
        assert per_tool and len(per_tool) == len(set(per_tool)) and records(f"newsletter.{DOMAIN}") == []

        # --- add listmonk; the provisioner is killed while its stack is being started
        vps.target.hold("docker", " up -d")  # the stack's `docker compose up` runs until the provisioner is killed
        r = await client.post(
            f"{plane.hub}/api/v1/admin/tenants/{tenant_id}/tools", json={"tool": "listmonk"}, headers=plane.headers
        )
        assert r.status_code == 202, r.text
        add_id = r.json()["job_id"]
        compose = vps.path("/opt/letsbe/stacks/listmonk/docker-compose.yml")

        async def stack_being_started() -> bool:
            # Its `docker compose up` has begun (and hangs): every file of the stack is written by then. The compose
            # file alone is not enough: the files after it (the vhost) may not be written yet when it appears.
            ups = [a for a in vps.target.calls("docker") if "compose" in a and "listmonk" in a and "up" in a]
            return bool(ups) and (await job_of(plane, client, add_id))["status"] == "STACK"

        await eventually(stack_being_started, "the listmonk stack being started", timeout=180, every=0.1)
        assert (await plane.get_order(client, tenant_id))["tools"] == ["nextcloud", "ghost"]
        await plane.restart("provisioner")  # SIGKILL, then a new process: JetStream redelivers the request
        vps.target.release("docker")

        added = await until_status(plane, client, add_id, "SUCCEEDED")
        assert [h["to_status"] for h in added["history"]] == ["REQUESTED", "DNS", "STACK", "SUCCEEDED"]
        assert (await plane.get_order(client, tenant_id))["tools"] == ["nextcloud", "ghost", "listmonk"]
        assert records(f"newsletter.{DOMAIN}") == per_tool  # one record of each type, as every tool has
        # The run after the kill found the compose file and vhost the killed run wrote: it wrote neither again.
        vhost = vps.path("/opt/letsbe/nginx/conf.d/newsletter.conf")
        assert compose.exists() and vhost.exists()
        assert wrote(added, "/opt/letsbe/stacks/listmonk/docker-compose.yml") == 0
        assert wrote(added, "/opt/letsbe/nginx/conf.d/newsletter.conf") == 0
        assert vps.path("/opt/letsbe/stacks/listmonk/backup.conf").exists()  # the nightly backups include it
        assert "listmonk" in env_file(vps.path("/opt/letsbe/ai/safety-wrapper.env"))["LETSBE_SW_TOOL_URLS"]
        ups = [a for a in vps.target.calls("docker") if "compose" in a and "listmonk" in a and "up" in a]
        assert len(ups) >= 1  # `up -d` again after the kill is a no-op for a running stack

        # --- remove ghost: a final backup first, then its stack, vhost and record; the provisioner is killed while
        # the final backup dumps ghost's database
        vps.target.hold("docker", "letsbe-ghost-db")  # the dump runs until the provisioner is killed
        dumps_before = len(vps.target.calls("docker", containing="letsbe-ghost-db"))
        r = await client.delete(f"{plane.hub}/api/v1/admin/tenants/{tenant_id}/tools/ghost", headers=plane.headers)
        assert r.status_code == 202, r.text
        remove_id = r.json()["job_id"]

        async def dumping() -> bool:
            dumps = vps.target.calls("docker", containing="letsbe-ghost-db")[dumps_before:]
            return bool(dumps) and (await job_of(plane, client, remove_id))["status"] == "FINAL_BACKUP"

        await eventually(dumping, "ghost's final backup dumping its database", timeout=180, every=0.1)
        await plane.restart("provisioner")
        vps.target.release("docker")
        removed = await until_status(plane, client, remove_id, "SUCCEEDED")
        assert [h["to_status"] for h in removed["history"]] == [
            "REQUESTED", "FINAL_BACKUP", "STACK", "DNS", "SUCCEEDED",
        ]  # fmt: skip
        backup = vps.path(f"/var/backups/letsbe/final/ghost/{removed['job_id']}")
        assert (backup / ".complete").exists() and (backup / "ghost.mysql.gz").exists()
        # One final backup: the run after the kill waited for the killed one's script (the server lock) and kept
        # what it had made, or made it once itself; no half-made copy is left.
        assert [p.name for p in backup.parent.iterdir()] == [backup.name]
        assert (backup / "stack.tar.gz").exists()
        assert not vps.path("/opt/letsbe/stacks/ghost").exists()
        assert not vps.path("/opt/letsbe/nginx/conf.d/blog.conf").exists()
        assert records(f"blog.{DOMAIN}") == [] and records(f"newsletter.{DOMAIN}") == per_tool
        downs = [a for a in vps.target.calls("docker") if "compose" in a and "ghost" in a and "down" in a]
        assert len(downs) == 1
        assert "ghost" not in env_file(vps.path("/opt/letsbe/ai/safety-wrapper.env"))["LETSBE_SW_TOOL_URLS"]
        assert (await plane.get_order(client, tenant_id))["tools"] == ["nextcloud", "listmonk"]

        # Refusals change nothing: the tool is gone already, and one not in the catalog.
        r = await client.delete(f"{plane.hub}/api/v1/admin/tenants/{tenant_id}/tools/ghost", headers=plane.headers)
        assert r.status_code == 409 and r.json()["type"].endswith("tool-absent")
        r = await client.post(
            f"{plane.hub}/api/v1/admin/tenants/{tenant_id}/tools", json={"tool": "bitcoin_miner"}, headers=plane.headers
        )
        assert r.status_code == 422
