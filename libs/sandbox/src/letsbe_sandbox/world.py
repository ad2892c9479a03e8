"""The stand-in world of sandbox mode, and the settings that point every service at it.

Everything listens on 127.0.0.1. Keys, tokens and the "VPS" live under one folder (``.data/sandbox`` for
``make run``) so a restart finds the same world: the hub pinned the VPS's host key, the agents hold credentials.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from cryptography.fernet import Fernet

from letsbe_fakes import LoopbackServer
from letsbe_fakes.cloudflare import FakeCloudflare
from letsbe_fakes.docker_engine import DockerEngineFake
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_fakes.netcup import FakeNetcup
from letsbe_fakes.openai import FakeOpenAI
from letsbe_fakes.push_gateway import FakePushGateway
from letsbe_fakes.slack import FakeSlackWebhook
from letsbe_fakes.smtp import FakeSmtp
from letsbe_fakes.ssh_target import SshTarget
from letsbe_fakes.stripe import StripeFake
from letsbe_fakes.tls_endpoint import FakeTlsEndpoint
from letsbe_fakes.webhook import WebhookReceiver

# Heartbeats every 5 s instead of 60 s, so "stop an agent, see the offline alert" takes seconds, not minutes.
HEARTBEAT_SECONDS = 5


@dataclass(frozen=True)
class Ports:
    hub: int = 3847
    provisioner: int = 3850
    dns: int = 3851
    monitor: int = 3852
    safety_wrapper: int = 8200
    secrets_proxy: int = 8100


@dataclass(frozen=True)
class Material:
    """Credentials of the sandbox world, generated once and kept (0600) under the sandbox folder."""

    admin_token: str
    provisioner_secrets_key: str
    tenant_secrets_key: str
    tools_token: str
    cloudflare_token: str
    hetzner_token: str
    netcup_refresh_token: str
    stripe_key: str
    stripe_webhook_secret: str
    monitor_webhook_secret: str
    push_token: str
    llm_sentinel_key: str
    llm_upstream_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> Material:
        """Keeps what an earlier run generated; fills in anything a newer version needs."""
        fresh = {
            "admin_token": "lbh_sandbox_" + secrets.token_urlsafe(24),
            "provisioner_secrets_key": Fernet.generate_key().decode(),
            "tenant_secrets_key": Fernet.generate_key().decode(),
            "tools_token": secrets.token_urlsafe(24),
            "cloudflare_token": "cf-sandbox-" + secrets.token_urlsafe(16),
            "hetzner_token": "hz-sandbox-" + secrets.token_urlsafe(16),
            "netcup_refresh_token": "nc-sandbox-" + secrets.token_urlsafe(16),
            "stripe_key": "sk_test_sandbox_" + secrets.token_urlsafe(16),
            "stripe_webhook_secret": "whsec_sandbox_" + secrets.token_urlsafe(16),
            "monitor_webhook_secret": secrets.token_urlsafe(24),
            "push_token": secrets.token_urlsafe(24),
            "llm_sentinel_key": "lb-sentinel-" + secrets.token_urlsafe(16),
            "llm_upstream_key": "sk-sandbox-upstream-" + secrets.token_urlsafe(24),
        }
        stored = json.loads(path.read_text()) if path.exists() else {}
        values = {k: stored.get(k, v) for k, v in fresh.items()}
        if values != stored:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2))
            path.chmod(0o600)
        return cls(**values)


def _ssh_key(path: Path) -> asyncssh.SSHKey:
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.export_private_key("openssh"))
    path.chmod(0o600)
    return key


class Sandbox:
    """Starts the fakes (in threads of this process) and says how each service reaches them."""

    def __init__(self, root: Path, ports: Ports | None = None, *, zones: tuple[str, ...] = ()):
        self.root = root.resolve()
        self.ports = ports or Ports()
        self.zones = zones
        self.material = Material.load_or_create(self.root / "secrets.json")
        self._servers: list[LoopbackServer] = []

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.hub}"

    def start(self) -> Sandbox:
        m = self.material
        self.stripe = StripeFake(
            api_key=m.stripe_key,
            webhook_secret=m.stripe_webhook_secret,
            webhook_url=f"{self.hub_url}/api/v1/public/stripe/webhook",
        )
        self.cloudflare = FakeCloudflare(token=m.cloudflare_token, auto_zones=True)
        for zone in self.zones:
            self.cloudflare.add_zone(zone)
        self.hetzner = FakeHetzner(token=m.hetzner_token, server_ipv4="127.0.0.1")
        self.netcup = FakeNetcup(refresh_token=m.netcup_refresh_token)
        self.slack = FakeSlackWebhook()
        self.webhook = WebhookReceiver(m.monitor_webhook_secret)
        self.push = FakePushGateway(token=m.push_token)
        self.llm = FakeOpenAI(api_key=m.llm_upstream_key)
        servers = {
            name: LoopbackServer(fake.app)
            for name, fake in (
                ("stripe", self.stripe),
                ("cloudflare", self.cloudflare),
                ("hetzner", self.hetzner),
                ("netcup", self.netcup),
                ("slack", self.slack),
                ("webhook", self.webhook),
                ("push", self.push),
                ("llm", self.llm),
            )
        }
        for srv in servers.values():
            self._servers.append(srv.start())
        self.urls = {name: srv.url for name, srv in servers.items()}
        self.dns = self.cloudflare.dns_server().start()
        self.smtp = FakeSmtp().start()
        # Every tenant's nginx as the monitor sees it from outside: a valid certificate for any name (SNI).
        self.tls = FakeTlsEndpoint().start()
        # The VPS: big enough for every tier's preflight, its host key and our client key kept across restarts.
        self.vps = SshTarget(
            self.root / "vps",
            cpus=16,
            mem_mb=65536,
            disk_gb=2048,
            port=int(os.environ.get("LETSBE_SANDBOX_SSH_PORT", "0")) or None,
            host_key=_ssh_key(self.root / "ssh" / "vps_host_key"),
            client_key=_ssh_key(self.root / "ssh" / "provisioner_key"),
        ).start()
        self.client_key_path = self.vps.write_client_key(self.root / "ssh" / "provisioner_key")
        self.docker = DockerEngineFake(self.root / "docker.sock").start()
        self.extra_tenants = ExtraTenants(self).start()
        return self

    def stop(self) -> None:
        if getattr(self, "extra_tenants", None) is not None:
            self.extra_tenants.stop()
        for srv in reversed(self._servers):
            srv.stop()
        for part in ("docker", "vps", "tls", "smtp", "dns"):
            thing = getattr(self, part, None)
            if thing is not None:
                thing.stop()

    # --- how the services reach the world --------------------------------------------------------------------

    def vps_path(self, system_path: str) -> Path:
        return self.vps.root / system_path.lstrip("/")

    def env(self) -> dict[str, dict[str, str]]:
        """Environment per service name (as in letsbe_platform.runner.SERVICES), on top of the shared one."""
        m, u, p = self.material, self.urls, self.ports
        dns_url = f"http://127.0.0.1:{p.dns}"
        common = {"LETSBE_SANDBOX": "1"}
        agent_state = self.root / "agents"

        def agent(prefix: str, name: str) -> dict[str, str]:
            return {
                f"{prefix}HUB_URL": self.hub_url,
                f"{prefix}REGISTRATION_TOKEN_FILE": str(self.vps_path(f"/var/lib/letsbe/{name}/registration-token")),
                f"{prefix}STATE_DIR": str(agent_state / name),
                f"{prefix}DOCKER_SOCKET": str(self.root / "docker.sock"),
                f"{prefix}BACKOFF_MAX_SECONDS": "2",
                f"{prefix}HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_SECONDS),
                f"{prefix}BACKUP_STATUS_PATH": str(self.vps_path("/var/lib/letsbe/backup/backup-status.json")),
                f"{prefix}BACKUP_LOCK_PATH": str(self.vps_path("/var/lib/letsbe/backup/backup.lock")),
                f"{prefix}USAGE_LEDGER_PATH": str(agent_state / "usage.sqlite3"),
                f"{prefix}DISK_PATH": str(self.root),
            }

        return {
            "hub-api": {
                **common,
                "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": m.admin_token,
                "LETSBE_HUB_STRIPE_SECRET_KEY": m.stripe_key,
                "LETSBE_HUB_STRIPE_WEBHOOK_SECRET": m.stripe_webhook_secret,
                "LETSBE_HUB_STRIPE_API_BASE": u["stripe"],
                "LETSBE_HUB_SMTP_HOST": "127.0.0.1",
                "LETSBE_HUB_SMTP_PORT": str(self.smtp.port),
                "LETSBE_HUB_HETZNER_API_URL": u["hetzner"] + "/v1",
                "LETSBE_HUB_HETZNER_API_TOKEN": m.hetzner_token,
                "LETSBE_HUB_NETCUP_API_URL": u["netcup"] + "/scp-core",
                "LETSBE_HUB_NETCUP_TOKEN_URL": u["netcup"] + "/realms/scp/protocol/openid-connect/token",
                "LETSBE_HUB_NETCUP_REFRESH_TOKEN": m.netcup_refresh_token,
                "LETSBE_HUB_SERVER_SSH_PORT": str(self.vps.port),
                "LETSBE_HUB_SERVER_SSH_PUBLIC_KEY": self.vps.client_key.export_public_key("openssh").decode().strip(),
                "LETSBE_HUB_PROVIDER_POLL_SECONDS": "0.2",
                "LETSBE_HUB_SSH_PROBE_SECONDS": "0.2",
                "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_SECONDS),
            },
            "provisioner": {
                **common,
                "LETSBE_PROVISIONER_HUB_URL": self.hub_url,
                "LETSBE_PROVISIONER_HUB_TOKEN": m.admin_token,
                "LETSBE_PROVISIONER_ACME_URL": dns_url,
                "LETSBE_PROVISIONER_SSH_PRIVATE_KEY_FILE": str(self.client_key_path),
                "LETSBE_PROVISIONER_SECRETS_KEY": m.provisioner_secrets_key,
                "LETSBE_PROVISIONER_REMOTE_ROOT": str(self.vps.root),
                "LETSBE_PROVISIONER_RETRY_BACKOFF_SECONDS": "[0.5, 1, 2]",
                "LETSBE_PROVISIONER_REGISTRATION_POLL_SECONDS": "0.5",
                "LETSBE_PROVISIONER_REGISTRATION_TIMEOUT_SECONDS": "120",
            },
            "dns": {
                **common,
                "LETSBE_DNS_CLOUDFLARE_API_TOKEN": m.cloudflare_token,
                "LETSBE_DNS_CLOUDFLARE_BASE_URL": u["cloudflare"] + "/client/v4",
                "LETSBE_DNS_NAMESERVER": "127.0.0.1",
                "LETSBE_DNS_NAMESERVER_PORT": str(self.dns.port),
                "LETSBE_DNS_VERIFY_INTERVAL_SECONDS": "0.2",
                "LETSBE_DNS_VERIFY_TIMEOUT_SECONDS": "20",
                "LETSBE_DNS_HUB_URL": self.hub_url,
            },
            "monitor": {
                **common,
                "LETSBE_MONITOR_DEFAULT_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_SECONDS),
                "LETSBE_MONITOR_SWEEP_INTERVAL_SECONDS": "1",
                "LETSBE_MONITOR_STARTUP_GRACE_SECONDS": "10",
                "LETSBE_MONITOR_OFFLINE_SETTLE_SECONDS": "2",
                "LETSBE_MONITOR_SMTP_HOST": "127.0.0.1",
                "LETSBE_MONITOR_SMTP_PORT": str(self.smtp.port),
                "LETSBE_MONITOR_SLACK_WEBHOOK_URL": self.slack.url(u["slack"]),
                "LETSBE_MONITOR_WEBHOOK_URL": self.webhook.url(u["webhook"]),
                "LETSBE_MONITOR_WEBHOOK_SECRET": m.monitor_webhook_secret,
                "LETSBE_MONITOR_PUSH_GATEWAY_URL": self.push.url(u["push"]),
                "LETSBE_MONITOR_PUSH_GATEWAY_TOKEN": m.push_token,
                "LETSBE_MONITOR_TLS_CONNECT_HOST": "127.0.0.1",
                "LETSBE_MONITOR_TLS_PORT": str(self.tls.port),
            },
            "safety-wrapper": {
                **common,
                **agent("LETSBE_SW_", "safety-wrapper"),
                "LETSBE_SW_TOOLS_TOKEN": m.tools_token,
                "LETSBE_SW_TOOLS_DIR": str(agent_state / "safety-wrapper" / "tools"),
                "LETSBE_SW_SECRETS_PATH": str(agent_state / "secrets.enc"),
                "LETSBE_SW_SECRETS_KEY": m.tenant_secrets_key,
            },
            "secrets-proxy": {
                **common,
                **agent("LETSBE_SP_", "secrets-proxy"),
                "LETSBE_SP_SENTINEL_KEY": m.llm_sentinel_key,
                "LETSBE_SP_UPSTREAM_BASE_URL": u["llm"] + "/v1",
                "LETSBE_SP_UPSTREAM_API_KEY": m.llm_upstream_key,
                "LETSBE_SP_SECRETS_PATH": str(agent_state / "secrets.enc"),
                "LETSBE_SP_SECRETS_KEY": m.tenant_secrets_key,
            },
        }

    def describe(self) -> dict[str, object]:
        """What env.json holds: the per-service environment and where the fakes are (for the CLI and tests)."""
        return {
            "env": self.env(),
            "fakes": {
                **self.urls,
                "dns": f"udp://127.0.0.1:{self.dns.port}",
                "smtp": f"127.0.0.1:{self.smtp.port}",
                "tls": f"127.0.0.1:{self.tls.port}",
                "vps": f"ssh://{self.vps.user}@127.0.0.1:{self.vps.port}",
                "vps_root": str(self.vps.root),
            },
            "hub_url": self.hub_url,
            "admin_token_file": str(self.root / "admin-token"),
        }


AGENTS = (
    ("safety-wrapper", "letsbe_safety_wrapper", "LETSBE_SW_"),
    ("secrets-proxy", "letsbe_secrets_proxy", "LETSBE_SP_"),
)


class ExtraTenants:
    """One loopback VPS serves every sandbox order. The agents `make run` starts enrol with the first tenant; when a
    later order's step 10 leaves new registration tokens while they are taken, this starts a pair of agents for
    that tenant (own state folder, own ports), as that tenant's own VPS would."""

    def __init__(self, world: Sandbox, poll_seconds: float = 0.3):
        self.world = world
        self.poll_seconds = poll_seconds
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-extra-tenants", daemon=True)

    def start(self) -> ExtraTenants:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _primary_taken(self) -> bool:
        return all((self.world.root / "agents" / name / "credential.json").exists() for name, _, _ in AGENTS)

    def _tokens(self) -> list[Path]:
        return [self.world.vps_path(f"/var/lib/letsbe/{name}/registration-token") for name, _, _ in AGENTS]

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            tokens = self._tokens()
            if all(t.exists() for t in tokens) and self._primary_taken():
                self._spawn(tokens)

    def _spawn(self, tokens: list[Path]) -> None:
        home = self.world.root / "tenants" / str(len(self.procs) // 2 + 1)
        home.mkdir(parents=True, exist_ok=True)
        env_all = self.world.env()
        for (name, module, prefix), token in zip(AGENTS, tokens, strict=True):
            mine = home / f"{name}.registration-token"
            shutil.move(token, mine)  # taken from the VPS: the first tenant's agents never see it
            env = {
                **os.environ,
                **env_all[name],
                f"{prefix}PORT": str(_free_port()),
                f"{prefix}REGISTRATION_TOKEN_FILE": str(mine),
                f"{prefix}STATE_DIR": str(home / name),
            }
            if name == "safety-wrapper":
                env[f"{prefix}TOOLS_DIR"] = str(home / name / "tools")
            self.procs.append(subprocess.Popen([sys.executable, "-m", module], env=env))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
