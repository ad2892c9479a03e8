"""Tenant operations of the hub's restore, recovery and migration jobs, against the loopback SSH target (recording
stand-ins for docker and curl), real Postgres: provision the tenant on another server, a consistent backup, a
restore, the check that the tools answer, each reported once. The data round-trip itself:
tests/rendering/test_restore.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncssh
import pytest

from letsbe_contracts.events import TenantTaskReportedV1, TenantTaskRequestedV1
from letsbe_fakes.ssh_target import SshTarget
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs.handlers import tenant_tasks
from letsbe_provisioner.jobs.hub import HubClient
from letsbe_provisioner.jobs.secrets import SecretBox
from letsbe_provisioner.jobs.service import Pipeline

from ..conftest import HUB_TOKEN, dns_ready, server_target, staged_events, task_delivery


@pytest.fixture
async def pipeline(settings: ProvisionerSettings, sessions: Any, hub: Any, key_file: Any) -> Any:
    assert settings.secrets_key is not None
    client = HubClient(hub.url, HUB_TOKEN, timeout=5)
    yield Pipeline(
        settings, sessions, client, SecretBox(settings.secrets_key.get_secret_value()),
        asyncssh.read_private_key(str(key_file)),
    )  # fmt: skip
    await client.aclose()


async def test_provision_elsewhere_backup_restore_and_verify_each_run_and_report_once(
    pipeline: Pipeline, target: SshTarget, engine: Any
) -> None:
    first = dns_ready(target, tools=("nextcloud",))
    await pipeline.on_dns_ready(first)
    ops = tenant_tasks(pipeline)
    new_server = server_target(target)  # another server (the same loopback machine, a new server id)

    def request(kind: str, **kw: Any) -> TenantTaskRequestedV1:
        return TenantTaskRequestedV1(
            request_id=uuid.uuid4(), job_id=uuid.uuid4(), tenant_id=first.order.order_id, attempt=1,
            task={"kind": kind, "order": first.order, "server": new_server, **kw},
        )  # fmt: skip

    useradds = len(target.calls("useradd"))
    provision = request("provision")
    await ops.on_requested(provision, task_delivery(provision))
    assert len(target.calls("useradd")) == 2 * useradds, "the ten steps ran again, on the new server"

    target.output("docker", "c0ffee\n")  # `docker ps -q`: one running app; also what a dump prints here
    backup = request("backup", stop_tools=True)
    await ops.on_requested(backup, task_delivery(backup))
    assert ["docker", "stop", "c0ffee"] in target.calls("docker"), "the apps stop before the dump"
    assert target.path("/var/lib/letsbe/backup/backup-status.json").exists()

    restore = request("restore", backup_set="latest", tool="nextcloud")
    for _ in range(2):  # redelivered after the report: handled once
        await ops.on_requested(restore, task_delivery(restore))
    (restored,) = [e for _, e in await staged_events(engine) if getattr(e, "request_id", None) == restore.request_id]
    assert restored.status == "SUCCEEDED", restored.detail
    log = target.path("/var/lib/letsbe/restore/restores.log").read_text().splitlines()
    assert [line.split()[0] for line in log] == [restore.request_id.hex]

    target.output("curl", "200")
    verify = request("verify")
    await ops.on_requested(verify, task_delivery(verify))
    await ops.on_requested(request("switch-dns"), None)  # the DNS service's: nothing here

    reports = [e for _, e in await staged_events(engine) if isinstance(e, TenantTaskReportedV1)]
    assert [(r.kind, r.status) for r in reports] == [
        ("provision", "SUCCEEDED"), ("backup", "SUCCEEDED"), ("restore", "SUCCEEDED"), ("verify", "SUCCEEDED"),
    ], [r.detail for r in reports]  # fmt: skip
    assert reports[1].detail == datetime.now(UTC).date().isoformat(), "the backup names its set"
    assert "nextcloud answers" in (reports[3].detail or "")

    target.output("curl", "502")
    pipeline.settings.verify_seconds = 1
    broken = request("verify")
    await ops.on_requested(broken, task_delivery(broken))
    (failed,) = [e for _, e in await staged_events(engine) if getattr(e, "request_id", None) == broken.request_id]
    assert failed.status == "FAILED" and "nextcloud does not answer" in (failed.detail or "")
