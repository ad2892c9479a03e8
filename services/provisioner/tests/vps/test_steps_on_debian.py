"""The ten provisioning steps run by the provisioner's pipeline over SSH on a real Debian 12 system (the test VPS).

Everything is real: the pipeline (job rows in Postgres, the Hub's registration tokens, log lines through the
outbox), SSH with the host key pinned, apt (through the VPS's mirror-only proxy), useradd, sshd hardening and
reload, fail2ban, ufw, Docker, pulling images from a registry, compose, nginx, certbot. The server is handed over
as root, like a provider's fresh image; steps 4-10 log in as the provisioning user the pipeline set up in step 3.
The test VPS differs from a provider's VPS in named settings only (``vps_settings_env``); each step says in its output
when one of them changed what it did, and the table in the terminal summary lists it. Container images are
locally built stand-ins (letsbe_testvps.images): nginx is Debian's nginx, the tools and agents only sleep.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from letsbe_contracts import (
    AutomationMode,
    DnsReadyV1,
    DnsRecordRef,
    OrderSpec,
    Provider,
    ProvisionedV1,
    ProvisioningLogV1,
    Region,
    ServerTarget,
    Tier,
)
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.hub import HubClient
from letsbe_provisioner.jobs.models import Job, JobStep
from letsbe_provisioner.jobs.secrets import SecretBox, ensure_secrets
from letsbe_provisioner.jobs.service import Pipeline, plan_settings
from letsbe_provisioner.rendering.plan import AGENTS, Plan, Settings, generate_secrets
from letsbe_provisioner.steps import STEPS
from letsbe_testvps import images
from letsbe_testvps.vps import Vps

from ..conftest import HUB_TOKEN, staged_events

pytestmark = [pytest.mark.vps, pytest.mark.timeout(1200)]

TOOLS = ("uptime_kuma",)  # a stack without a database: a sleeping stand-in cannot pass a database's healthcheck


def vps_settings_env(vps: Vps) -> dict[str, str]:
    """How the test VPS differs from a provider's VPS, as the provisioner's settings (LETSBE_PROVISIONER_*)."""
    return {
        "LETSBE_PROVISIONER_PREFLIGHT_MIN_CPUS": "1",  # nproc shows the host's 2 CPUs, whatever the tier needs
        "LETSBE_PROVISIONER_VM_SYSCTLS": "false",  # vm.* is host-wide, read-only inside a container
        "LETSBE_PROVISIONER_SWAP_MB": "0",  # no swapon inside a container
        "LETSBE_PROVISIONER_DOCKER_SOURCE": "debian",  # download.docker.com is unreachable; Debian's mirror is not
        "LETSBE_PROVISIONER_REGISTRY_MIRROR": f"http://{vps.registry}",  # Docker Hub names: local stand-ins
        "LETSBE_PROVISIONER_IMAGE_REGISTRY": f"{vps.registry}/letsbe",  # the AI images: local stand-ins
        "LETSBE_PROVISIONER_INSECURE_REGISTRIES": json.dumps([vps.registry]),
        "LETSBE_PROVISIONER_CONTROL_PLANE_IPS": json.dumps([vps.host_ip]),  # never banned by fail2ban
        "LETSBE_PROVISIONER_APPS_SETUP": "false",  # the apps only sleep: nothing to set up inside them
    }


@pytest.fixture
def provisioner_env(
    service_env: dict[str, str], hub: Any, test_vps: Vps, testvps_key: asyncssh.SSHKey, tmp_path: Path
) -> dict[str, str]:
    key_file = tmp_path / "id_provisioner"
    key_file.write_bytes(testvps_key.export_private_key())
    key_file.chmod(0o600)
    return {
        **service_env,
        "LETSBE_PROVISIONER_HUB_URL": hub.url,
        "LETSBE_PROVISIONER_HUB_TOKEN": HUB_TOKEN,
        "LETSBE_PROVISIONER_SSH_PRIVATE_KEY_FILE": str(key_file),
        "LETSBE_PROVISIONER_SECRETS_KEY": Fernet.generate_key().decode(),
        "LETSBE_PROVISIONER_STEP_ATTEMPTS": "1",  # a real failure must show, not be retried away
        "LETSBE_PROVISIONER_SSH_CONNECT_TIMEOUT_SECONDS": "10",
        "LETSBE_PROVISIONER_STEP_TIMEOUT_SECONDS": "600",
        "LETSBE_PROVISIONER_LOG_FLUSH_SECONDS": "0.2",
        "LETSBE_PROVISIONER_REGISTRATION_TIMEOUT_SECONDS": "10",
        "LETSBE_PROVISIONER_REGISTRATION_POLL_SECONDS": "0.1",
        **vps_settings_env(test_vps),
    }


def table(steps: dict[int, JobStep], lines: dict[int, list[str]], stand_ins: list[str]) -> str:
    out = [f"{'step':<16} {'status':<10} {'seconds':>7}  skipped / changed by a setting"]
    for s in STEPS:
        row = steps[s.number]
        secs = (row.finished_at - row.started_at).total_seconds() if row.finished_at and row.started_at else 0.0
        notes = [line for line in lines.get(s.number, []) if "(setting " in line] or ["-"]
        out.append(f"{s.number:>2} {s.name:<13} {row.status.lower():<10} {secs:>7.1f}  {notes[0]}")
        out += [f"{'':<36}  {n}" for n in notes[1:]]
    out.append("locally built image stand-ins (pulled from the VPS's registry): " + ", ".join(stand_ins))
    out.append(
        "not real: the applications in the containers (stand-ins), the wildcard certificate (step 7 puts "
        "the self-signed stand-in in place until an agent holds a Hub credential), backups' off-site copy"
    )
    return "\n".join(out)


async def test_the_ten_steps_run_for_real_on_debian_12(
    test_vps: Vps,
    testvps_key: asyncssh.SSHKey,
    testvps_report: list[tuple[str, str]],
    settings: ProvisionerSettings,
    sessions: Any,
    engine: Any,
    hub: Any,
) -> None:
    assert settings.secrets_key is not None
    event = DnsReadyV1(
        order=OrderSpec(
            order_id=uuid.uuid4(), domain="tenant.example.com", tier=Tier.LITE, region=Region.EU, tools=TOOLS,
            automation_mode=AutomationMode.AUTO, customer_email="owner@example.com",
        ),
        server=ServerTarget(
            server_id=uuid.uuid4(), provider=Provider.HETZNER, provider_ref="testvps", ipv4=test_vps.ip,
            ssh_user="root",  # a provider's fresh Debian 12 image: root with our key, nothing else
            host_key_fingerprint=test_vps.host_key_fingerprint,
        ),
        records=(DnsRecordRef(type="A", name="tenant.example.com", content=test_vps.ip),),
    )  # fmt: skip
    # Every image the rendered compose files name gets a stand-in in the registry the VPS pulls from.
    rendered = Plan(
        event.order,
        Settings(hub_url=settings.hub_url, **plan_settings(settings, event.server, testvps_key)),
        generate_secrets(TOOLS),
    )
    stand_ins = images.publish(images.compose_images(rendered.files()))
    client = HubClient(hub.url, HUB_TOKEN, timeout=5)
    pipeline = Pipeline(settings, sessions, client, SecretBox(settings.secrets_key.get_secret_value()), testvps_key)
    try:
        await pipeline.on_dns_ready(event)
    finally:
        await client.aclose()
        events = await staged_events(engine)
        lines: dict[int, list[str]] = {}
        for _, e in events:
            if isinstance(e, ProvisioningLogV1):
                lines.setdefault(e.step, []).append(e.line)
        async with sessions() as s:
            job = (await s.execute(select(Job).where(Job.order_id == event.order.order_id))).scalar_one()
            steps = {r.number: r for r in (await s.execute(select(JobStep).where(JobStep.job_id == job.id))).scalars()}
        testvps_report.append(("provisioning steps on the Debian 12 test VPS", table(steps, lines, stand_ins)))

    failed = [r for r in steps.values() if r.status != "SUCCEEDED"]
    assert not failed, f"step {failed[0].number} {failed[0].name}: {failed[0].error}"
    assert len([e for _, e in events if isinstance(e, ProvisionedV1)]) == 1

    # What the steps left behind is what a real server has.
    with pytest.raises(ssh.ConnectionFailed, match="refused"):
        await ssh.connect(event.server, testvps_key, timeout=10)  # root login refused after step 3
    as_user = event.server.model_copy(update={"ssh_user": settings.provisioning_user})
    (await ssh.connect(as_user, testvps_key, timeout=10)).close()
    assert "Status: active" in test_vps.nsenter("ufw", "status").stdout
    assert test_vps.host_ip in test_vps.nsenter("fail2ban-client", "get", "sshd", "ignoreip").stdout
    assert test_vps.nsenter("systemctl", "is-active", "docker", "fail2ban", "cron").stdout.split() == ["active"] * 3
    running = test_vps.nsenter("docker", "ps", "--format", "{{.Names}}").stdout.split()
    assert {"letsbe-nginx", "letsbe-safety-wrapper", "letsbe-secrets-proxy", "letsbe-openclaw"} <= set(running)
    # nginx (Debian's, in the stand-in image) serves the rendered configuration: plain HTTP redirects to HTTPS.
    assert test_vps.nsenter("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1/").stdout == "301"

    # Every step is safe to run again on the real system (a retry, a resumed job): it succeeds and changes no file
    # (step 10 writes what the hub issues afresh for each run: one-time registration tokens and the Secrets Proxy's
    # LLM relay key in its env file).
    async with sessions() as s:
        secrets = await ensure_secrets(s, SecretBox(settings.secrets_key.get_secret_value()), job.tenant_id, TOOLS)
    plan = Plan(
        event.order, Settings(hub_url=settings.hub_url, **plan_settings(settings, event.server, testvps_key)), secrets
    )
    tokens = {agent: f"rt_{agent}_rerun" for agent in AGENTS}
    llm_key = "lbl_rerun_" + "k" * 32
    conn = await ssh.connect(as_user, testvps_key, timeout=10)
    try:
        for step in STEPS:
            out: list[str] = []

            async def sink(stream: str, line: str, out: list[str] = out) -> None:
                out.append(line)

            script = plan.step_script(step.number, tokens, llm_key)
            code = await ssh.run_script(conn, script, root="", user=as_user.ssh_user, on_line=sink, timeout=600)
            assert code == 0, f"step {step.number} failed when run again:\n" + "\n".join(out[-30:])
            issued = ("registration-token", "/opt/letsbe/ai/secrets-proxy.env")
            wrote = [line for line in out if line.startswith("wrote ") and not line.endswith(issued)]
            assert wrote == [], f"step {step.number} changed files when run again"
    finally:
        conn.close()
