"""A tenant's certificate path with real clients: the files the provisioner renders for step 7 and step 10 under a
temp ROOT, a real agent runtime that registers with a real hub process and writes its credential where the rendered
compose puts the Safety Wrapper's state, the DNS service as a real process (fake Cloudflare and its authoritative
DNS), and pebble, Let's Encrypt's test ACME server (Debian package), validating DNS-01 against that DNS server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml

from letsbe_agent.runtime import AgentRuntime
from letsbe_agent.settings import AgentSettings
from letsbe_contracts import AutomationMode, OrderSpec, Region, Tier
from letsbe_contracts.enums import AgentKind
from letsbe_fakes import LoopbackServer
from letsbe_fakes.cloudflare import FakeAuthoritativeDns, FakeCloudflare
from letsbe_fakes.docker_engine import DockerEngineFake
from letsbe_fakes.tls_endpoint import self_signed
from letsbe_platform.testing import eventually, free_port
from letsbe_platform.testing.processes import ServiceProcess
from letsbe_provisioner.rendering.plan import AI_DIR, Plan, Settings, generate_secrets

DOMAIN = "example.com"  # the tenant's
OTHER_DOMAIN = "example.net"  # another tenant's zone on the same Cloudflare account
ADMIN = "lbh_acme-test-admin-0123456789abcdef"


def tool(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None)
    if not found:
        raise RuntimeError(f"{name} is missing: `make system-tools` installs it (scripts/ensure-system-tools.sh)")
    return found


@dataclass
class Cloudflare:
    fake: FakeCloudflare
    api_url: str
    dns: FakeAuthoritativeDns
    domain: str = DOMAIN  # the tenant's zone
    other_domain: str = OTHER_DOMAIN  # another tenant's zone on the same account


@pytest.fixture
def cloudflare() -> Iterator[Cloudflare]:
    fake = FakeCloudflare()
    fake.add_zone(DOMAIN)
    fake.add_zone(OTHER_DOMAIN)
    with LoopbackServer(fake.app) as srv, fake.dns_server() as dns:
        yield Cloudflare(fake, srv.url + "/client/v4", dns)


@dataclass
class Pebble:
    directory_url: str
    ca_pem: str  # pebble's own HTTPS certificate, which certbot must trust (REQUESTS_CA_BUNDLE)
    proc: subprocess.Popen[bytes]
    log: Path


@pytest_asyncio.fixture
async def pebble(tmp_path: Path, cloudflare: Cloudflare) -> AsyncIterator[Pebble]:
    """pebble on loopback, resolving DNS-01 challenges at the sandbox's authoritative DNS server."""
    folder = tmp_path / "pebble"
    folder.mkdir()
    cert, key = self_signed("localhost", dt.datetime.now(dt.UTC) + dt.timedelta(days=1), also=("127.0.0.1",))
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    port = free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{free_port()}",
            "certificate": str(folder / "cert.pem"),
            "privateKey": str(folder / "key.pem"),
            "httpPort": free_port(),  # HTTP-01 and TLS-ALPN-01 are not used: DNS-01 only
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (folder / "config.json").write_text(json.dumps(config))
    env = {
        "PATH": os.environ["PATH"],
        "PEBBLE_VA_NOSLEEP": "1",  # validate as soon as asked (pebble sleeps up to 15 s otherwise)
        "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce answers
        "PEBBLE_AUTHZREUSE": "0",  # every order validates again: the renewal goes through the hooks too
    }
    log = folder / "pebble.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [tool("pebble"), "-config", str(folder / "config.json"), "-dnsserver", f"127.0.0.1:{cloudflare.dns.port}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    directory = f"https://127.0.0.1:{port}/dir"
    trust = ssl.create_default_context(cafile=str(folder / "cert.pem"))

    async def serving() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            async with httpx.AsyncClient(verify=trust, timeout=1) as client:
                return (await client.get(directory)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await eventually(serving, timeout=15)
        yield Pebble(directory, cert.decode(), proc, log)
    finally:
        proc.kill()
        proc.wait(10)


@pytest_asyncio.fixture
async def hub(service_env: dict[str, str], processes: list[ServiceProcess]) -> ServiceProcess:
    """hub-api as a real process: registration tokens, agent registration, GET /api/v1/tenant/me."""
    env = service_env | {"LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": ADMIN, "LETSBE_HUB_LOG_JSON": "false"}
    process = ServiceProcess("letsbe_hub", env, port_env="LETSBE_HUB_PORT")
    processes.append(process.start())
    return await process.wait_ready()


@pytest_asyncio.fixture
async def dns_service(
    service_env: dict[str, str], processes: list[ServiceProcess], cloudflare: Cloudflare, hub: ServiceProcess
) -> ServiceProcess:
    """The DNS service as a real process: its ACME route, Cloudflare (fake) and its authoritative DNS."""
    env = service_env | {
        "LETSBE_DNS_CLOUDFLARE_API_TOKEN": cloudflare.fake.token,
        "LETSBE_DNS_CLOUDFLARE_BASE_URL": cloudflare.api_url,
        "LETSBE_DNS_NAMESERVER": "127.0.0.1",
        "LETSBE_DNS_NAMESERVER_PORT": str(cloudflare.dns.port),
        "LETSBE_DNS_VERIFY_INTERVAL_SECONDS": "0.1",
        "LETSBE_DNS_ACME_VISIBLE_TIMEOUT_SECONDS": "10",
        "LETSBE_DNS_HUB_URL": hub.url,
        "LETSBE_DNS_LOG_JSON": "false",
    }
    process = ServiceProcess("letsbe_dns", env, port_env="LETSBE_DNS_PORT")
    processes.append(process.start())
    return await process.wait_ready()


class Tenant:
    """One tenant's rendered files under ``root`` (its "/"), and the runs of what step 7 installed there."""

    def __init__(self, root: Path, plan: Plan):
        self.root = root
        self.plan = plan

    def path(self, server_path: str) -> Path:
        return self.root / server_path.lstrip("/")

    def write_step(self, number: int, tokens: dict[str, str] | None = None) -> None:
        """What step ``number`` puts on the server (its heredocs), written as its script would write them."""
        for f in self.plan.step_files(number, tokens):
            target = self.path(f.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f.content)
            target.chmod(int(f.mode, 8))

    def compose_env(self, service: str) -> dict[str, str]:
        compose = yaml.safe_load(self.path(f"{AI_DIR}/docker-compose.yml").read_text())
        return compose["services"][service]["environment"]

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        # cron's environment: a plain PATH, nothing inherited from the test (no REQUESTS_CA_BUNDLE by accident)
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.root)}
        return subprocess.run(
            list(argv), env=base | (env or {}), capture_output=True, text=True, check=False, timeout=timeout
        )

    def tls_ensure(self) -> subprocess.CompletedProcess:
        return self.run(str(self.path("/usr/local/sbin/letsbe-tls-ensure")))

    def certbot(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """certbot with its directories under root, as letsbe-tls-ensure runs it."""
        dirs = [
            f"--config-dir={self.path('/etc/letsencrypt')}",
            f"--work-dir={self.path('/var/lib/letsencrypt')}",
            f"--logs-dir={self.path('/var/log/letsencrypt')}",
        ]
        return self.run(tool("certbot"), *args, *dirs, env=env)


@pytest.fixture
def tenant(tmp_path: Path, pebble: Pebble, dns_service: ServiceProcess) -> Tenant:
    """Step 7's files rendered for example.com: hooks to the DNS service, certbot to pebble with its CA."""
    root = tmp_path / "vps"
    root.mkdir()
    order = OrderSpec(
        order_id=uuid.uuid4(),
        domain=DOMAIN,
        tier=Tier.BUILD,
        region=Region.EU,
        tools=("uptime_kuma",),
        automation_mode=AutomationMode.AUTO,
        customer_email="owner@example.com",
    )
    settings = Settings(
        hub_url="https://hub.letsbe.invalid",  # the agents' URL is not used here: the test starts the agent
        acme_url=dns_service.url,
        root=str(root),
        acme_directory_url=pebble.directory_url,
        acme_ca_pem=pebble.ca_pem,
    )
    t = Tenant(root, Plan(order, settings, generate_secrets(order.tools)))
    t.write_step(7)
    return t


@dataclass
class Agent:
    runtime: AgentRuntime
    tenant_id: uuid.UUID


class Agents:
    """Safety Wrapper runtimes started in the test's loop from the tenant's rendered compose, stopped at the end."""

    def __init__(self, hub: ServiceProcess, docker_socket: Path):
        self.hub = hub
        self.docker_socket = docker_socket
        self.tasks: list[tuple[AgentRuntime, asyncio.Task[None]]] = []

    async def registration_token(self, domain: str) -> tuple[uuid.UUID, str]:
        tenant_id = uuid.uuid4()
        async with httpx.AsyncClient(base_url=self.hub.url, timeout=10) as client:
            r = await client.post(
                f"/api/v1/admin/tenants/{tenant_id}/registration-tokens",
                json={"domain": domain, "order_id": str(tenant_id), "tier": "build", "region": "eu"},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
        assert r.status_code == 201, r.text
        return tenant_id, r.json()["token"]

    async def start(self, tenant: Tenant) -> Agent:
        """Step 10 as the provisioner runs it (the registration token lands where the rendered compose says), then
        the Safety Wrapper's runtime with the state directory and token file of its rendered compose service."""
        tenant_id, token = await self.registration_token(tenant.plan.order.domain)
        tenant.write_step(10, {"safety-wrapper": token})
        env = tenant.compose_env("safety-wrapper")
        state = tenant.path(env["LETSBE_SW_STATE_DIR"])
        settings = AgentSettings.model_validate(
            {
                "hub_url": self.hub.url,
                "state_dir": state,
                "registration_token_file": tenant.path(env["LETSBE_SW_REGISTRATION_TOKEN_FILE"]),
                "docker_socket": self.docker_socket,
                "backoff_base_seconds": 0.05,
                "backoff_max_seconds": 0.3,
                "long_poll_seconds": 2,
                "backup_status_path": state / "backup-status.json",
                "backup_lock_path": state / "backup.lock",
                "usage_ledger_path": state / "usage.sqlite3",
                "log_json": False,
            }
        )
        runtime = AgentRuntime(settings, kind=AgentKind.SAFETY_WRAPPER, version="1.0.0")
        self.tasks.append((runtime, asyncio.create_task(runtime.run())))
        await asyncio.wait_for(runtime.registered.wait(), 15)
        return Agent(runtime, tenant_id)


@pytest_asyncio.fixture
async def agents(hub: ServiceProcess) -> AsyncIterator[Agents]:
    folder = Path(tempfile.mkdtemp(prefix="dk"))  # unix socket paths must stay short (~100 bytes)
    with DockerEngineFake(folder / "d.sock", health_delay=0.1) as docker:
        a = Agents(hub, docker.socket_path)
        yield a
        for runtime, _ in a.tasks:
            runtime.stop()
        await asyncio.gather(*(t for _, t in a.tasks), return_exceptions=True)
    shutil.rmtree(folder, ignore_errors=True)
