"""A decommission's server tasks on a provisioned tenant, against a real SSH server on loopback (recording stand-ins
for docker), real Postgres: the final backup runs the tenant's own letsbe-backup once per job (a repeat reports
the kept run), a failed dump is reported as a failure with the status, and stopping the agents stops the AI stack's
three (OpenClaw, the Safety Wrapper, the Secrets Proxy) and not the tools."""

from __future__ import annotations

import uuid
from typing import Any

import asyncssh
import pytest

from letsbe_contracts.events import (
    AgentsStopped,
    BackupStatus,
    TaskSkipped,
    TenantTaskReportedV1,
    TenantTaskRequestedV1,
)
from letsbe_fakes.ssh_target import SshTarget
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs.handlers import tenant_tasks
from letsbe_provisioner.jobs.hub import HubClient
from letsbe_provisioner.jobs.secrets import SecretBox
from letsbe_provisioner.jobs.service import Pipeline

from ..conftest import HUB_TOKEN, dns_ready, staged_events, task_delivery

FINAL = "/var/backups/letsbe/final"


@pytest.fixture
async def pipeline(settings: ProvisionerSettings, sessions: Any, hub: Any, key_file: Any) -> Any:
    assert settings.secrets_key is not None
    client = HubClient(hub.url, HUB_TOKEN, timeout=5)
    yield Pipeline(
        settings,
        sessions,
        client,
        SecretBox(settings.secrets_key.get_secret_value()),
        asyncssh.read_private_key(str(key_file)),
    )
    await client.aclose()


@pytest.fixture
async def tenant(pipeline: Pipeline, target: SshTarget) -> uuid.UUID:
    event = dns_ready(target, tools=("nextcloud", "ghost"))
    await pipeline.on_dns_ready(event)
    target.clear_calls()
    target.output("docker", "-- a database dump --\n")
    return event.order.order_id


def request(tenant_id: uuid.UUID, task: str, job_id: uuid.UUID | None = None) -> TenantTaskRequestedV1:
    """An ask of the hub's decommission job ``job_id`` (a new one by default)."""
    return TenantTaskRequestedV1(
        request_id=uuid.uuid4(), job_id=job_id or uuid.uuid4(), tenant_id=tenant_id, attempt=1, task={"kind": task}
    )  # type: ignore[arg-type]


async def reports(engine: Any, job_id: uuid.UUID) -> list[TenantTaskReportedV1]:
    return [e for _, e in await staged_events(engine) if isinstance(e, TenantTaskReportedV1) and e.job_id == job_id]


def dumps(target: SshTarget) -> list[list[str]]:
    return [c for c in target.calls("docker") if c[1] == "exec"]


async def test_the_final_backup_runs_once_per_task_and_a_repeat_reports_the_kept_run(
    pipeline: Pipeline, target: SshTarget, tenant: uuid.UUID, engine: Any
) -> None:
    event = request(tenant, "final-backup")
    await tenant_tasks(pipeline).on_requested(event, task_delivery(event))
    [report] = await reports(engine, event.job_id)
    assert report.status == "SUCCEEDED", report.detail
    assert isinstance(report.result, BackupStatus) and set(report.result.databases) == {"nextcloud", "ghost"}
    assert all(d.status == "success" for d in report.result.databases.values())
    kept = target.path(f"{FINAL}/{event.job_id}")
    assert sorted(p.name for p in kept.glob("*.gz")) == ["ghost.mysql.gz", "nextcloud.postgres.gz"]
    assert BackupStatus.model_validate_json((kept / "backup-status.json").read_text()) == report.result
    assert not target.path("/var/backups/letsbe/daily").exists() or not any(
        target.path("/var/backups/letsbe/daily").iterdir()
    ), "the final set stays out of the nightly rotation"
    assert len(dumps(target)) == 2

    # Asked again (the same job): the kept run is reported (the same result), nothing is dumped again.
    again = request(tenant, "final-backup", event.job_id)
    await tenant_tasks(pipeline).on_requested(again, task_delivery(again))
    assert [r.result for r in await reports(engine, event.job_id)] == [report.result, report.result]
    assert len(dumps(target)) == 2 and len(list(target.path(FINAL).iterdir())) == 1


async def test_a_failed_dump_fails_the_final_backup_with_its_status_and_keeps_nothing(
    pipeline: Pipeline, target: SshTarget, tenant: uuid.UUID, engine: Any
) -> None:
    target.fail("docker", match="letsbe-ghost-db", message="Error response from daemon: container is restarting")
    event = request(tenant, "final-backup")
    await tenant_tasks(pipeline).on_requested(event, task_delivery(event))
    [report] = await reports(engine, event.job_id)
    assert report.status == "FAILED" and "final backup failed" in (report.detail or "")
    assert isinstance(report.result, BackupStatus) and report.result.databases["ghost"].status == "failed"
    assert not target.path(f"{FINAL}/{event.job_id}/backup-status.json").exists()

    target.clear("docker")  # the job's retry takes the backup
    again = request(tenant, "final-backup", event.job_id)
    await tenant_tasks(pipeline).on_requested(again, task_delivery(again))
    assert [r.status for r in await reports(engine, event.job_id)] == ["FAILED", "SUCCEEDED"]


async def test_stopping_the_agents_stops_the_ai_agent_and_both_letsbe_agents(
    pipeline: Pipeline, target: SshTarget, tenant: uuid.UUID, engine: Any
) -> None:
    event = request(tenant, "stop-agents")
    await tenant_tasks(pipeline).on_requested(event, task_delivery(event))
    [report] = await reports(engine, event.job_id)
    stopped = ["openclaw", "safety-wrapper", "secrets-proxy"]
    assert report.status == "SUCCEEDED" and report.result == AgentsStopped(stopped=tuple(stopped))
    stops = [c[c.index("stop") :] for c in target.calls("docker") if "compose" in c]
    assert stops == [["stop", *stopped]]


async def test_a_tenant_never_provisioned_here_has_nothing_to_back_up(pipeline: Pipeline, engine: Any) -> None:
    event = request(uuid.uuid4(), "final-backup")
    await tenant_tasks(pipeline).on_requested(event, task_delivery(event))
    [report] = await reports(engine, event.job_id)
    assert report.status == "SUCCEEDED" and isinstance(report.result, TaskSkipped)
    assert "never provisioned" in report.result.skipped


@pytest.mark.parametrize("kept", ['[1, 2, 3]', '{"last_run": "yesterday"}', "{not json", "", '{"stopped": ["ghost"]}'])
async def test_a_result_the_hub_does_not_know_fails_the_task_and_is_not_passed_on(
    pipeline: Pipeline, target: SshTarget, tenant: uuid.UUID, engine: Any, kept: str
) -> None:
    """The kept ``backup-status.json`` is a file on the tenant's server: whatever it holds is checked, not reported
    as it is (nor does it break the provisioner's consumer)."""
    event = request(tenant, "final-backup")
    await tenant_tasks(pipeline).on_requested(event, task_delivery(event))
    target.path(f"{FINAL}/{event.job_id}/backup-status.json").write_text(kept + "\n")
    again = request(tenant, "final-backup", event.job_id)
    await tenant_tasks(pipeline).on_requested(again, task_delivery(again))
    first, second = await reports(engine, event.job_id)
    assert first.status == "SUCCEEDED" and second.status == "FAILED" and second.result is None
    assert "a result the hub does not know" in (second.detail or "") or "no result" in (second.detail or "")
