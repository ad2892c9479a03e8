"""Off-site copies of a tenant's backups: the hub issues the target (a bucket prefix and the tenant's own key), step 8
renders it into rclone's config, and the real letsbe-backup copies off-site with the real rclone to an S3-compatible
server (moto's), encrypted: the bucket holds the tenant's files under its prefix only, names and contents unreadable
without its key, and the status the tenant reports names the off-site copy."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
from collections.abc import Iterator
from typing import Any

import asyncssh
import boto3
import pytest
from moto.server import ThreadedMotoServer

from letsbe_contracts.events import BackupStatus, RemoteSyncStatus, TenantTaskReportedV1
from letsbe_fakes.ssh_target import SshTarget
from letsbe_platform.testing import free_port
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs.handlers import tenant_tasks
from letsbe_provisioner.jobs.hub import HubClient
from letsbe_provisioner.jobs.secrets import SecretBox
from letsbe_provisioner.jobs.service import Pipeline

from ..conftest import HUB_TOKEN, dns_ready, staged_events, task_delivery
from .test_server_tasks import request

BUCKET = "letsbe-tenant-backups"
DUMP = "-- a database dump --\n"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # This machine sets AWS_CA_BUNDLE for its own tools; a tenant server does not, and rclone's S3 client refuses to
    # start with it (its HTTP transport is not the SDK's). The target's sessions inherit this process's environment.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
async def pipeline(settings: ProvisionerSettings, sessions: Any, hub: Any, key_file: Any) -> Any:
    assert settings.secrets_key is not None
    client = HubClient(hub.url, HUB_TOKEN, timeout=5)
    yield Pipeline(
        settings, sessions, client, SecretBox(settings.secrets_key.get_secret_value()),
        asyncssh.read_private_key(str(key_file)),
    )  # fmt: skip
    await client.aclose()


async def test_the_backup_is_copied_off_site_encrypted_under_the_tenants_prefix(
    pipeline: Pipeline, target: SshTarget, hub: Any, engine: Any, s3: str
) -> None:
    hub.offsite = {"endpoint": s3, "region": "us-east-1", "bucket": BUCKET}
    hub.offsite |= {"access_key_id": "AKIDLETSBE", "secret_access_key": "s3cr3t"}
    event = dns_ready(target, tools=("nextcloud",))
    await pipeline.on_dns_ready(event)
    tenant_id = event.order.order_id
    conf = target.path("/etc/letsbe/rclone.conf")
    assert conf.stat().st_mode & 0o777 == 0o600
    assert target.path("/etc/letsbe/backup-remote").read_text() == "letsbe-offsite:\n"
    target.output("docker", DUMP)
    (target.bin / "rclone").unlink()  # the real rclone from here on

    task = request(tenant_id, "final-backup")
    await tenant_tasks(pipeline).on_requested(task, task_delivery(task))
    [report] = [e for _, e in await staged_events(engine) if isinstance(e, TenantTaskReportedV1)]
    assert report.status == "SUCCEEDED", (report.detail, report.result)
    assert isinstance(report.result, BackupStatus) and report.result.remote_sync.status == "success", report.result

    keys = [o["Key"] for o in boto3.client(
        "s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    ).list_objects_v2(Bucket=BUCKET)["Contents"]]  # fmt: skip
    assert keys and all(k.startswith(f"tenants/{tenant_id}/") for k in keys)
    assert not any("nextcloud" in k or "final" in k for k in keys), "names are encrypted with the tenant's key"

    # With the tenant's key (its rendered config) the copy reads back: the dump round-trips.
    rclone = ["rclone", "--config", str(conf)]
    listing = await asyncio.to_thread(
        subprocess.run, [*rclone, "lsf", "-R", "letsbe-offsite:"], capture_output=True, text=True, check=True
    )
    assert f"final/{task.job_id}/nextcloud.postgres.gz" in listing.stdout.split()
    path = f"letsbe-offsite:final/{task.job_id}/nextcloud.postgres.gz"
    copied = await asyncio.to_thread(subprocess.run, [*rclone, "cat", path], capture_output=True, check=True)
    assert gzip.decompress(copied.stdout).decode() == DUMP


async def test_without_off_site_storage_the_backup_says_its_copy_was_skipped(
    pipeline: Pipeline, target: SshTarget, engine: Any
) -> None:
    event = dns_ready(target, tools=("nextcloud",))
    await pipeline.on_dns_ready(event)
    assert not target.path("/etc/letsbe/rclone.conf").exists()
    target.output("docker", DUMP)
    again = request(event.order.order_id, "final-backup")
    await tenant_tasks(pipeline).on_requested(again, task_delivery(again))
    [report] = [e for _, e in await staged_events(engine) if isinstance(e, TenantTaskReportedV1)]
    assert report.status == "SUCCEEDED" and isinstance(report.result, BackupStatus)
    assert report.result.remote_sync == RemoteSyncStatus(status="skipped")
