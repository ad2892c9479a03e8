"""The ten provisioning steps run by the provisioner's pipeline over SSH on a real Debian 12 system (the test VPS).

Everything is real: the pipeline (job rows in Postgres, the Hub's registration tokens, log lines through the
outbox), SSH with the host key pinned, apt (through the VPS's mirror-only proxy), useradd, sshd hardening and
reload, fail2ban, ufw, Docker, pulling images from a registry, compose, nginx, certbot. The server is handed over
as root, like a provider's fresh image; steps 4-10 log in as the provisioning user the pipeline set up in step 3.
The test VPS differs from a provider's VPS in named settings only (``vps_settings_env``); each step says in its output
when one of them changed what it did, and the table in the terminal summary lists it.

Images (built here: Docker Hub and our registry are unreachable): the AI stack's are real (letsbe_testvps.agent_images:
the Safety Wrapper and the Secrets Proxy from this workspace on Debian 12's python3.11, OpenClaw from the pinned npm
release on Node 24, each configured by its Dockerfile's final stage), and PostgreSQL (Debian's); nginx is Debian's
nginx; the tools are stand-ins that answer plain HTTP on the tool's own port (letsbe_testvps.images). The
agents register with the hub stand-in (tenant_hub.py) on the host end of the VPS's link, and the pipeline waits for
that registration. Then, from OpenClaw's own network position on the VPS: a model call with the official OpenAI
client reaches the hub's LLM relay through the Secrets Proxy, a tool call through the Safety Wrapper reaches the
tool, and no tool port, no Docker API and not the hub is reachable, while nginx's position reaches the tools (the
control).

Then the provisioner's parts of the hub's lifecycle jobs run on the live tenant, requested over NATS from the
provisioner as a process, killed (-9) once while ``letsbe-restore`` runs (``lifecycle_jobs``): a migration's
backup, a restore of calcom's PostgreSQL database (rows written before the backup are back after the restore into an
empty database), a decommission's final backup and the stopping of the agents.

What still does not run here: the tools' own applications and their setup scripts (step 9 with ``apps_setup``;
their images cannot be pulled: a restore proves the tool's database, not that its app reads it), the import of the
tools' secrets into the Safety Wrapper's store (step 10, same setting), the real hub (a stand-in of its tenant API
and an OpenAI-compatible fake as its relay), OpenClaw's own agent turn (run against loopback stand-ins in
``rendering/test_openclaw.py``), the wildcard certificate and an off-site backup. OpenClaw's gateway must be healthy
in its rendered container (it was OOM-killed at the seed's 384 MB; the catalog now gives it what the pinned release
was measured to need).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
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
from letsbe_contracts.events import (
    AgentsStopped,
    BackupStatus,
    DecommissionTask,
    ServerOperation,
    TenantTaskReportedV1,
    TenantTaskRequestedV1,
)
from letsbe_fakes import LoopbackServer
from letsbe_platform.bus import Bus
from letsbe_platform.testing import eventually as async_eventually
from letsbe_platform.testing import eventually_blocking
from letsbe_platform.testing.processes import ServiceProcess
from letsbe_provisioner.config import ProvisionerSettings
from letsbe_provisioner.jobs import ssh
from letsbe_provisioner.jobs.hub import HubClient
from letsbe_provisioner.jobs.models import Job, JobStep
from letsbe_provisioner.jobs.secrets import SecretBox, ensure_secrets
from letsbe_provisioner.jobs.service import Pipeline, plan_settings
from letsbe_provisioner.jobs.tools import final_backup_dir
from letsbe_provisioner.rendering.plan import (
    AGENTS,
    AI_IMAGES,
    BACKUP_LOCK,
    STATE_DIR,
    Plan,
    Settings,
    generate_secrets,
)
from letsbe_provisioner.steps import STEPS
from letsbe_testvps import agent_images, images
from letsbe_testvps.vps import Vps

from ..conftest import HUB_TOKEN, staged_events
from .tenant_hub import TenantHub

REPO = Path(__file__).resolve().parents[4]

pytestmark = [pytest.mark.vps, pytest.mark.timeout(1200)]

# A stack without a database, and one with PostgreSQL (a real one: letsbe_testvps.images) whose data the lifecycle
# section backs up and restores.
TOOLS = ("uptime_kuma", "calcom")


def vps_settings_env(vps: Vps) -> dict[str, str]:
    """How the test VPS differs from a provider's VPS, as the provisioner's settings (LETSBE_PROVISIONER_*)."""
    return {
        "LETSBE_PROVISIONER_PREFLIGHT_MIN_CPUS": "1",  # nproc shows the host's 2 CPUs, whatever the tier needs
        "LETSBE_PROVISIONER_VM_SYSCTLS": "false",  # vm.* is host-wide, read-only inside a container
        "LETSBE_PROVISIONER_SWAP_MB": "0",  # no swapon inside a container
        "LETSBE_PROVISIONER_DOCKER_SOURCE": "debian",  # download.docker.com is unreachable; Debian's mirror is not
        "LETSBE_PROVISIONER_REGISTRY_MIRROR": f"http://{vps.registry}",  # Docker Hub names: local stand-ins
        "LETSBE_PROVISIONER_IMAGE_REGISTRY": f"{vps.registry}/letsbe",  # the AI images: built here
        # Their tag: this VPS's name, so that two test runs at once (other checkouts, other code) never pull each
        # other's images from the shared registry storage.
        "LETSBE_PROVISIONER_AGENT_IMAGE_TAG": vps.name,
        "LETSBE_PROVISIONER_INSECURE_REGISTRIES": json.dumps([vps.registry]),
        "LETSBE_PROVISIONER_CONTROL_PLANE_IPS": json.dumps([vps.host_ip]),  # never banned by fail2ban
        "LETSBE_PROVISIONER_APPS_SETUP": "false",  # the apps only sleep: nothing to set up inside them
    }


@pytest.fixture
def hub(test_vps: Vps) -> Iterator[TenantHub]:
    """The hub stand-in where the VPS reaches it, on the host end of its link: the provisioner calls it from here,
    the agents in the VPS's containers register with it and send model calls to its LLM relay."""
    standin = TenantHub(HUB_TOKEN)
    with LoopbackServer(standin.app, host=test_vps.host_ip) as srv:
        standin.url = srv.url  # type: ignore[attr-defined]
        yield standin


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
        # The real agents start, register with the hub and only then is the tenant provisioned.
        "LETSBE_PROVISIONER_REGISTRATION_TIMEOUT_SECONDS": "180",
        "LETSBE_PROVISIONER_REGISTRATION_POLL_SECONDS": "0.5",
        **vps_settings_env(test_vps),
    }


def table(steps: dict[int, JobStep], lines: dict[int, list[str]], pushed: list[str], timings: list[str]) -> str:
    out = [f"{'step':<16} {'status':<10} {'seconds':>7}  skipped / changed by a setting"]
    for s in STEPS:
        row = steps[s.number]
        secs = (row.finished_at - row.started_at).total_seconds() if row.finished_at and row.started_at else 0.0
        notes = [line for line in lines.get(s.number, []) if "(setting " in line] or ["-"]
        out.append(f"{s.number:>2} {s.name:<13} {row.status.lower():<10} {secs:>7.1f}  {notes[0]}")
        out += [f"{'':<36}  {n}" for n in notes[1:]]
    out.append("locally built images (pulled from the VPS's registry): " + ", ".join(pushed))
    out += timings
    out.append(
        "not real: the tools' applications and their setup scripts (stand-ins listen on the tools' ports), the hub "
        "(a stand-in of its tenant API; its LLM relay is an OpenAI-compatible fake), the wildcard certificate (step 7 "
        "puts the self-signed stand-in in place), backups' off-site copy"
    )
    return "\n".join(out)


def plan_of(settings: ProvisionerSettings, server: ServerTarget, key: asyncssh.SSHKey) -> Settings:
    """The rendering settings the pipeline uses for this server (Pipeline's job: hub URL, image tag, plan_settings)."""
    return Settings(hub_url=settings.hub_url, agent_image_tag=settings.agent_image_tag,
                    **plan_settings(settings, server, key))  # fmt: skip


def wanted_images(plan: Plan, settings: ProvisionerSettings) -> dict[str, images.Image]:
    """Every image the rendered compose files name: the AI stack's real images, a real PostgreSQL, stand-ins for the
    rest (a tool's listens on the tool's own port)."""
    ports = {st.tool.image: st.tool.container_port for st in plan.stacks}
    ai = {f"{settings.image_registry}/{name}": name for name in AI_IMAGES}
    wanted = {}
    for name in images.compose_images(plan.files()):
        repo = name.rsplit(":", 1)[0]
        if repo in ai:
            agent = ai[repo]
            wanted[name] = (
                agent_images.openclaw_image(REPO) if agent == "openclaw" else agent_images.agent_image(REPO, agent)
            )
        elif repo == "postgres":
            wanted[name] = agent_images.postgres_image()
        else:
            wanted[name] = images.standin(name, ports.get(name))
    return wanted


def eventually(check: Callable[[], Any], what: str, timeout: float = 120, every: float = 0.5) -> Any:
    return eventually_blocking(check, what, timeout=timeout, every=every)  # a VPS answers in seconds, not ms


def in_netns(vps: Vps, container: str, script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``script`` with this test's Python (and its packages: the OpenAI client) in the network namespace of
    ``container`` on the VPS: what a process in that container can reach, this reaches."""
    pid = vps.container_pid(container)
    done = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", script, *args],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


PROBE = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    host, port = target
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except OSError as exc:
        return type(exc).__name__
targets = [tuple(t) for t in json.loads(sys.argv[1])]
with ThreadPoolExecutor(32) as pool:
    print(json.dumps({f"{h}:{p}": r for (h, p), r in zip(targets, pool.map(probe, targets))}))
"""


def probe(vps: Vps, container: str, targets: list[tuple[str, int]]) -> dict[str, str]:
    """TCP connect from ``container``'s network position to each (host, port): "open" or why not."""
    return json.loads(in_netns(vps, container, PROBE, json.dumps(targets)))


MODEL_CALL = """
import os, sys, openai
llm = openai.OpenAI(base_url=sys.argv[1], max_retries=0, timeout=60)
answer = llm.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ping"}])
print(answer.choices[0].message.content)
"""


def docker(vps: Vps, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
    done = subprocess.run(["nsenter", "-t", str(vps.leader_pid), "-a", "docker", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    assert done.returncode == 0, f"docker {' '.join(args[:3])}: {done.stderr[-2000:]}"
    return done.stdout


def container_ips(vps: Vps, container: str) -> dict[str, str]:
    """network name -> the container's address on it"""
    nets = json.loads(docker(vps, "inspect", "-f", "{{json .NetworkSettings.Networks}}", container))
    return {name: n["IPAddress"] for name, n in nets.items()}


def check_ai_stack(vps: Vps, hub: TenantHub, plan: Plan, tenant_id: uuid.UUID) -> None:
    """The AI stack as it runs on the VPS: healthy agents registered with the hub, a model call and a tool call from
    OpenClaw's position, and nothing else reachable from there."""
    for agent in AGENTS:  # the images' own healthchecks (the Dockerfiles'), run by the VPS's dockerd
        eventually(lambda agent=agent: docker(vps, "inspect", "-f", "{{.State.Health.Status}}", f"letsbe-{agent}")
                   .strip() == "healthy", f"letsbe-{agent} to be healthy")  # fmt: skip
    eventually(lambda: "running" in docker(vps, "inspect", "-f", "{{.State.Status}}", "letsbe-openclaw"),
               "letsbe-openclaw to run")  # fmt: skip
    # Both registered themselves with their one-time tokens, and they heartbeat.
    eventually(lambda: {a for t, a in hub.heartbeats if t == tenant_id} == set(AGENTS), "both agents' heartbeats")
    assert {a["agent"] for a in hub.tenants[tenant_id]["agents"]} == set(AGENTS)

    sentinel, tools_token = plan.secrets["ai.sentinel_key"], plan.secrets["ai.tools_token"]
    gate = {c: container_ips(vps, c)["letsbe-ai-gate"] for c in ("letsbe-secrets-proxy", "letsbe-safety-wrapper")}

    # A model call from OpenClaw's position with the official OpenAI client and the sentinel key OpenClaw holds:
    # the Secrets Proxy swaps in the tenant's relay key and the hub's relay answers.
    hub.relay.api_key = hub.llm_keys[-1]  # the relay accepts the key the hub issued for this tenant (step 10)
    before = len(hub.relay.requests)
    url = f"http://{gate['letsbe-secrets-proxy']}:8100/v1"  # secrets-proxy:8100 in OpenClaw's DNS
    answer = in_netns(vps, "letsbe-openclaw", MODEL_CALL, url, env={"OPENAI_API_KEY": sentinel, "PATH": "/usr/bin"})
    assert answer.strip() == "pong from the hub's relay"
    [upstream] = hub.relay.requests[before:]
    assert upstream["headers"]["authorization"] == f"Bearer {hub.llm_keys[-1]}"
    assert sentinel not in upstream["raw"].decode() + json.dumps(upstream["headers"])

    # A tool call the way OpenClaw's skill makes it (curl, the URL and token from OpenClaw's own environment): the
    # Safety Wrapper runs it against the tool on the tool's network, and the tool answers.
    call = {"tool": "uptime_kuma", "action": "status_page.get", "args": {"slug": "main"}, "reason": "a test"}
    skill = (
        'curl -sS -H "Authorization: Bearer $LETSBE_TOOLS_TOKEN" -H "Content-Type: application/json" '
        '--data-binary @- "$LETSBE_SAFETY_WRAPPER_URL/api/v1/tools/execute"'
    )
    out = docker(vps, "exec", "-i", "letsbe-openclaw", "sh", "-c", skill, stdin=json.dumps(call))
    outcome = json.loads(out)
    assert outcome["status"] == "executed", outcome
    assert outcome["result"]["status_code"] == 404  # the stand-in's answer: it has no such page
    tool = plan.stacks[0]
    assert "GET /api/status-page/main" in vps.nsenter("docker", "logs", tool.container).stderr
    assert tools_token not in out

    # The network: from OpenClaw's position, every tool port, the Docker API and the hub are unreachable; the two
    # agents are reachable. The same tool ports are open from nginx's position (host network): the control case.
    vps_addresses = [a.split()[3].split("/")[0] for a in vps.nsenter("ip", "-4", "-o", "addr").stdout.splitlines()]
    tool_ips = [ip for st in plan.stacks for ip in container_ips(vps, st.container).values()]
    tool_ports = sorted({p for st in plan.stacks for p in (st.tool.host_port, st.tool.container_port)})
    blocked = [(a, p) for a in [*vps_addresses, *tool_ips] for p in [*tool_ports, 2375, 2376]]
    hub_host, hub_port = hub.url.removeprefix("http://").split(":")  # type: ignore[attr-defined]
    blocked.append((hub_host, int(hub_port)))
    allowed = [(gate["letsbe-safety-wrapper"], 8200), (gate["letsbe-secrets-proxy"], 8100)]
    seen = probe(vps, "letsbe-openclaw", blocked + allowed)
    assert [t for t, r in seen.items() if r == "open"] == [f"{h}:{p}" for h, p in allowed], seen
    sockets = docker(vps, "exec", "letsbe-openclaw", "sh", "-c", "find / -xdev -name docker.sock; ls /var/run /run")
    assert "docker.sock" not in sockets
    from_nginx = probe(vps, "letsbe-nginx", [("127.0.0.1", st.tool.host_port) for st in plan.stacks])
    assert set(from_nginx.values()) == {"open"}, from_nginx


async def test_the_ten_steps_run_for_real_on_debian_12(
    test_vps: Vps,
    testvps_key: asyncssh.SSHKey,
    testvps_report: list[tuple[str, str]],
    settings: ProvisionerSettings,
    sessions: Any,
    engine: Any,
    hub: Any,
    bus: Bus,
    processes: list[ServiceProcess],
    provisioner_env: dict[str, str],
) -> None:
    assert settings.secrets_key is not None
    # The provisioner as a process for the lifecycle jobs at the end, started now: it is ready by then.
    first = provisioner_process(provisioner_env, processes)
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
    # Every image the rendered compose files name, in the registry the VPS pulls from.
    rendered = Plan(event.order, plan_of(settings, event.server, testvps_key), generate_secrets(TOOLS))
    started = time.monotonic()
    wanted = wanted_images(rendered, settings)
    built = {n: i.built_seconds for n, i in wanted.items() if i.built_seconds}
    pushed = images.publish(wanted)
    timings = [f"images: {time.monotonic() - started:.0f}s to build (built now: "
               f"{', '.join(f'{n} {s:.0f}s' for n, s in built.items()) or 'none, all cached'}) and push"]  # fmt: skip
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
        testvps_report.append(("provisioning steps on the Debian 12 test VPS", table(steps, lines, pushed, timings)))

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

    async with sessions() as s:
        secrets = await ensure_secrets(s, SecretBox(settings.secrets_key.get_secret_value()), job.tenant_id, TOOLS)
    plan = Plan(event.order, plan_of(settings, event.server, testvps_key), secrets)
    started = time.monotonic()
    check_ai_stack(test_vps, hub, plan, job.tenant_id)
    checked = time.monotonic() - started
    testvps_report.append(("the AI stack on the Debian 12 test VPS", (
        f"healthy and registered agents, a model call and a tool call from OpenClaw's position, the network probe: "
        f"{checked:.0f}s after step 10 ({steps[10].finished_at - steps[10].started_at} with pulling the images)"
    )))  # fmt: skip

    # Every step is safe to run again on the real system (a retry, a resumed job): it succeeds and changes no file
    # (step 10 writes what the hub issues afresh for each run: one-time registration tokens and the Secrets Proxy's
    # LLM relay key in its env file).
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
            if step.name == "tls":
                # The Safety Wrapper has registered (step 10), so now step 7 issues the wildcard by DNS-01, and no
                # ACME server is reachable from the test VPS: the one step that cannot succeed again here. It fails
                # at Let's Encrypt, after its files (unchanged) and before touching the certificate in place.
                assert code != 0 and "acme-v02.api.letsencrypt.org" in "\n".join(out), "\n".join(out[-30:])
            else:
                assert code == 0, f"step {step.number} failed when run again:\n" + "\n".join(out[-30:])
            issued = ("registration-token", "/opt/letsbe/ai/secrets-proxy.env")
            wrote = [line for line in out if line.startswith("wrote ") and not line.endswith(issued)]
            assert wrote == [], f"step {step.number} changed files when run again"
    finally:
        conn.close()

    # Last, as the other checks ran meanwhile: OpenClaw's gateway serves on the rendered configuration in its
    # container (its image's healthcheck), inside the rendered mem_limit (compose/ai.yml.j2): an OOM kill fails.
    try:
        eventually(lambda: docker(test_vps, "inspect", "-f", "{{.State.Health.Status}}", "letsbe-openclaw").strip()
                   == "healthy", "letsbe-openclaw's gateway to be healthy", timeout=90)  # fmt: skip
    except AssertionError as exc:
        state = json.loads(docker(test_vps, "inspect", "-f", "{{json .State}}", "letsbe-openclaw"))
        raise AssertionError(f"{exc}: {state}") from None

    # A tool removed from the live tenant and added back, with the scripts the hub's tool-change job has the
    # provisioner run: the final backup archives the tool's real Docker volume, the Safety Wrapper leaves the tool's
    # network before the stack (and its network) goes, and the tool comes back behind its vhost. (The sandbox
    # end-to-end test, tests/e2e/test_tool_changes.py, runs the whole job with the hub and the DNS service.)
    tool = TOOLS[0]
    st = plan.stack(tool)
    without = Plan(event.order.model_copy(update={"tools": TOOLS[1:]}), plan.settings, secrets)
    backup = final_backup_dir(tool, uuid.uuid4())
    started = time.monotonic()
    conn = await ssh.connect(as_user, testvps_key, timeout=10)
    try:

        async def run(script: str) -> list[str]:
            out: list[str] = []

            async def sink(stream: str, line: str) -> None:
                out.append(line)

            code = await ssh.run_script(conn, script, root="", user=as_user.ssh_user, on_line=sink, timeout=300)
            assert code == 0, "\n".join(out[-30:])
            return out

        archived = await run(plan.final_backup_script(tool, backup))
        assert [line for line in archived if line.startswith("archived the volume")], archived
        await run(without.agent_routes_script())
        await run(plan.tool_remove_script(tool, backup))
        assert st.container not in test_vps.nsenter("docker", "ps", "-a", "--format", "{{.Names}}").stdout.split()
        vhost = f"/opt/letsbe/nginx/conf.d/{st.tool.subdomain}.conf"
        assert test_vps.nsenter("test", "-e", vhost, check=False).returncode != 0, "the vhost is still there"
        listing = test_vps.nsenter("tar", "-tzf", f"{backup}/volume-app-data.tar.gz").stdout
        assert listing.strip(), "the volume's archive is empty"

        await run(plan.tool_add_script(tool))
        await run(plan.agent_routes_script(added=tool))
        eventually(lambda: probe(test_vps, "letsbe-nginx", [("127.0.0.1", st.tool.host_port)]) ==
                   {f"127.0.0.1:{st.tool.host_port}": "open"}, f"{tool} back behind nginx", timeout=120)  # fmt: skip
    finally:
        conn.close()
    testvps_report.append(("a tool removed (with its final backup) and added back on the test VPS",
                           f"{time.monotonic() - started:.0f}s"))  # fmt: skip

    started = time.monotonic()
    took = await lifecycle_jobs(test_vps, plan, event, job.tenant_id, engine, bus, first, processes, provisioner_env)
    testvps_report.append(("a migration's backup, a restore and a decommission's tasks on the test VPS, the "
                           "provisioner killed mid-restore", f"{time.monotonic() - started:.0f}s: {took}"))  # fmt: skip


def psql(vps: Vps, container: str, sql: str) -> str:
    """``sql`` in the tool's database in its container, as its superuser (the credentials the container has)."""
    script = 'psql -X -At -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "$0"'
    return docker(vps, "exec", container, "sh", "-c", script, sql).strip()


def provisioner_process(provisioner_env: dict[str, str], processes: list[ServiceProcess]) -> ServiceProcess:
    env = {**provisioner_env, "LETSBE_PROVISIONER_ACK_WAIT_SECONDS": "3"}  # a killed worker's request comes back soon
    proc = ServiceProcess("letsbe_provisioner", env, port_env="LETSBE_PROVISIONER_PORT").start()
    processes.append(proc)
    return proc


async def lifecycle_jobs(
    vps: Vps, plan: Plan, event: DnsReadyV1, tenant_id: uuid.UUID, engine: Any, bus: Bus, first: ServiceProcess,
    processes: list[ServiceProcess], provisioner_env: dict[str, str],
) -> str:  # fmt: skip
    """The provisioner's parts of the hub's lifecycle jobs on the live tenant, requested over NATS from the
    provisioner as a process (the hub's jobs themselves run in the sandbox, tests/e2e/test_decommission.py and
    the hub's lifecycle tests): a migration's consistent backup (the apps stopped, their databases dumped), a restore
    of calcom's database with the provisioner killed (-9) while ``letsbe-restore`` runs on the server, then a
    decommission's final backup and the stopping of the agents. Rows written into calcom's real PostgreSQL before the
    backup are there after the restore into an empty database (a new server's), and each effect happens once: one
    backup set, one restore (its id in the restore log once), one final backup, one report of each. Returns how long
    each part took."""
    took: list[str] = []
    lap = time.monotonic()

    def timed(what: str) -> None:
        nonlocal lap
        took.append(f"{what} {time.monotonic() - lap:.0f}s")
        lap = time.monotonic()

    async def reports(cls: type, key: str, value: uuid.UUID) -> list[Any]:
        return [e for _, e in await staged_events(engine) if isinstance(e, cls) and getattr(e, key) == value]

    async def ask(task: Any) -> TenantTaskRequestedV1:
        request = TenantTaskRequestedV1(request_id=uuid.uuid4(), job_id=uuid.uuid4(), tenant_id=tenant_id, attempt=1,
                                        task=task)  # fmt: skip
        await bus.publish(request, correlation_id=str(tenant_id))
        return request

    async def operation(kind: str, **kw: Any) -> TenantTaskRequestedV1:
        return await ask(ServerOperation(kind=kind, order=event.order, server=event.server, **kw))

    async def reported(request: TenantTaskRequestedV1, timeout: float = 120) -> TenantTaskReportedV1:
        async def done() -> list[Any]:
            return await reports(TenantTaskReportedV1, "request_id", request.request_id)

        await async_eventually(done, f"the {request.task.kind} reported", timeout=timeout, every=0.3)
        [report] = await done()
        assert report.status == "SUCCEEDED", report.detail
        return report

    async def task(kind: str) -> TenantTaskReportedV1:
        return await reported(await ask(DecommissionTask(kind=kind)))

    def running(container: str) -> bool:
        return docker(vps, "inspect", "-f", "{{.State.Running}}", container).strip() == "true"

    calcom = plan.stack("calcom").container
    db = f"{calcom}-db"
    psql(vps, db, "CREATE TABLE bookings (id int PRIMARY KEY, guest text); "
                  "INSERT INTO bookings VALUES (1, 'ada'), (2, 'grace')")  # fmt: skip
    await first.wait_ready()
    timed("waiting for the provisioner process")

    # A migration's backup of the source: the apps stop for good, their databases stay up for the dump.
    backup = await reported(await operation("backup", stop_tools=True))
    day = backup.detail
    assert not running(calcom) and running(db) and running("letsbe-nginx")
    sets = vps.nsenter("ls", f"/var/backups/letsbe/daily/{day}").stdout.split()
    assert "calcom.postgres.gz" in sets, sets
    timed("backup")

    # The new server's database: created empty by the image's first start (as there, the same name and user).
    docker(vps, "exec", db, "sh", "-c", 'psql -X -q -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres '
           '-c "DROP DATABASE \\"$POSTGRES_DB\\" WITH (FORCE)" -c "CREATE DATABASE \\"$POSTGRES_DB\\""')  # fmt: skip
    assert psql(vps, db, "SELECT count(*) FROM pg_tables WHERE tablename = 'bookings'") == "0"

    # The restore waits for the backup lock, held here: the provisioner is killed while letsbe-restore runs.
    release = f"{STATE_DIR}/test-release-backup-lock"
    holder = subprocess.Popen(["nsenter", "-t", str(vps.leader_pid), "-a", "flock", BACKUP_LOCK, "sh", "-c",
                               f"until [ -e {release} ]; do sleep 0.1; done; rm -f {release}"])  # fmt: skip
    try:
        restore = await operation("restore", backup_set=day, tool="calcom")
        eventually(lambda: vps.nsenter("pgrep", "-f", "letsbe-restore", check=False).returncode == 0,
                   "letsbe-restore running on the server", timeout=60, every=0.2)  # fmt: skip
        # The next worker joins first (the request stays with the first one until it dies), then the first is killed.
        await provisioner_process(provisioner_env, processes).wait_ready()
        assert vps.nsenter("pgrep", "-f", "letsbe-restore", check=False).returncode == 0, "the restore ended early"
        first.kill()
    finally:
        vps.nsenter("touch", release)
        holder.wait(timeout=30)
    await reported(restore)
    assert psql(vps, db, "SELECT guest FROM bookings ORDER BY id").split() == ["ada", "grace"]
    log = vps.nsenter("cat", f"{STATE_DIR}/restore/restores.log").stdout.splitlines()
    assert [line.split()[0] for line in log] == [restore.request_id.hex], log
    eventually(lambda: running(calcom), "calcom's app started again after its database was loaded", timeout=30)
    timed("restore with the kill")

    # A decommission: one final backup of the tools' data, then the agents stop; the tools stay (the export window).
    final = await task("final-backup")
    assert isinstance(final.result, BackupStatus), final.result
    assert final.result.databases["calcom"].status == "success", final.result
    finals = vps.nsenter("find", "/var/backups/letsbe/final", "-name", "calcom.postgres.gz").stdout.split()
    assert len(finals) == 1, finals
    timed("final backup")
    stopped = await task("stop-agents")
    assert stopped.result == AgentsStopped(stopped=tuple(AI_IMAGES))
    assert not any(running(f"letsbe-{name}") for name in AI_IMAGES)
    assert running(db) and running("letsbe-nginx")
    timed("stopping the agents")
    return ", ".join(took)
