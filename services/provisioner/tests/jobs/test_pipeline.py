"""The pipeline against a real SSH server on loopback (recording stand-ins for system commands), real Postgres."""

from __future__ import annotations

import asyncio
import datetime as dt
import tomllib
import uuid
from typing import Any

import asyncpg
import asyncssh
import pytest
from sqlalchemy import select

from letsbe_contracts import (
    FailureStage,
    OrderFailedV1,
    ProvisionedV1,
    ProvisioningLogV1,
    ProvisioningStepV1,
    StepStatus,
)
from letsbe_contracts.events import MailReadyV1, TenantAgentRegisteredV1
from letsbe_fakes.ssh_target import SshTarget
from letsbe_fakes.tls_endpoint import self_signed
from letsbe_platform.bus import Bus
from letsbe_platform.testing import eventually
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs.hub import HubClient
from letsbe_provisioner.jobs.models import Job, JobStep
from letsbe_provisioner.jobs.secrets import SecretBox, ensure_secrets
from letsbe_provisioner.jobs.service import Pipeline
from letsbe_provisioner.rendering.plan import dkim_public_key
from letsbe_provisioner.steps import STEPS

from ..conftest import HUB_TOKEN, dns_ready, staged_events


@pytest.fixture
async def pipeline(settings: ProvisionerSettings, sessions: Any, hub: Any, key_file: Any) -> Any:
    assert settings.secrets_key is not None
    client = HubClient(hub.url, HUB_TOKEN, timeout=5)
    p = Pipeline(
        settings,
        sessions,
        client,
        SecretBox(settings.secrets_key.get_secret_value()),
        asyncssh.read_private_key(str(key_file)),
    )
    yield p
    await client.aclose()


def of(events: list[tuple[Any, Any]], cls: type) -> list[Any]:
    return [e for _, e in events if isinstance(e, cls)]


async def steps_of(sessions: Any, order_id: uuid.UUID) -> dict[int, JobStep]:
    async with sessions() as s:
        job = (await s.execute(select(Job).where(Job.order_id == order_id))).scalar_one()
        rows = (await s.execute(select(JobStep).where(JobStep.job_id == job.id))).scalars()
        return {r.number: r for r in rows}


def commands(target: SshTarget) -> list[str]:
    return [" ".join(c) for c in target.calls() if c[0] != "sudo"]


async def test_order_runs_ten_steps_in_order_streams_logs_and_is_provisioned_once(
    pipeline: Pipeline, target: SshTarget, engine: Any, sessions: Any, hub: Any
) -> None:
    event = dns_ready(target)
    await pipeline.on_dns_ready(event)

    events = await staged_events(engine)
    step_events = of(events, ProvisioningStepV1)
    assert [(e.step, e.status) for e in step_events] == [
        (s.number, status) for s in STEPS for status in (StepStatus.RUNNING, StepStatus.SUCCEEDED)
    ]
    assert [e.name for e in step_events[::2]] == [s.name for s in STEPS]
    logs = of(events, ProvisioningLogV1)
    assert [e.seq for e in logs] == list(range(len(logs))), "one gap-free, ordered seq per job"
    # A step's lines come after its RUNNING event and before its SUCCEEDED event in the stream.
    order_in_stream = [
        (e.step, "log") if isinstance(e, ProvisioningLogV1) else (e.step, e.status.value)
        for _, e in events
        if isinstance(e, ProvisioningLogV1 | ProvisioningStepV1)
    ]
    for number in range(1, 11):
        positions = [i for i, item in enumerate(order_in_stream) if item[0] == number]
        assert order_in_stream[positions[0]][1] == "RUNNING" and order_in_stream[positions[-1]][1] == "SUCCEEDED"
    assert any("found Debian 12 with 4 CPUs" in e.line for e in logs)
    provisioned = of(events, ProvisionedV1)
    assert (
        len(provisioned) == 1
        and provisioned[0].order == event.order
        and provisioned[0].tenant_id == event.order.order_id
    )
    assert all(env.correlation_id == str(event.order.order_id) for env, _ in events)

    # What the server went through, in step order.
    cmds = commands(target)
    first = {
        prefix: next(i for i, c in enumerate(cmds) if c.startswith(prefix))
        for prefix in (
            "nproc",
            "apt-get -o DPkg::Lock::Timeout=120 -q update",
            "useradd",
            "ufw --force enable",
            "docker compose version",
            "docker compose --project-directory " + str(target.root) + "/opt/letsbe/nginx",
            "docker compose --project-directory " + str(target.root) + "/opt/letsbe/stacks/nextcloud",
            "docker compose --project-directory " + str(target.root) + "/opt/letsbe/ai",
        )
    }
    assert list(first.values()) == sorted(first.values())
    assert "certbot" not in {c.split()[0] for c in cmds}, "no credential yet: the wildcard is issued later"
    # Files on the "server": secrets 0600 and equal to the ones we keep encrypted; one token per agent.
    app_env = target.path("/opt/letsbe/stacks/nextcloud/app.env")
    assert oct(app_env.stat().st_mode & 0o777) == "0o600"
    async with sessions() as s:
        secrets = await ensure_secrets(s, pipeline.box, event.order.order_id, event.order.tools)
    assert f"POSTGRES_PASSWORD={secrets['nextcloud.db_password']}\n" in app_env.read_text()
    for agent in ("safety-wrapper", "secrets-proxy"):
        token_file = target.path(f"/var/lib/letsbe/{agent}/registration-token")
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert token_file.read_text().strip() in {t["token"] for t in hub.issued}
    assert target.path("/etc/letsbe/tls/fullchain.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    # The hub got each tool's admin login (for the customer's one-time reveal) before provisioned.
    handed = {c["tool"]: c for c in hub.credentials[event.order.order_id]}
    assert set(handed) == {t for t in event.order.tools if t != "portainer"}
    for tool, cred in handed.items():
        assert cred["password"] == secrets[f"{tool}.admin_password"]
    assert handed["nextcloud"]["login"] == "admin" and handed["nextcloud"]["url"].startswith("https://files.")

    # The same dns-ready again (a redelivery): nothing runs, nothing is emitted.
    sessions_before, staged_before = target.sessions, len(events)
    await pipeline.on_dns_ready(event)
    assert target.sessions == sessions_before
    assert len(await staged_events(engine)) == staged_before


async def test_with_stalwart_mail_ready_follows_provisioned_with_the_dkim_key_stalwart_signs_with(
    pipeline: Pipeline, target: SshTarget, engine: Any, sessions: Any
) -> None:
    event = dns_ready(target, tools=("stalwart",))
    await pipeline.on_dns_ready(event)

    events = await staged_events(engine)
    assert [type(e).__name__ for _, e in events][-2:] == ["ProvisionedV1", "MailReadyV1"]
    (ready,) = of(events, MailReadyV1)
    assert (ready.order, ready.server, ready.tenant_id) == (event.order, event.server, event.order.order_id)
    async with sessions() as s:
        secrets = await ensure_secrets(s, pipeline.box, event.order.order_id, event.order.tools)
    # the key kept encrypted here is the one Stalwart got, and its public half is what DNS will publish
    assert ready.dkim_public_key == dkim_public_key(secrets["stalwart.dkim_private_key"])
    config = tomllib.loads(target.path("/opt/letsbe/stacks/stalwart/etc/config.toml").read_text())
    assert config["signature"]["letsbe-rsa"]["selector"] == ready.dkim_selector
    assert dkim_public_key(config["signature"]["letsbe-rsa"]["private-key"]) == ready.dkim_public_key
    assert ["ufw", "allow", "25/tcp", "comment", "stalwart-25"] in target.calls("ufw")


async def test_without_stalwart_no_mail_ready(pipeline: Pipeline, target: SshTarget, engine: Any) -> None:
    await pipeline.on_dns_ready(dns_ready(target))
    events = await staged_events(engine)
    assert of(events, ProvisionedV1) and not of(events, MailReadyV1)


async def test_host_key_mismatch_fails_the_job_and_runs_nothing(
    pipeline: Pipeline, target: SshTarget, engine: Any, sessions: Any
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    event = dns_ready(target, host_key_fingerprint=other)
    await pipeline.on_dns_ready(event)

    assert target.sessions == 0 and target.calls() == []
    failed = of(await staged_events(engine), OrderFailedV1)
    assert len(failed) == 1
    assert failed[0].stage == FailureStage.PROVISIONING and failed[0].step == 1 and failed[0].retryable is False
    assert (
        "host key mismatch" in failed[0].reason and other in failed[0].reason and target.fingerprint in failed[0].reason
    )
    steps = await steps_of(sessions, event.order.order_id)
    assert steps[1].status == StepStatus.FAILED and all(steps[n].status == StepStatus.PENDING for n in range(2, 11))


async def test_known_secrets_are_redacted_from_every_line_that_leaves(
    pipeline: Pipeline, target: SshTarget, engine: Any, sessions: Any, hub: Any
) -> None:
    event = dns_ready(target)
    async with sessions() as s, s.begin():  # the tenant's secrets exist before the job starts
        secrets = await ensure_secrets(s, pipeline.box, event.order.order_id, event.order.tools)
    db_password = secrets["nextcloud.db_password"]
    hub.token_prefix = "rt_known_"
    # A chatty tool prints a password, the Hub's API token and a registration token; then a step fails on one.
    target.output("docker", f"POSTGRES_PASSWORD={db_password}\nauth: Bearer {HUB_TOKEN}\n")
    target.fail("ufw", message=f"ERROR: cannot apply rules (password {db_password})")
    await pipeline.on_dns_ready(event)

    events = await staged_events(engine)
    everything = "\n".join(env.model_dump_json() for env, _ in events)
    assert db_password not in everything and HUB_TOKEN not in everything
    assert any("[redacted]" in e.line for e in of(events, ProvisioningLogV1))
    failed = of(events, OrderFailedV1)[0]
    assert "cannot apply rules (password [redacted])" in failed.reason
    async with sessions() as s:
        rows = (await s.execute(select(JobStep))).scalars().all()
        job = (await s.execute(select(Job))).scalar_one()
    stored = "\n".join(f"{r.output_tail} {r.error}" for r in rows) + str(job.error)
    assert db_password not in stored and HUB_TOKEN not in stored

    # Registration tokens are only known at step 10; they are redacted from then on.
    target.clear("ufw")
    target.output("docker", "")
    target.output("sudo", "")
    await pipeline.on_dns_ready(event)
    token = next(t["token"] for t in hub.issued)
    everything = "\n".join(env.model_dump_json() for env, _ in await staged_events(engine))
    assert token not in everything


async def test_a_transient_fault_is_retried_with_backoff_then_the_job_goes_on(
    pipeline: Pipeline, target: SshTarget, engine: Any, sessions: Any
) -> None:
    target.fail("apt-get", exit_code=100, times=1, message="E: Could not get lock /var/lib/dpkg/lock-frontend")
    event = dns_ready(target)
    await pipeline.on_dns_ready(event)

    events = await staged_events(engine)
    assert len(of(events, ProvisionedV1)) == 1 and of(events, OrderFailedV1) == []
    step2 = [(e.status, e.attempt) for e in of(events, ProvisioningStepV1) if e.step == 2]
    assert step2 == [(StepStatus.RUNNING, 1), (StepStatus.RUNNING, 2), (StepStatus.SUCCEEDED, 2)]
    assert any(
        "[provisioner] attempt 1 failed" in e.line and "retrying" in e.line
        for e in of(events, ProvisioningLogV1)
        if e.step == 2
    )
    assert (await steps_of(sessions, event.order.order_id))[2].attempt == 2


async def test_a_failed_step_fails_the_order_and_a_retry_resumes_at_that_step(
    pipeline: Pipeline, target: SshTarget, engine: Any, sessions: Any
) -> None:
    target.fail("ufw", exit_code=1, message="ERROR: problem running iptables: iptables v1.8.9 (nf_tables)")
    event = dns_ready(target)
    await pipeline.on_dns_ready(event)

    failed = of(await staged_events(engine), OrderFailedV1)
    assert len(failed) == 1
    assert (failed[0].stage, failed[0].step, failed[0].retryable) == (FailureStage.PROVISIONING, 4, True)
    assert "step 4 firewall failed: exit code 1" in failed[0].reason
    assert "problem running iptables" in failed[0].reason, "the stderr tail travels with the failure"
    steps = await steps_of(sessions, event.order.order_id)
    assert [steps[n].status for n in range(1, 11)] == [StepStatus.SUCCEEDED] * 3 + [StepStatus.FAILED] + [
        StepStatus.PENDING
    ] * 6
    assert steps[4].exit_code == 1 and "problem running iptables" in (steps[4].error or "")

    # The operator fixes the server and retries: the Hub re-emits dns-ready (a new event id).
    target.clear("ufw")
    target.clear_calls()
    await pipeline.on_dns_ready(dns_ready(target, order_id=event.order.order_id))
    cmds = commands(target)
    assert not any(c.startswith(("nproc", "timedatectl", "useradd", "passwd")) for c in cmds), "steps 1-3 not re-run"
    assert cmds[0].startswith("apt-get") and any(c == "ufw --force enable" for c in cmds)
    events = await staged_events(engine)
    assert len(of(events, ProvisionedV1)) == 1
    assert [e.step for e in of(events, ProvisioningStepV1) if e.status == StepStatus.SUCCEEDED] == list(range(1, 11))


async def test_without_the_safety_wrapper_registering_step_10_fails_after_the_bounded_wait(
    pipeline: Pipeline, target: SshTarget, engine: Any, hub: Any
) -> None:
    hub.auto_register = False
    pipeline.settings.registration_timeout_seconds = 2  # room for two looks on a loaded machine
    event = dns_ready(target)
    await pipeline.on_dns_ready(event)

    events = await staged_events(engine)
    assert of(events, ProvisionedV1) == []
    failed = of(events, OrderFailedV1)
    assert len(failed) == 1 and failed[0].step == 10 and "did not register" in failed[0].reason
    assert hub.polls >= 2

    # The agent shows up later; a retry re-runs step 10 only (fresh tokens) and finishes once.
    hub.auto_register = True
    target.clear_calls()
    await pipeline.on_dns_ready(event)
    assert len(of(await staged_events(engine), ProvisionedV1)) == 1
    assert len(hub.issued) == 4, "two agents, two runs of step 10"
    assert not any(c.startswith("ufw") for c in commands(target))


async def test_the_wait_for_registration_ends_when_the_hubs_agent_registered_event_arrives(
    pipeline: Pipeline, target: SshTarget, engine: Any, hub: Any, bus: Bus
) -> None:
    """The poll interval is an hour here: only the notification (over NATS, as the hub publishes it) can end the
    wait in this test."""
    hub.auto_register = False
    pipeline.settings.registration_poll_seconds = 3600
    pipeline.settings.registration_timeout_seconds = 7200
    sub = await bus.listen(TenantAgentRegisteredV1, pipeline.on_agent_registered)
    event = dns_ready(target)
    tenant_id = event.order.order_id
    job = asyncio.create_task(pipeline.on_dns_ready(event))
    try:
        async with asyncio.timeout(120):
            # the steps are done and the job found no agent yet: it waits
            await eventually(lambda: hub.polls >= 1, "the job's first look for the agent", timeout=120)
            hub.register(tenant_id)
            registered = TenantAgentRegisteredV1(
                tenant_id=tenant_id, order_id=tenant_id, agent_id=uuid.uuid4(), agent="safety-wrapper"
            )
            await bus.publish(registered, correlation_id=str(tenant_id))
            await job
    finally:
        job.cancel()
        await sub.unsubscribe()
    assert len(of(await staged_events(engine), ProvisionedV1)) == 1
    assert hub.polls == 1, "one look before the event; the event (the hub's, after its commit) is the answer"


async def test_a_lost_registration_event_costs_one_poll_interval_not_the_order(
    pipeline: Pipeline, target: SshTarget, engine: Any, hub: Any
) -> None:
    hub.auto_register = False  # and nobody sends the agent-registered event
    event = dns_ready(target)
    job = asyncio.create_task(pipeline.on_dns_ready(event))
    try:
        async with asyncio.timeout(120):
            await eventually(lambda: hub.polls >= 1, "the job's first look for the agent", timeout=120)
            hub.register(event.order.order_id)
            await job
    finally:
        job.cancel()
    assert len(of(await staged_events(engine), ProvisionedV1)) == 1
    assert hub.polls >= 2


async def test_the_acme_server_and_ca_of_the_settings_reach_the_tenants_certificate_setup(
    provisioner_env: dict[str, str], monkeypatch: Any, sessions: Any, hub: Any, key_file: Any, target: SshTarget
) -> None:
    ca, _ = self_signed("pebble.test", dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    bundle = target.root.parent / "pebble-ca.pem"
    bundle.write_bytes(ca)
    for k, v in provisioner_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LETSBE_PROVISIONER_ACME_DIRECTORY_URL", "https://pebble.test:14000/dir")
    monkeypatch.setenv("LETSBE_PROVISIONER_ACME_CA_BUNDLE_FILE", str(bundle))
    settings = ProvisionerSettings()
    assert settings.secrets_key is not None
    client = HubClient(hub.url, HUB_TOKEN, timeout=5)
    key = asyncssh.read_private_key(str(key_file))
    pipeline = Pipeline(settings, sessions, client, SecretBox(settings.secrets_key.get_secret_value()), key)
    try:
        await pipeline.on_dns_ready(dns_ready(target))
    finally:
        await client.aclose()

    ensure = target.path("/usr/local/sbin/letsbe-tls-ensure").read_text()
    assert "--server https://pebble.test:14000/dir" in ensure
    assert target.path("/etc/letsbe/acme/ca.pem").read_bytes() == ca
    dropin = target.path("/etc/systemd/system/certbot.service.d/50-letsbe-ca.conf").read_text()
    assert "REQUESTS_CA_BUNDLE=/etc/letsbe/acme/ca.pem" in dropin
    assert ["systemctl", "daemon-reload"] in target.calls("systemctl")  # certbot.timer sees the drop-in


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("not a certificate\n", "no PEM certificate")])
def test_an_acme_ca_bundle_that_is_not_a_certificate_stops_the_provisioner_at_start(
    tmp_path: Any, content: str | None, message: str
) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_text(content)
    with pytest.raises(ValueError, match=message):
        ProvisionerSettings(acme_ca_bundle_file=bundle)


async def test_a_run_cut_off_by_a_database_outage_is_resumed_by_the_same_process_at_once(
    settings: ProvisionerSettings,
    sessions: Any,
    hub: Any,
    key_file: Any,
    target: SshTarget,
    engine: Any,
    database_url: str,
    pg_admin_url: str,
) -> None:
    # A lease long enough that waiting for it to run out would fail the test: the process still holds it only
    # because the outage kept it from releasing it.
    assert settings.secrets_key is not None
    client = HubClient(hub.url, HUB_TOKEN, timeout=5)
    pipeline = Pipeline(
        settings.model_copy(update={"lease_seconds": 120.0}),
        sessions,
        client,
        SecretBox(settings.secrets_key.get_secret_value()),
        asyncssh.read_private_key(str(key_file)),
    )
    db = database_url.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(pg_admin_url)
    try:
        target.hold("fallocate")  # step 2 waits for its swap file until the database has gone away
        event = dns_ready(target)
        run = asyncio.create_task(pipeline.on_dns_ready(event))
        await eventually(lambda: target.calls("fallocate"), "step 2 at its swap file", timeout=60)
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", db)
        target.release("fallocate")
        with pytest.raises(Exception):  # noqa: B017 - whichever database error ended the run: the bus retries it
            await asyncio.wait_for(run, 30)
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')

        # The redelivered dns-ready, in the same process: the job resumes now, not when its own lease runs out.
        await asyncio.wait_for(pipeline.on_dns_ready(event), 30)
    finally:
        target.release("fallocate")
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        await admin.close()
        await client.aclose()
    assert len(of(await staged_events(engine), ProvisionedV1)) == 1
    steps = await steps_of(sessions, event.order.order_id)
    assert all(s.status == StepStatus.SUCCEEDED for s in steps.values())
