"""A lifecycle worker killed with SIGKILL in the middle of a provider call: the next worker takes the job over once
the dead one's lease lapses, and the effect still happens exactly once (one snapshot, one server deleted, one
reinstall of a Netcup pool server followed by its preflight)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from hub_testing.servers import HETZNER_TOKEN, servers_settings
from letsbe_fakes import LoopbackServer
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_fakes.netcup import FakeNetcup
from letsbe_fakes.ssh_target import SshTarget
from letsbe_hub.lifecycle import service, state
from letsbe_hub.lifecycle.models import LifecycleJob
from letsbe_hub.lifecycle.worker import JobRunner, build_providers
from letsbe_hub.servers.models import Server
from letsbe_platform.db import unit_of_work
from letsbe_platform.testing import eventually
from letsbe_platform.testing.processes import READY_TIMEOUT

LEASE = 2.0


@pytest.fixture
def slow_hetzner():
    fake = FakeHetzner(HETZNER_TOKEN, action_polls=1)
    fake.action_seconds = 3.0  # every action (create_image, delete_server) runs 3 s: time to kill the worker in it
    with LoopbackServer(fake.app) as srv:
        yield fake, srv.url + "/v1"


def worker_process(database_url: str, hetzner_url: str, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        **{f"LETSBE_HUB_{k.upper()}": v for k, v in extra.items()},
        **os.environ,
        "DATABASE_URL": database_url,
        "LETSBE_HUB_HETZNER_API_URL": hetzner_url,
        "LETSBE_HUB_HETZNER_API_TOKEN": HETZNER_TOKEN,
        "LETSBE_HUB_LIFECYCLE_LEASE_SECONDS": str(LEASE),
        "LETSBE_HUB_LIFECYCLE_POLL_SECONDS": "0.1",
        "LETSBE_HUB_PROVIDER_POLL_SECONDS": "0.05",
        "LETSBE_HUB_LOG_JSON": "false",
    }
    return subprocess.Popen([sys.executable, "-m", "letsbe_hub.lifecycle"], env=env)


async def server_row(sessions, fake: FakeHetzner, provider) -> Server:
    from letsbe_contracts import Region, Tier

    alloc = await provider.allocate_server(Tier.BUILD, Region.EU, key="kill-test")
    async with unit_of_work(sessions) as s:
        row = Server(
            provider="hetzner",
            provider_ref=alloc.provider_ref,
            name=alloc.name,
            tier="build",
            region="eu",
            ipv4=str(alloc.ipv4),
            host_key_fingerprint="SHA256:" + "Q" * 43,
            status="IN_USE",
        )
        s.add(row)
    return row


async def job_of(sessions, job_id) -> LifecycleJob:
    async with sessions() as s:
        return await s.get(LifecycleJob, job_id)


@pytest.mark.parametrize("kind", ["snapshot", "decommission"])
async def test_a_worker_killed_mid_step_leaves_exactly_one_effect(kind, database_url, sessions, slow_hetzner):
    fake, url = slow_hetzner
    settings = servers_settings(
        database_url,
        hetzner_api_url=url,
        hetzner_api_token=HETZNER_TOKEN,
        lifecycle_lease_seconds=LEASE,
        provider_action_timeout_seconds=30,
    )
    runner = JobRunner(sessions, settings, build_providers(settings))
    try:
        server = await server_row(sessions, fake, runner.providers["hetzner"])
        tenant_id = server.id  # any id: the job only needs the server
        now = datetime.now(UTC)
        async with unit_of_work(sessions) as s:
            if kind == "snapshot":
                job, _ = await state.create(
                    s,
                    kind=state.SNAPSHOT,
                    key=service.snapshot_key(tenant_id, now.date()),
                    tenant_id=tenant_id,
                    server_id=server.id,
                    due_at=now,
                    actor="test",
                    data={"day": now.date().isoformat(), "name": service.snapshot_name(tenant_id, now.date())},
                )
            else:
                job, _ = await state.create(
                    s,
                    kind=state.DECOMMISSION,
                    key=service.decommission_key(tenant_id),
                    tenant_id=tenant_id,
                    server_id=server.id,
                    due_at=now - timedelta(seconds=1),  # the export window is over
                    actor="test",
                    status="EXPORT_WINDOW",
                )
        started = fake.images if kind == "snapshot" else fake.deleted

        proc = worker_process(database_url, url)
        try:
            # Its start (imports) comes first: as long as a service's start may take.
            await eventually(lambda: len(started) == 1, "the worker's provider call", timeout=READY_TIMEOUT)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        killed = await job_of(sessions, job.id)
        assert killed.status in ("CREATING", "RELEASING_SERVER") and killed.lease_owner is not None

        # Another worker: nothing to claim while the dead one's lease runs, then it resumes the job.
        async def finished() -> bool:
            await runner.run_once()
            return (await job_of(sessions, job.id)).status == state.SUCCEEDED

        await eventually(finished, "the job finished by the second worker", timeout=30, every=0.2)
        if kind == "snapshot":
            ours = [i for i in fake.images.values() if i["created_from"]["id"] == int(server.provider_ref)]
            assert len(ours) == 1 and ours[0]["status"] == "available"
            assert sum(1 for m, p in fake.requests if m == "POST" and p.endswith("/create_image")) == 1
            done = await job_of(sessions, job.id)
            assert done.data["snapshot_ref"] == str(ours[0]["id"])
        else:
            assert [d["id"] for d in fake.deleted] == [int(server.provider_ref)]
            assert sum(1 for m, p in fake.requests if m == "DELETE") == 1
            async with sessions() as s:
                assert (await s.get(Server, server.id)).status == "RETIRED"
    finally:
        for p in runner.providers.values():
            await p.aclose()


NETCUP_TOKEN = "netcup-offline-refresh-token"


async def test_a_worker_killed_mid_reinstall_leaves_one_reinstall_then_the_preflight_returns_the_server(
    database_url, sessions, slow_hetzner, ssh_target: SshTarget
):
    _, hetzner_url = slow_hetzner
    fake = FakeNetcup(NETCUP_TOKEN, install_seconds=4.0)  # the install runs 4 s: time to kill the worker in it
    fake.add_server(4711, ipv4=ssh_target.host)
    with LoopbackServer(fake.app) as srv:
        netcup = {
            "netcup_api_url": srv.url + "/scp-core",
            "netcup_token_url": srv.url + "/realms/scp/protocol/openid-connect/token",
            "netcup_refresh_token": NETCUP_TOKEN,
        }
        settings = servers_settings(
            database_url, lifecycle_lease_seconds=LEASE, provider_action_timeout_seconds=30, **netcup
        )
        runner = JobRunner(sessions, settings, build_providers(settings))
        try:
            async with unit_of_work(sessions) as s:
                server = Server(
                    provider="netcup", provider_ref="4711", name="v2202512345", tier="build", region="eu",
                    ipv4=ssh_target.host, ssh_port=ssh_target.port, host_key_fingerprint="SHA256:" + "Q" * 43,
                    status="IN_USE",
                )  # fmt: skip
                s.add(server)
                await s.flush()
                job, _ = await state.create(
                    s,
                    kind=state.DECOMMISSION,
                    key=service.decommission_key(server.id),
                    tenant_id=server.id,
                    server_id=server.id,
                    due_at=datetime.now(UTC) - timedelta(seconds=1),  # the backup and the window are behind it
                    actor="test",
                    status="EXPORT_WINDOW",
                    data={"export_until": datetime.now(UTC).isoformat()},
                )
            proc = worker_process(database_url, hetzner_url, provider_poll_seconds="0.05", **netcup)
            try:
                await eventually(lambda: len(fake.installs) == 1, "the worker's reinstall call", timeout=30)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            killed = await job_of(sessions, job.id)
            assert killed.status == "REINSTALLING" and killed.lease_owner is not None

            async def finished() -> bool:
                await runner.run_once()
                return (await job_of(sessions, job.id)).status == state.SUCCEEDED

            await eventually(finished, "the job finished by the second worker", timeout=60, every=0.2)
            assert len(fake.installs) == 1
            assert sum(1 for m, p in fake.requests if m == "POST" and p.endswith("/image")) == 1
            done = await job_of(sessions, job.id)
            assert done.data["reinstall"]["task"] == fake.installs[0]["task"]
            async with sessions() as s:
                back = await s.get(Server, server.id)
            assert back.status == "AVAILABLE" and back.host_key_fingerprint == ssh_target.fingerprint
        finally:
            for p in runner.providers.values():
                await p.aclose()
