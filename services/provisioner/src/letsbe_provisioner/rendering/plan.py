"""Everything a tenant server gets, computed from the order and the catalog: stacks, memory, secrets, files.

The templates under ``letsbe_provisioner/templates`` are the one source of truth for what lands on a tenant; this
module feeds them and is used by the pipeline (one step script at a time) and by ``python -m
letsbe_provisioner.render`` (every file at once, for deploy/ and for review).
"""

from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets
import shlex
import string
from dataclasses import dataclass, field
from functools import cache

import jinja2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from letsbe_contracts import LETSBE_OVERHEAD_MB, Catalog, OrderSpec, ServerNeeds, Tool, certbot_hooks, load_catalog
from letsbe_contracts.agent import CREDENTIAL_FILE, LLM_RELAY_PATH
from letsbe_contracts.hub import BackupTarget
from letsbe_provisioner.rendering.profiles import Profile, SecretKind, profile
from letsbe_provisioner.steps import BY_NUMBER, STEPS, Step

DB_IMAGES = {"postgres": "postgres:16.4-alpine", "mysql": "mysql:8.4.2", "mongo": "mongo:7.0.14"}
REDIS_IMAGE = "redis:7.4.1-alpine"
NGINX_IMAGE = "nginx:1.27-alpine"
IMAGE_REGISTRY = "code.letsbe.solutions/letsbe"  # our own images (the AI stack); Settings.image_registry
AI_IMAGES = ("openclaw", "safety-wrapper", "secrets-proxy")
DKIM_SELECTOR = "letsbe"  # <selector>._domainkey.<domain>
AGENTS = ("safety-wrapper", "secrets-proxy")  # each registers with its own one-time token
# The tenant keys an operator can rotate (letsbe_contracts.agent.TENANT_KEYS): the secret that holds each and the
# containers whose env file carries it, which are exactly the containers a rotation recreates.
ROTATED_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tools-token": ("ai.tools_token", ("openclaw", "safety-wrapper")),
    "sentinel-key": ("ai.sentinel_key", ("openclaw", "secrets-proxy")),
    "secrets-key": ("ai.secrets_key", ("safety-wrapper", "secrets-proxy")),
}
# Kept only while a secrets-key rotation is unfinished: the key the tenant's store may still be under.
PREVIOUS_SECRETS_KEY = "ai.secrets_key_previous"
# The OpenClaw release the image is built from (deploy/docker/openclaw.Dockerfile) and its rendered configuration
# is tested against (tests/rendering/test_openclaw.py runs this version).
OPENCLAW_VERSION = "2026.9.6"
OPENCLAW_PORT = 18789  # seed §3.3
OPENCLAW_CONFIG = "/etc/openclaw/openclaw.json"  # inside the container (OPENCLAW_CONFIG_PATH in the image)
# Container networks (templates/compose/*.yml.j2). OpenClaw is attached to the AI gate only: an internal network
# (no route out, not even to the host) shared with the Safety Wrapper and the Secrets Proxy. Each tool's app has
# its own internal network shared with the Safety Wrapper alone; nginx (host network) keeps 127.0.0.1:<port>.
AI_GATE_NETWORK = "letsbe-ai-gate"


def tool_network(project: str) -> str:
    return f"letsbe-tool-{project}"


MIN_DB_MB, REDIS_MB = 128, 64
HEREDOC_END = "LETSBE_EOF_9c4e1"  # never appears in rendered content (checked)

# Paths on the tenant (production). Scripts prefix them with "$ROOT" when they touch the file system.
STACKS_DIR = "/opt/letsbe/stacks"
NGINX_DIR = "/opt/letsbe/nginx"
AI_DIR = "/opt/letsbe/ai"
TLS_DIR = "/etc/letsbe/tls"
ACME_DIR = "/etc/letsbe/acme"
STATE_DIR = "/var/lib/letsbe"
BACKUP_DIR = "/var/backups/letsbe"
FINAL_BACKUP_DIR = f"{BACKUP_DIR}/final"  # <tool>/<job id>: a removed tool's data, outside the nightly rotation
COMPOSE_SHIM = "/usr/local/lib/docker/cli-plugins/docker-compose"  # `docker compose` on Debian's Docker
BACKUP_STATUS = "/var/lib/letsbe/backup/backup-status.json"  # its own directory: mounted read-only into the agents
RCLONE_CONF = "/etc/letsbe/rclone.conf"  # letsbe-backup copies off-site when this and BACKUP_REMOTE exist
BACKUP_REMOTE = "/etc/letsbe/backup-remote"
OFFSITE_REMOTE = "letsbe-offsite"  # the crypt remote over the tenant's prefix (its own key): what is copied off-site
# rclone keeps passwords in its config "obscured": AES-CTR under this fixed, published key (rclone's
# fs/config/obscure), a reversible encoding, not protection; the file's 0600 mode is what protects it.
_RCLONE_OBSCURE_KEY = bytes.fromhex("9c935b48730a554d6bfd7c63c886a92bd390198eb8128afbf4de162b8b95f638")
BACKUP_LOCK = "/var/lib/letsbe/backup/backup.lock"  # letsbe-backup holds an flock on it while it runs
RESTORE_SCRIPT = "/usr/local/sbin/letsbe-restore"  # loads a backup set back (the hub's restore jobs run it over SSH)
USAGE_LEDGER = "/var/lib/letsbe/shared/usage.sqlite3"  # the Secrets Proxy records into it, the Safety Wrapper reports
DOCKER_SOCKET = "/var/run/docker.sock"
SECRET_STORE = "/var/lib/letsbe/secrets/secrets.enc"  # noqa: S105 - a path; the wrapper writes it, the proxy reads
# Tool secrets for the Safety Wrapper's store, one file per secret (<tool>/<name>, 0600, root only, like the stacks'
# app.env): step 9 writes them (and tools' setup scripts add what only the running tool can issue), step 10 puts each
# into the store through the wrapper's CLI on every run (same value: no change). The store's key stays with the agents.
SECRET_IMPORT_DIR = "/var/lib/letsbe/secret-import"  # noqa: S105 - a path
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


def agent_dir(agent: str) -> str:
    """An agent's state directory, given to its compose service as ``<prefix>STATE_DIR`` (compose/ai.yml.j2)."""
    return f"{STATE_DIR}/{agent}"


# The credential the Safety Wrapper writes in its state directory (JSON, 0600); the ACME hooks read its api_key.
AGENT_CREDENTIAL = f"{agent_dir('safety-wrapper')}/{CREDENTIAL_FILE}"
ACME_CA_BUNDLE = f"{ACME_DIR}/ca.pem"  # written only when Settings.acme_ca_pem is set
CERTBOT_CA_DROPIN = "/etc/systemd/system/certbot.service.d/50-letsbe-ca.conf"


@dataclass(frozen=True)
class NginxPaths:
    """Where the nginx container sees its files. Tests point these at a temp dir to run the host's ``nginx -t``."""

    conf_dir: str = "/etc/nginx"
    tls_dir: str = TLS_DIR
    user: str = "nginx"
    pid: str = "/var/run/nginx.pid"
    log_dir: str = "/var/log/nginx"


@dataclass(frozen=True)
class Settings:
    """What the templates need besides the order (from the provisioner's settings and the server target)."""

    hub_url: str  # the Hub as the tenant reaches it (agents)
    acme_url: str | None = None  # where tenants reach /api/v1/tenant/acme-challenge; default: hub_url
    root: str = ""  # "" in production; a sandbox directory in tests
    agent_image_tag: str = "latest"
    llm_model: str = "gpt-4o-mini"  # OpenClaw's model, served through the tenant's Secrets Proxy
    # Where the Secrets Proxy sends model calls: the hub's LLM relay (hub_url + LLM_RELAY_PATH) unless set. The relay
    # key it presents there is issued by the hub for each run of step 10 (``llm_key`` of step_files).
    llm_base_url: str | None = None
    ssh_user: str = "letsbe"
    ssh_port: int = 22
    swap_mb: int = 2048
    acme_email: str = "ssl@letsbe.biz"
    # Preflight demands this many CPUs; None: derived from the memory budget (Catalog.needs).
    preflight_min_cpus: int | None = None
    # The agents' heartbeat interval and reconnect backoff cap (rendered into their compose environment).
    agent_heartbeat_seconds: float = 60
    agent_backoff_max_seconds: float = 60
    acme_directory_url: str = LETS_ENCRYPT  # the ACME server certbot uses (tests: pebble)
    acme_ca_pem: str | None = None  # PEM of a CA to trust for that server instead of the system's (test CAs only)
    # Step 3 authorizes this key for ssh_user when we log in as another user (root) until then.
    ssh_user_key: str | None = None
    fail2ban_ignoreip: tuple[str, ...] = ()  # the control plane's addresses: never banned
    docker_source: str = "docker"  # "docker": Docker's apt repository; "debian": docker.io + docker-compose
    registry_mirror: str | None = None  # Docker Hub images through this mirror
    image_registry: str = IMAGE_REGISTRY  # where the AI stack's images come from
    insecure_registries: tuple[str, ...] = ()  # plain-HTTP registries dockerd may use (host:port)
    vm_sysctls: bool = True  # False: the host-wide vm.* sysctls are written but not applied (a container)
    apps_setup: bool = True  # False: stand-in apps (test VPS): no admin setup inside them, no secret import
    nginx: NginxPaths = field(default_factory=NginxPaths)


@dataclass(frozen=True)
class Database:
    kind: str
    image: str
    mem_mb: int
    name: str
    user: str
    env: dict[str, str]


@dataclass(frozen=True)
class ToolStack:
    tool: Tool
    profile: Profile
    project: str
    host: str
    app_mb: int
    db: Database | None
    redis_mb: int | None
    env: dict[str, str]
    redis_env: dict[str, str]
    command: str | None = None
    admin_login: str | None = None  # the customer's login (profile.admin), the password is secrets[admin_password]
    agent_secrets: dict[str, str] = field(default_factory=dict)  # SECRET_REF name -> value (profile.agent_secrets)

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def dir(self) -> str:
        return f"{STACKS_DIR}/{self.tool.name}"

    @property
    def container(self) -> str:
        return f"letsbe-{self.project}"

    @property
    def mem_total_mb(self) -> int:
        return self.app_mb + (self.db.mem_mb if self.db else 0) + (self.redis_mb or 0)


@dataclass(frozen=True)
class RenderedFile:
    path: str  # absolute path on the tenant
    content: str
    mode: str = "0644"
    owner: str | None = None  # "uid:gid" when a container user must read it


def memory_split(tool: Tool) -> tuple[int, int | None, int | None]:
    """(app, db, redis) limits in MB that add up to the catalog's stack_ram_mb exactly."""
    redis = REDIS_MB if tool.requires_redis else None
    if not tool.requires_db:
        return tool.stack_ram_mb - (redis or 0), None, redis
    spare = tool.stack_ram_mb - tool.ram_mb - (redis or 0)
    if spare >= MIN_DB_MB:
        return tool.ram_mb, spare, redis
    db = MIN_DB_MB
    return tool.stack_ram_mb - db - (redis or 0), db, redis


def secret_specs(tool_names: tuple[str, ...] | list[str], catalog: Catalog | None = None) -> dict[str, SecretKind]:
    """Every per-tenant secret the order needs, by name (``<tool>.<secret>``)."""
    catalog = catalog or load_catalog()
    specs: dict[str, SecretKind] = {
        "ai.openclaw_gateway_token": "token",  # OpenClaw's gateway auth
        "ai.tools_token": "token",  # OpenClaw -> Safety Wrapper (/api/v1/tools/*)
        "ai.sentinel_key": "token",  # OpenClaw -> Secrets Proxy: its "API key", worth nothing upstream
        "ai.secrets_key": "fernet",  # the tenant secret store shared by both agents
    }
    for name in tool_names:
        tool = catalog.tool(name)
        if tool.requires_db:
            specs[f"{name}.db_password"] = "token"
        if tool.requires_db == "mysql":
            specs[f"{name}.db_root_password"] = "token"
        if tool.requires_redis:
            specs[f"{name}.redis_password"] = "token"
        for secret, kind in profile(name).secrets.items():
            specs[f"{name}.{secret}"] = kind
    return specs


def generate_secret(kind: SecretKind) -> str:
    if kind == "dkim":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    if kind == "hex32":
        return pysecrets.token_hex(16)
    if kind == "fernet":
        return base64.urlsafe_b64encode(pysecrets.token_bytes(32)).decode()
    if kind == "laravel":
        return "base64:" + base64.b64encode(pysecrets.token_bytes(32)).decode()
    if kind == "password":
        # 192 random bits, then one of each class so every tool's password rules accept it.
        pick = pysecrets.choice
        return (
            pysecrets.token_urlsafe(24)
            + pick(string.ascii_uppercase)
            + pick(string.ascii_lowercase)
            + pick(string.digits)
            + pick("-_.")
        )
    return pysecrets.token_urlsafe(32)


def dkim_public_key(private_pem: str) -> str:
    """The p= value of the DKIM TXT record: base64 DER SubjectPublicKeyInfo of the private key's public half."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def generate_secrets(tool_names: tuple[str, ...] | list[str]) -> dict[str, str]:
    return {name: generate_secret(kind) for name, kind in secret_specs(tool_names).items()}


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("letsbe_provisioner", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - shell, YAML and nginx, not HTML
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    env.filters["yq"] = _yaml_quote
    env.filters["dirname"] = lambda v: str(v).rsplit("/", 1)[0]
    return env


def _yaml_quote(value: object) -> str:
    """A double-quoted YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(str(value))


def rclone_obscure(plain: str) -> str:
    """``rclone obscure``: what rclone.conf holds for a password."""
    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(_RCLONE_OBSCURE_KEY), modes.CTR(iv)).encryptor()
    return base64.urlsafe_b64encode(iv + enc.update(plain.encode()) + enc.finalize()).rstrip(b"=").decode()


def render_template(name: str, **context: object) -> str:
    return _env().get_template(name).render(**context)


class Plan:
    """One tenant's rendering: ``files()`` for everything, ``step_script(n)`` for what step n runs."""

    def __init__(self, order: OrderSpec, settings: Settings, secrets: dict[str, str], catalog: Catalog | None = None):
        self.order = order
        self.settings = settings
        self.catalog = catalog or load_catalog()
        missing = sorted(set(secret_specs(order.tools, self.catalog)) - set(secrets))
        if missing:
            raise ValueError(f"secrets missing for: {', '.join(missing)}")
        self.secrets = secrets
        # The tenant's off-site backup target, as the hub issued it (set before step 8 is rendered; None: no copy).
        self.offsite: BackupTarget | None = None
        self.tier = self.catalog.tier(order.tier)
        self.stacks = [
            self._stack(self.catalog.tool(name)) for name in order.tools if not self.catalog.tool(name).system
        ]

    def dkim(self) -> tuple[str, str] | None:
        """(selector, public key) the tenant's mail server signs with, if the order has one."""
        pem = self.secrets.get("stalwart.dkim_private_key")
        return (DKIM_SELECTOR, dkim_public_key(pem)) if pem and "stalwart" in self.order.tools else None

    @property
    def budget_mb(self) -> int:
        return LETSBE_OVERHEAD_MB + sum(s.mem_total_mb for s in self.stacks)

    @property
    def needs(self) -> ServerNeeds:
        """What preflight demands of the server: what the order's tools need, not the tier's nominal size."""
        # The catalog's memory rule must equal the rendered limits' sum (budget_mb): test_render checks both agree.
        return self.catalog.needs(self.order.tools, min_cpus=self.settings.preflight_min_cpus)

    def _stack(self, tool: Tool) -> ToolStack:
        prof = profile(tool.name)
        app_mb, db_mb, redis_mb = memory_split(tool)
        host = f"{tool.subdomain}.{self.order.domain}"
        mine = {k.split(".", 1)[1]: v for k, v in self.secrets.items() if k.startswith(tool.name + ".")}
        db = None
        if tool.requires_db:
            name = user = tool.name
            pw = mine["db_password"]
            db_env = {
                "postgres": {"POSTGRES_DB": name, "POSTGRES_USER": user, "POSTGRES_PASSWORD": pw},
                "mysql": {
                    "MYSQL_DATABASE": name,
                    "MYSQL_USER": user,
                    "MYSQL_PASSWORD": pw,
                    "MYSQL_ROOT_PASSWORD": mine.get("db_root_password", ""),
                },
                "mongo": {
                    "MONGO_INITDB_ROOT_USERNAME": user,
                    "MONGO_INITDB_ROOT_PASSWORD": pw,
                    "MONGO_INITDB_DATABASE": name,
                },
            }[tool.requires_db]
            db = Database(tool.requires_db, DB_IMAGES[tool.requires_db], db_mb or MIN_DB_MB, name, user, db_env)
        values = {
            "host": host,
            "url": f"https://{host}",
            "db": "db",
            "db_name": tool.name,
            "db_user": tool.name,
            "admin_email": self.order.customer_email,
            **mine,
        }
        login = prof.admin.login.format(**values) if prof.admin else None
        if prof.admin:
            pw = mine[prof.admin.password]
            values["admin_basic"] = base64.b64encode(f"{login}:{pw}".encode()).decode()
        env = {k: v.format(**values) for k, v in prof.env.items()}
        redis_env = {"REDIS_PASSWORD": mine["redis_password"]} if tool.requires_redis else {}
        return ToolStack(
            tool, prof, tool.name.replace("_", "-"), host, app_mb, db, redis_mb, env, redis_env,
            command=prof.command.format(**values) if prof.command else None,
            admin_login=login,
            agent_secrets={k: v.format(**values) for k, v in prof.agent_secrets.items()},
        )  # fmt: skip

    def credentials(self) -> list[dict[str, str]]:
        """What the customer logs in with, per tool (for the hub's one-time reveal). Tools the catalog marks
        ``admin_only`` are the operator's, not the customer's."""
        return [
            {"tool": st.name, "title": st.tool.title, "url": f"https://{st.host}", "login": st.admin_login,
             "password": self.secrets[f"{st.name}.{st.profile.admin.password}"]}
            for st in self.stacks
            if st.profile.admin and st.admin_login and not st.tool.admin_only
        ]  # fmt: skip

    # --- files ----------------------------------------------------------------------------------------------------

    def _ctx(self, **extra: object) -> dict[str, object]:
        return {
            "order": self.order, "domain": self.order.domain, "tier": self.tier, "s": self.settings,
            "root": self.settings.root, "nginx": self.settings.nginx, "stacks": self.stacks, "plan": self,
            "paths": {"stacks": STACKS_DIR, "nginx": NGINX_DIR, "ai": AI_DIR, "tls": TLS_DIR, "acme": ACME_DIR,
                      "state": STATE_DIR, "backups": BACKUP_DIR, "backup_status": BACKUP_STATUS,
                      "acme_ca": ACME_CA_BUNDLE, "certbot_ca_dropin": CERTBOT_CA_DROPIN,
                      "backup_lock": BACKUP_LOCK, "usage_ledger": USAGE_LEDGER, "docker_socket": DOCKER_SOCKET,
                      "secret_store": SECRET_STORE, "secret_import": SECRET_IMPORT_DIR},
            "agents": AGENTS, "agent_credential": AGENT_CREDENTIAL, "agent_dir": agent_dir,
            "images": {**{n: f"{self.settings.image_registry}/{n}" for n in AI_IMAGES}, "nginx": NGINX_IMAGE},
            "default_image_registry": IMAGE_REGISTRY,
            "openclaw_version": OPENCLAW_VERSION, "openclaw_port": OPENCLAW_PORT, "openclaw_config": OPENCLAW_CONFIG,
            "ai_gate": AI_GATE_NETWORK, "tool_network": tool_network,
            "secrets_proxy_url": "http://secrets-proxy:8100/v1", "safety_wrapper_url": "http://safety-wrapper:8200",
            "secrets": self.secrets, "redis_image": REDIS_IMAGE, "overhead_mb": LETSBE_OVERHEAD_MB,
            "dkim_selector": DKIM_SELECTOR,
            **extra,
        }  # fmt: skip

    def _file(self, template: str, path: str, mode: str = "0644", **extra: object) -> RenderedFile:
        return RenderedFile(path, render_template(template, **self._ctx(**extra)), mode)

    @property
    def llm_base_url(self) -> str:
        return self.settings.llm_base_url or self.settings.hub_url.rstrip("/") + LLM_RELAY_PATH

    def step_files(
        self, number: int, tokens: dict[str, str] | None = None, llm_key: str | None = None
    ) -> list[RenderedFile]:
        """The files step ``number`` writes on the server (production paths). ``tokens`` (the agents' one-time
        registration tokens) and ``llm_key`` (the tenant's LLM relay key) are what the hub issued for this run."""
        if number == 2:
            return [
                self._file("base/20auto-upgrades.j2", "/etc/apt/apt.conf.d/20auto-upgrades"),
                self._file("base/52letsbe-unattended.j2", "/etc/apt/apt.conf.d/52letsbe-unattended-upgrades"),
                self._file("base/sysctl.conf.j2", "/etc/sysctl.d/60-letsbe.conf"),
            ]
        if number == 3:
            files = [
                self._file("base/sshd.conf.j2", "/etc/ssh/sshd_config.d/10-letsbe.conf"),
                self._file("base/fail2ban.local.j2", "/etc/fail2ban/jail.d/letsbe.local"),
            ]
            if self.settings.ssh_user != "root":
                files.append(self._file("base/sudoers.j2", "/etc/sudoers.d/90-letsbe", "0440"))
            return files
        if number == 5:
            files = [self._file("base/daemon.json.j2", "/etc/docker/daemon.json")]
            if self.settings.docker_source == "debian":
                files.append(self._file("base/compose-v1-shim.j2", COMPOSE_SHIM, "0755"))
            return files
        if number == 6:
            return [
                self._file("nginx/nginx.conf.j2", f"{NGINX_DIR}/nginx.conf"),
                self._file("nginx/tls.conf.j2", f"{NGINX_DIR}/snippets/tls.conf"),
                self._file("nginx/proxy.conf.j2", f"{NGINX_DIR}/snippets/proxy.conf"),
                self._file("nginx/default.conf.j2", f"{NGINX_DIR}/conf.d/00-default.conf"),
                self._file("compose/nginx.yml.j2", f"{NGINX_DIR}/docker-compose.yml"),
            ]
        if number == 7:
            # The DNS-01 hooks speak the DNS service's acme-challenge route: one shared contract (letsbe_contracts).
            hooks = certbot_hooks.render(
                dns_url=self.settings.acme_url or self.settings.hub_url,
                credential_file=self.settings.root + AGENT_CREDENTIAL,
            )
            files = [
                self._file("tls/hook.env.j2", f"{ACME_DIR}/hook.env"),
                RenderedFile(f"{ACME_DIR}/auth-hook.sh", hooks["auth"], "0755"),
                RenderedFile(f"{ACME_DIR}/cleanup-hook.sh", hooks["cleanup"], "0755"),
                self._file("tls/tls-ensure.sh.j2", "/usr/local/sbin/letsbe-tls-ensure", "0755"),
                self._file("tls/cron.j2", "/etc/cron.d/letsbe-tls"),
            ]
            if self.settings.acme_ca_pem:
                # certbot (python-requests) trusts this bundle instead of the system's: for issuance by
                # letsbe-tls-ensure, and for renewals by Debian's certbot.timer through a drop-in.
                files.append(RenderedFile(ACME_CA_BUNDLE, self.settings.acme_ca_pem.strip() + "\n"))
                files.append(self._file("tls/certbot-ca.conf.j2", CERTBOT_CA_DROPIN))
            return files
        if number == 8:
            files = [
                self._file("backup/backup.sh.j2", "/usr/local/sbin/letsbe-backup", "0755"),
                self._file("backup/restore.sh.j2", RESTORE_SCRIPT, "0755"),
                self._file("backup/cron.j2", "/etc/cron.d/letsbe-backup"),
            ]
            if self.offsite is not None:
                obscured = {k: rclone_obscure(getattr(self.offsite, k)) for k in ("crypt_password", "crypt_salt")}
                files.append(self._file("backup/rclone.conf.j2", RCLONE_CONF, "0600", t=self.offsite, o=obscured))
                files.append(RenderedFile(BACKUP_REMOTE, f"{OFFSITE_REMOTE}:\n", "0600"))
            return files
        if number == 9:
            return [f for st in self.stacks for f in self.stack_files(st)]
        if number == 10:
            files = [
                self._file("compose/ai.yml.j2", f"{AI_DIR}/docker-compose.yml"),
                self._file("openclaw/openclaw.json.j2", f"{AI_DIR}/openclaw.json"),
                *self.ai_env_files(llm_key),
            ]
            for agent, token in (tokens or {}).items():
                files.append(RenderedFile(f"{agent_dir(agent)}/registration-token", token + "\n", "0600", "1001:1001"))
            return files
        return []

    def stack_files(self, st: ToolStack) -> list[RenderedFile]:
        """One tool's part of step 9: its stack, env files, config, backup config, vhost and agent secrets."""
        files = [
            self._file("compose/tool.yml.j2", f"{st.dir}/docker-compose.yml", st=st),
            self._file("compose/env.j2", f"{st.dir}/app.env", "0600", env=st.env),
        ]
        if st.db:
            files.append(self._file("compose/env.j2", f"{st.dir}/db.env", "0600", env=st.db.env))
        if st.redis_env:
            files.append(self._file("compose/env.j2", f"{st.dir}/redis.env", "0600", env=st.redis_env))
        for name in st.profile.config_files:
            files.append(self._file(f"{st.name}/{name}.j2", f"{st.dir}/etc/{name}", "0600", st=st))
        files.append(self._file("backup/backup.conf.j2", f"{st.dir}/backup.conf", st=st))
        if st.profile.public:
            files.append(self._file("nginx/vhost.conf.j2", self.vhost_path(st), st=st))
        for name, value in st.agent_secrets.items():
            # One line (heredoc); the Safety Wrapper's CLI drops the newline.
            files.append(RenderedFile(f"{SECRET_IMPORT_DIR}/{st.name}/{name}", value + "\n", "0600"))
        return files

    @staticmethod
    def vhost_path(st: ToolStack) -> str:
        return f"{NGINX_DIR}/conf.d/{st.tool.subdomain}.conf"

    def stack(self, tool: str) -> ToolStack:
        st = next((st for st in self.stacks if st.name == tool), None)
        if st is None:
            raise KeyError(f"{tool} is not among this tenant's tool stacks")
        return st

    # --- one tool added to or removed from a live tenant (the hub's tool-change job) -----------------------------

    def tool_add_script(self, tool: str) -> str:
        """Step 9 for one tool only: its files, its stack started (and set up), nginx reloaded with its vhost."""
        st = self.stack(tool)
        files = self.stack_files(st)
        self._check_heredocs(files)
        return render_template(
            "steps/09-tool-stacks.sh.j2", **self._ctx(step=BY_NUMBER[9], files=files, eof=HEREDOC_END, stacks=[st])
        )

    def agent_routes_script(self, added: str | None = None) -> str:
        """The part of step 10 that follows the tool list: the AI stack's compose file (the Safety Wrapper's tool
        networks) and the Safety Wrapper's env file (its tool URLs); the Safety Wrapper alone is recreated, and only
        when one of them changed. With ``added``, that tool's agent secrets go into the wrapper's store."""
        files = [
            self._file("compose/ai.yml.j2", f"{AI_DIR}/docker-compose.yml"),
            *self.ai_env_files(None, ("safety-wrapper",)),
        ]
        self._check_heredocs(files)
        step = Step(10, "ai-stack", "The Safety Wrapper's routes to the tenant's tools")
        return render_template(
            "tools/agent-routes.sh.j2", **self._ctx(step=step, files=files, eof=HEREDOC_END, added=added)
        )

    def final_backup_script(self, tool: str, dest: str) -> str:
        """A tool's data kept in ``dest`` before it is removed: its database dump, its volumes, its stack files."""
        step = Step(9, "tool-stacks", f"Final backup of {tool} before it is removed")
        ctx = self._ctx(step=step, files=[], eof=HEREDOC_END, st=self.stack(tool), dest=dest)
        return render_template("tools/final-backup.sh.j2", **ctx)

    def tool_remove_script(self, tool: str, backup: str) -> str:
        """A tool taken away (only once its final backup is in ``backup``): vhost, stack with its volumes, files."""
        st = self.stack(tool)
        step = Step(9, "tool-stacks", f"Remove {tool}")
        return render_template(
            "tools/remove.sh.j2",
            **self._ctx(step=step, files=[], eof=HEREDOC_END, st=st, backup=backup, vhost=self.vhost_path(st)),
        )

    def ai_env_files(self, llm_key: str | None, containers: tuple[str, ...] = AI_IMAGES) -> list[RenderedFile]:
        """One 0600 env file per AI container (``containers`` of them), each with only the keys that container uses.
        While a secrets-key rotation is unfinished (``ai.secrets_key_previous`` is kept), the Safety Wrapper also
        gets the previous key, so the store opens whichever of the two it is under (and is moved to the new one)."""
        sec = self.secrets
        previous = {"LETSBE_SW_SECRETS_PREVIOUS_KEY": sec[PREVIOUS_SECRETS_KEY]} if PREVIOUS_SECRETS_KEY in sec else {}
        env_files = {
            "openclaw": {
                "OPENCLAW_GATEWAY_TOKEN": sec["ai.openclaw_gateway_token"],
                "LETSBE_SENTINEL_KEY": sec["ai.sentinel_key"],
                "LETSBE_TOOLS_TOKEN": sec["ai.tools_token"],
            },
            "safety-wrapper": {
                "LETSBE_SW_TOOLS_TOKEN": sec["ai.tools_token"],
                "LETSBE_SW_SECRETS_KEY": sec["ai.secrets_key"],
                "LETSBE_SW_CHAT_TOKEN": sec["ai.openclaw_gateway_token"],  # the chat relay's calls to OpenClaw
                **previous,
                # Where each tool answers on its own network (not a secret; here to keep routing in one file).
                "LETSBE_SW_TOOL_URLS": json.dumps(
                    {
                        st.name: f"{st.profile.upstream_scheme}://{st.container}:{st.tool.container_port}"
                        for st in self.stacks
                    },
                    separators=(",", ":"),
                ),
            },
            "secrets-proxy": {
                "LETSBE_SP_SENTINEL_KEY": sec["ai.sentinel_key"],
                "LETSBE_SP_SECRETS_KEY": sec["ai.secrets_key"],
                # Issued by the hub (its relay meters the tenant by it); the provider's own key stays there.
                **({"LETSBE_SP_UPSTREAM_API_KEY": llm_key} if llm_key else {}),
            },
        }
        return [self._file("compose/env.j2", f"{AI_DIR}/{name}.env", "0600", env=env_files[name])
                for name in containers]  # fmt: skip

    def rotation_script(self, key: str, containers: tuple[str, ...], llm_key: str | None = None) -> str:
        """Part of step 10 for a key rotation: the env files of ``containers`` rendered again (with the tenant's
        secrets as they are now), then exactly those containers recreated. ``llm_key`` is needed when the Secrets
        Proxy's file is among them (a fresh relay key, as every run of step 10 gets)."""
        if "secrets-proxy" in containers and not llm_key:
            raise ValueError("the Secrets Proxy's env file needs its LLM relay key")
        files = self.ai_env_files(llm_key, containers)
        step = Step(10, "ai-stack", f"Rotate the {key}: re-render {', '.join(containers)} and recreate them")
        return render_template(
            "rotate/ai-keys.sh.j2", **self._ctx(step=step, files=files, eof=HEREDOC_END, containers=containers)
        )

    def server_task_script(self, task: str, task_id: str) -> str:
        """A decommission's task on the server (``final-backup`` or ``stop-agents``); its last line is
        ``LETSBE-RESULT <json>``, what the provisioner reports."""
        step = Step(8, "backups", f"Decommission: {task}") if task == "final-backup" else Step(10, "ai-stack", task)
        return render_template(
            f"decommission/{task}.sh.j2",
            **self._ctx(step=step, files=[], eof=HEREDOC_END, task_id=task_id, services=AI_IMAGES),
        )

    def files(self, tokens: dict[str, str] | None = None, llm_key: str | None = None) -> list[RenderedFile]:
        """Every file the pipeline writes, in step order."""
        return [f for step in STEPS for f in self.step_files(step.number, tokens, llm_key)]

    def step_script(self, number: int, tokens: dict[str, str] | None = None, llm_key: str | None = None) -> str:
        """The bash script of step ``number``: prelude, the step's files as heredocs, then its commands."""
        step = BY_NUMBER[number]
        files = self.step_files(number, tokens, llm_key)
        self._check_heredocs(files)
        return render_template(
            f"steps/{number:02d}-{step.name}.sh.j2", **self._ctx(step=step, files=files, eof=HEREDOC_END)
        )

    @staticmethod
    def _check_heredocs(files: list[RenderedFile]) -> None:
        for f in files:
            if HEREDOC_END in f.content:
                raise ValueError(f"{f.path}: content contains the heredoc delimiter")
