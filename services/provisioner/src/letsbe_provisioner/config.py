from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from letsbe_platform.settings import ServiceSettings
from letsbe_provisioner.rendering.plan import LETS_ENCRYPT


class ProvisionerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_PROVISIONER_", env_file=".env", extra="ignore")

    service_name: str = "provisioner"
    port: int = Field(default=3850, ge=1, le=65535)

    # --- the Hub (registration tokens, tenant status) ---
    hub_url: str = "http://127.0.0.1:3847"
    hub_token: SecretStr | None = None  # a Hub API token with the tenants:enroll scope
    tenant_hub_url: str | None = None  # the Hub as tenants reach it (agents); default: hub_url
    # Where tenants' Secrets Proxies send model calls; default: the hub's LLM relay (tenant_hub_url + /api/v1/llm/v1).
    llm_base_url: str | None = None
    acme_url: str | None = None  # where tenants' certbot hooks reach /api/v1/tenant/acme-challenge; default: the above
    hub_timeout_seconds: float = Field(default=10.0, gt=0)

    # --- TLS: the ACME server tenants' certbot uses (rendered into letsbe-tls-ensure by step 7) ---
    acme_directory_url: str = Field(default=LETS_ENCRYPT, pattern=r"^https://[^\s'\"]+$")
    # A PEM file (on this machine) of the CA that ACME server's HTTPS certificate chains to, when it is not a
    # public one: a test CA such as pebble's. Unset: certbot trusts the system's CAs, as Let's Encrypt needs.
    acme_ca_bundle_file: Path | None = None

    # --- SSH ---
    ssh_private_key: SecretStr | None = None  # OpenSSH/PEM text; or a file:
    ssh_private_key_file: Path | None = None
    ssh_connect_timeout_seconds: float = Field(default=20.0, gt=0)
    # "" on real servers. Tests (and the sandbox of `make run`) point it at the loopback SSH target's sandbox root;
    # "{ipv4}" in it stands for the server's address (the sandbox gives every server its own root).
    remote_root: str = ""

    # --- secrets at rest ---
    secrets_key: SecretStr | None = None  # a Fernet key (32 url-safe base64 bytes) for the tenant secrets we keep

    # --- the pipeline ---
    max_concurrent_jobs: int = Field(default=20, ge=1, le=500)
    step_timeout_seconds: float = Field(default=1800.0, gt=0)
    step_attempts: int = Field(default=3, ge=1, le=10)  # per step, for transient faults
    retry_backoff_seconds: tuple[float, ...] = (10.0, 30.0, 90.0)
    lease_seconds: float = Field(default=60.0, gt=0)  # a job whose owner stopped renewing this long is taken over
    ack_wait_seconds: float = Field(default=60.0, gt=0)
    log_flush_seconds: float = Field(default=0.25, gt=0)
    registration_timeout_seconds: float = Field(default=900.0, gt=0)
    registration_poll_seconds: float = Field(default=5.0, gt=0)
    # A secrets-key rotation waits this long for the Safety Wrapper to move the tenant's store to the new key.
    rekey_timeout_seconds: float = Field(default=300.0, gt=0)
    # A restore/migration's check: how long each restored tool may take to answer HTTP again.
    verify_seconds: int = Field(default=120, ge=1)
    agent_image_tag: str = "latest"
    agent_heartbeat_seconds: float = Field(default=60, gt=0)  # rendered into the agents' environment
    agent_backoff_max_seconds: float = Field(default=60, gt=0)
    # Preflight's CPU minimum; unset: derived from the order's memory budget (docs/provisioning.md).
    preflight_min_cpus: int | None = Field(default=None, ge=1)

    def acme_ca_pem(self) -> str | None:
        """The CA bundle's PEM text (read when a job renders its plan, so a replaced file is picked up)."""
        return self.acme_ca_bundle_file.read_text(encoding="ascii") if self.acme_ca_bundle_file else None

    @field_validator("acme_ca_bundle_file")
    @classmethod
    def _ca_bundle(cls, v: Path | None) -> Path | None:
        if v is None:
            return v
        try:
            pem = v.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {v}: {exc}") from None
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError(f"{v} holds no PEM certificate")
        return v

    # --- the tenant server ---
    # A server handed over with root as its SSH user is provisioned as root up to step 3, which installs our key
    # for this user (passwordless sudo) and refuses root logins; every later step logs in as this user.
    provisioning_user: str = Field(default="letsbe", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    # fail2ban never bans these (the provisioner's address as the servers see it: it logs in, and may retry).
    control_plane_ips: tuple[str, ...] = ()
    # Where Docker comes from: Docker's apt repository (production), or Debian's docker.io + docker-compose (v1,
    # with a `docker compose` shim) where download.docker.com cannot be reached.
    docker_source: Literal["docker", "debian"] = "docker"
    # A pull-through mirror for Docker Hub images (dockerd's registry-mirrors); unset: Docker Hub itself.
    registry_mirror: str | None = None
    # Where the AI stack's images (OpenClaw, Safety Wrapper, Secrets Proxy) come from.
    image_registry: str = "code.letsbe.solutions/letsbe"
    # Registries (host:port) dockerd may reach over plain HTTP (a mirror or registry on a private network).
    insecure_registries: tuple[str, ...] = ()
    # What a server that is not a whole VM (a container, like the test VPS) cannot do; each skip is said in the
    # step's output. Swap file size (0: none); whether to apply the host-wide vm.* sysctls.
    swap_mb: int = Field(default=2048, ge=0)
    vm_sysctls: bool = True
    # False: the apps in the containers are stand-ins that only sleep (the test VPS), so nothing is set up inside
    # them: no tool admin accounts (templates/setup), no secrets into the Safety Wrapper's store. Steps 9/10 say so.
    apps_setup: bool = True

    @field_validator("remote_root")
    @classmethod
    def _root(cls, v: str) -> str:
        if v and (not v.startswith("/") or v.endswith("/")):
            raise ValueError("remote_root is an absolute path without a trailing slash, or empty")
        return v

    def root_for(self, ipv4: object) -> str:
        """The remote root on the server at ``ipv4``."""
        return self.remote_root.replace("{ipv4}", str(ipv4))

    def missing(self) -> list[str]:
        """Settings the pipeline cannot run without (reported at start; the service stays up for /healthz)."""
        missing = []
        if self.hub_token is None:
            missing.append("LETSBE_PROVISIONER_HUB_TOKEN")
        if self.ssh_private_key is None and self.ssh_private_key_file is None:
            missing.append("LETSBE_PROVISIONER_SSH_PRIVATE_KEY(_FILE)")
        if self.secrets_key is None:
            missing.append("LETSBE_PROVISIONER_SECRETS_KEY")
        return missing
