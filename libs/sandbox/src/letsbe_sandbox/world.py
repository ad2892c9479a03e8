"""The stand-in world of sandbox mode, and the settings that point every service at it.

Everything listens on loopback. Keys, tokens, the fakes' state and the VPSes live under one folder
(``.data/sandbox`` for ``make run``) so a restart finds the same world: Hetzner's servers and ids, Cloudflare's
records, Stripe's sessions, each VPS with the host key the hub pinned and the agents' credentials. Every
(fake) Hetzner server is its own VPS (letsbe_sandbox.vps) on its own address, running its own tenant agents.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
from cryptography.fernet import Fernet

from letsbe_fakes import LoopbackServer
from letsbe_fakes.cloudflare import FakeCloudflare
from letsbe_fakes.hetzner import FakeHetzner
from letsbe_fakes.netcup import FakeNetcup
from letsbe_fakes.openai import FakeOpenAI
from letsbe_fakes.push_gateway import FakePushGateway
from letsbe_fakes.slack import FakeSlackWebhook
from letsbe_fakes.smtp import FakeSmtp
from letsbe_fakes.stripe import StripeFake
from letsbe_fakes.tls_endpoint import FakeTlsEndpoint
from letsbe_fakes.webhook import WebhookReceiver
from letsbe_platform.testing import free_port
from letsbe_sandbox.vps import Vps

# Heartbeats every 5 s instead of 60 s, so "stop an agent, see the offline alert" takes seconds, not minutes.
HEARTBEAT_SECONDS = 5
# The slow steps of the world that can be held (an empty file of that name in <root>/holds/ holds it; removing the
# file lets it go on): a server boots, DNS changes reach the nameservers, provisioning step 2 allocates the swap
# file. Held, an order waits mid-step as long as someone needs it there (a test killing a service under it). The
# sandbox writes the names it holds to <root>/holds/applied once it does.
HOLDS = ("server-boot", "dns", "swap-file")


@dataclass(frozen=True)
class Ports:
    hub: int = 3847
    provisioner: int = 3850
    dns: int = 3851
    monitor: int = 3852


@dataclass(frozen=True)
class Material:
    """Credentials of the sandbox world, generated once and kept (0600) under the sandbox folder."""

    admin_token: str
    provisioner_secrets_key: str
    cloudflare_token: str
    hetzner_token: str
    netcup_refresh_token: str
    stripe_key: str
    stripe_webhook_secret: str
    monitor_webhook_secret: str
    push_token: str
    llm_upstream_key: str
    dns_read_token: str

    @classmethod
    def load_or_create(cls, path: Path) -> Material:
        """Keeps what an earlier run generated; fills in anything a newer version needs."""
        fresh = {
            "admin_token": "lbh_sandbox_" + secrets.token_urlsafe(24),
            "provisioner_secrets_key": Fernet.generate_key().decode(),
            "cloudflare_token": "cf-sandbox-" + secrets.token_urlsafe(16),
            "hetzner_token": "hz-sandbox-" + secrets.token_urlsafe(16),
            "netcup_refresh_token": "nc-sandbox-" + secrets.token_urlsafe(16),
            "stripe_key": "sk_test_sandbox_" + secrets.token_urlsafe(16),
            "stripe_webhook_secret": "whsec_sandbox_" + secrets.token_urlsafe(16),
            "monitor_webhook_secret": secrets.token_urlsafe(24),
            "push_token": secrets.token_urlsafe(24),
            "llm_upstream_key": "sk-sandbox-upstream-" + secrets.token_urlsafe(24),
            "dns_read_token": "dns-read-sandbox-" + secrets.token_urlsafe(24),
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

    def __init__(self, root: Path, ports: Ports | None = None, *, zones: tuple[str, ...] = (), slow: float = 0.0):
        """``slow``: seconds each slow step of the world takes (a server boots, DNS changes reach the nameservers,
        provisioning step 2 allocates the swap file), to watch an order walk or to stop a service mid-step."""
        self.root = root.resolve()
        self.ports = ports or Ports()
        self.zones = zones
        self.slow = slow
        self.material = Material.load_or_create(self.root / "secrets.json")
        self.ssh_port = _stable_port(self.root / "ssh" / "port", os.environ.get("LETSBE_SANDBOX_SSH_PORT"))
        self.first_vps_ipv4 = _claimed_address_block(self.root / "ssh" / "address-block")
        self.client_key = _ssh_key(self.root / "ssh" / "provisioner_key")
        self.client_key_path = self.root / "ssh" / "provisioner_key"
        self.vpses: dict[str, Vps] = {}  # by address
        self._servers: list[LoopbackServer] = []
        self._vps_setup: list[Any] = []
        self._vps_lock = threading.Lock()
        self._stop = threading.Event()
        self._kick = threading.Event()  # set as each SSH command on a VPS ends
        self.holds = self.root / "holds"
        self._held: frozenset[str] | None = None
        self._poller = threading.Thread(target=self._poll, name="sandbox-vps-poller", daemon=True)

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.hub}"

    def start(self) -> Sandbox:
        m = self.material
        state = self.root / "state"
        self.stripe = StripeFake(
            api_key=m.stripe_key,
            webhook_secret=m.stripe_webhook_secret,
            webhook_url=f"{self.hub_url}/api/v1/public/stripe/webhook",
            state_dir=state,
        )
        self.cloudflare = FakeCloudflare(token=m.cloudflare_token, auto_zones=True, state_dir=state)
        for zone in self.zones:
            if not any(z.name == zone for z in self.cloudflare.zones.values()):
                self.cloudflare.add_zone(zone)
        self.hetzner = FakeHetzner(
            token=m.hetzner_token,
            ipv4_per_server=True,
            first_ipv4=self.first_vps_ipv4,
            state_dir=state,
            on_create=self._server_created,
            on_delete=self._server_deleted,
        )
        self.netcup = FakeNetcup(
            refresh_token=m.netcup_refresh_token, state_dir=state, install_seconds=self.slow or 1.0
        )
        if self.slow:
            self.hetzner.action_seconds = self.slow
            self.cloudflare.dns_delay(self.slow)
            self.each_vps(lambda vps: vps.target.hang("fallocate", self.slow))
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
        self.smtp = FakeSmtp(spool_dir=self.root / "mail").start()  # each email also as a file: mail/*.eml
        # Every tenant's nginx as the monitor sees it from outside: a valid certificate for any name (SNI).
        self.tls = FakeTlsEndpoint().start()
        self.each_vps(self._hold_swap_file)
        self._apply_holds()
        for server in list(self.hetzner.servers.values()):  # a restart: the servers of the last run boot again
            self._server_created(server)
        self._poller.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._poller.is_alive():
            self._poller.join(5)
        with self._vps_lock:
            vpses, self.vpses = list(self.vpses.values()), {}
        # Side by side: each VPS waits for its own agents' graceful shutdown.
        with ThreadPoolExecutor(max(len(vpses), 1)) as pool:
            for stopped in [pool.submit(vps.stop) for vps in vpses]:
                stopped.result()
        for srv in reversed(self._servers):
            srv.stop()
        for part in ("tls", "smtp", "dns"):
            thing = getattr(self, part, None)
            if thing is not None:
                thing.stop()

    # --- the VPSes ---------------------------------------------------------------------------------------------

    def each_vps(self, setup: Any) -> None:
        """Run ``setup(vps)`` on every VPS, now and as each new one boots (tests: make a stand-in hang or fail)."""
        self._vps_setup.append(setup)
        with self._vps_lock:
            for vps in self.vpses.values():
                setup(vps)

    def vps_of_order(self, order_id: str) -> Vps:
        with self._vps_lock:
            return next(v for v in self.vpses.values() if v.labels.get("letsbe-order") == str(order_id))

    def _server_created(self, server: dict[str, Any]) -> None:
        address = server["public_net"]["ipv4"]["ip"]
        vps = Vps(
            self.root / "vps",
            server,
            port=self.ssh_port,
            host_key=_ssh_key(self.root / "ssh" / f"host-{address}"),
            client_key=self.client_key,
        )
        vps.target.on_command_end = self._kick.set
        for setup in self._vps_setup:
            setup(vps)
        vps.start()
        with self._vps_lock:
            self.vpses[address] = vps

    def _server_deleted(self, server: dict[str, Any]) -> None:
        with self._vps_lock:
            vps = self.vpses.pop(server["public_net"]["ipv4"]["ip"], None)
        if vps is not None:
            vps.stop()

    def _poll(self) -> None:
        # Step 10's `docker compose up` ends an SSH command, which kicks this loop: its agents start right away.
        # The interval is the fallback (and what brings the agents of a restarted sandbox back).
        while not self._stop.is_set():
            self._kick.wait(0.3)
            self._kick.clear()
            if self._stop.is_set():
                return
            self._apply_holds()
            with self._vps_lock:
                vpses = list(self.vpses.values())
            for vps in vpses:
                vps.poll()

    def _apply_holds(self) -> None:
        held = frozenset(name for name in HOLDS if (self.holds / name).exists())
        if held == self._held:
            return
        self._held = held
        self.hetzner.hold_actions = "server-boot" in held
        self.cloudflare.hold_dns("dns" in held)
        with self._vps_lock:
            vpses = list(self.vpses.values())
        for vps in vpses:
            self._hold_swap_file(vps)
        self.holds.mkdir(exist_ok=True)
        applied = self.holds / ".applied"
        applied.write_text("".join(f"{name}\n" for name in sorted(held)))
        applied.replace(self.holds / "applied")

    def _hold_swap_file(self, vps: Vps) -> None:
        if self._held and "swap-file" in self._held:
            vps.target.hold("fallocate")
        else:
            vps.target.release("fallocate")

    # --- how the services reach the world --------------------------------------------------------------------

    def env(self) -> dict[str, dict[str, str]]:
        """Environment per service name (as in letsbe_platform.runner.SERVICES), on top of the shared one."""
        m, u, p = self.material, self.urls, self.ports
        dns_url = f"http://127.0.0.1:{p.dns}"
        common = {"LETSBE_SANDBOX": "1"}
        return {
            "hub-api": {
                **common,
                "LETSBE_HUB_BOOTSTRAP_ADMIN_TOKEN": m.admin_token,
                # The tools' admin logins until revealed (any Fernet key the sandbox keeps across restarts).
                "LETSBE_HUB_CREDENTIALS_KEY": m.provisioner_secrets_key,
                # The console's operator accounts keep their TOTP secrets under this key.
                "LETSBE_HUB_OPERATOR_TOTP_KEY": m.provisioner_secrets_key,
                # The portal and the console over plain http on loopback: their session cookies go without the
                # Secure flag (only there, see letsbe_hub.web.sessions).
                "LETSBE_HUB_WEB_COOKIE_SECURE": "false",
                "LETSBE_HUB_PUBLIC_URL": f"http://127.0.0.1:{p.hub}",
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
                # Every VPS listens on its own address at this one port, as real servers all listen on 22.
                "LETSBE_HUB_SERVER_SSH_PORT": str(self.ssh_port),
                "LETSBE_HUB_SERVER_SSH_PUBLIC_KEY": self.client_key.export_public_key("openssh").decode().strip(),
                # The fake Hetzner finishes an action on its second poll: 1 ms after the first, not Hetzner's 1 s.
                "LETSBE_HUB_PROVIDER_POLL_FIRST_SECONDS": "0.001",
                "LETSBE_HUB_PROVIDER_POLL_SECONDS": "0.2",
                "LETSBE_HUB_SSH_PROBE_SECONDS": "0.2",
                "LETSBE_HUB_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_SECONDS),
                # The hub's LLM relay goes to the fake OpenAI with the platform's (sandbox) key; tenants' Secrets
                # Proxies reach the relay with the per-tenant keys the hub issues at step 10.
                "LETSBE_HUB_LLM_UPSTREAM_BASE_URL": u["llm"] + "/v1",
                "LETSBE_HUB_LLM_UPSTREAM_API_KEY": m.llm_upstream_key,
                # The console reads tenants' DNS records from the DNS service.
                "LETSBE_HUB_DNS_URL": dns_url,
                "LETSBE_HUB_DNS_READ_TOKEN": m.dns_read_token,
            },
            "provisioner": {
                **common,
                "LETSBE_PROVISIONER_HUB_URL": self.hub_url,
                "LETSBE_PROVISIONER_HUB_TOKEN": m.admin_token,
                "LETSBE_PROVISIONER_ACME_URL": dns_url,
                "LETSBE_PROVISIONER_SSH_PRIVATE_KEY_FILE": str(self.client_key_path),
                "LETSBE_PROVISIONER_SECRETS_KEY": m.provisioner_secrets_key,
                "LETSBE_PROVISIONER_REMOTE_ROOT": str(self.root / "vps") + "/{ipv4}",
                "LETSBE_PROVISIONER_RETRY_BACKOFF_SECONDS": "[0.5, 1, 2]",
                # The fallback only: the hub's agent-registered event ends the wait as soon as the agent registers.
                "LETSBE_PROVISIONER_REGISTRATION_POLL_SECONDS": "0.5",
                "LETSBE_PROVISIONER_REGISTRATION_TIMEOUT_SECONDS": "120",
                # Rendered into the agents' compose environment: see a stopped agent go stale in seconds.
                "LETSBE_PROVISIONER_AGENT_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
                "LETSBE_PROVISIONER_AGENT_BACKOFF_MAX_SECONDS": "2",
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
                "LETSBE_DNS_READ_TOKEN": m.dns_read_token,
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
                "vps": f"ssh://letsbe@127.B.C.x:{self.ssh_port} (one per Hetzner server, on this sandbox's own /24)",
                "vps_roots": str(self.root / "vps"),
            },
            "hub_url": self.hub_url,
            "admin_token_file": str(self.root / "admin-token"),
        }


# Each sandbox on this machine claims its own 127.B.C.0/24 for its VPSes here, so two running at once (parallel
# tests, two checkouts) never bind their agents' ports on one address. A claim names the file in the sandbox's
# folder that keeps the block; it lapses when that file is gone or names another block.
ADDRESS_CLAIMS = Path(tempfile.gettempdir()) / "letsbe-sandbox-addresses"


def _claimed_address_block(kept: Path) -> int:
    """Where this sandbox's VPS addresses start, 127.B.C.2: the block kept from an earlier run (claimed again: a
    reboot empties the claims), else a new one that no other sandbox on this machine holds."""
    if not ADDRESS_CLAIMS.exists():
        ADDRESS_CLAIMS.mkdir(exist_ok=True)
        ADDRESS_CLAIMS.chmod(0o1777)  # every user's sandboxes share loopback
    if kept.exists():
        first = int(kept.read_text())
        _claim(first, kept)
        return first
    kept.parent.mkdir(parents=True, exist_ok=True)
    for claim in ADDRESS_CLAIMS.iterdir():  # the claims of sandboxes since deleted (each test makes some)
        if claim.name.isdigit() and _lapsed(claim):
            claim.unlink(missing_ok=True)
    while True:
        first = (secrets.randbelow(254) + 1) << 16 | secrets.randbelow(256) << 8 | 2
        kept.write_text(f"{first}\n")
        if _claim(first, kept):
            return first


def _claim(first: int, kept: Path) -> bool:
    claim = ADDRESS_CLAIMS / str(first >> 8)
    if _lapsed(claim):
        claim.unlink(missing_ok=True)
    draft = ADDRESS_CLAIMS / f".{secrets.token_hex(8)}"
    draft.write_text(str(kept.resolve()))
    try:
        os.link(draft, claim)  # atomic, with its content, and fails while another sandbox holds the block
        return True
    except FileExistsError:
        try:
            return Path(claim.read_text()) == kept.resolve()
        except FileNotFoundError:  # it lapsed just now: draw again
            return False
    finally:
        draft.unlink()


def _lapsed(claim: Path) -> bool:
    try:
        holder = Path(claim.read_text())
    except FileNotFoundError:
        return False
    try:
        return int(holder.read_text()) >> 8 != int(claim.name)
    except (OSError, ValueError):
        return True


def _stable_port(path: Path, wanted: str | None) -> int:
    """The VPSes' SSH port: the one asked for, else the one an earlier run chose, else a free one (kept)."""
    if wanted:
        return int(wanted)
    if path.exists():
        return int(path.read_text())
    port = free_port()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{port}\n")
    return port
