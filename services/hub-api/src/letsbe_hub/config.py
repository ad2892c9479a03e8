"""The hub's settings: one class, env prefix ``LETSBE_HUB_``. The servers' and lifecycle knobs are mixins of their own.

A leaf: every context reads its settings from here, and this module imports no context.
"""

import ipaddress
import re

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from letsbe_contracts import Region
from letsbe_contracts.enums import Tier
from letsbe_platform.settings import ServiceSettings

# The Hetzner types overflow may order (x86: the tenant images are amd64), cheapest first among those that fit.
DEFAULT_SERVER_TYPES = (
    "cx22", "cx32", "cx42", "cx52", "cpx11", "cpx21", "cpx31", "cpx41", "cpx51",
    "ccx13", "ccx23", "ccx33", "ccx43", "ccx53", "ccx63",
)  # fmt: skip
_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n\r]{0,200})?$")


class ServerSettings(BaseModel):
    """The servers context's knobs: providers, the servers we hand to the provisioner, its workers."""

    # --- Hetzner Cloud overflow (seed §6.2) ---
    hetzner_api_url: str = "https://api.hetzner.cloud/v1"
    hetzner_api_token: SecretStr | None = None  # unset: no overflow; AUTO orders meeting an empty pool fail (retryable)
    hetzner_ssh_keys: list[str] = []  # names or ids of SSH keys in the Hetzner project
    hetzner_image: str = "debian-12"
    hetzner_locations: dict[Region, str] = {Region.EU: "nbg1", Region.US: "ash"}
    # Overflow orders the cheapest of these that has what the order's tools need (docs/provisioning.md).
    hetzner_server_types: list[str] = Field(default_factory=lambda: list(DEFAULT_SERVER_TYPES), min_length=1)
    # --- Netcup SCP (status and snapshots of pool servers) ---
    netcup_api_url: str = "https://www.servercontrolpanel.de/scp-core"
    netcup_token_url: str = "https://www.servercontrolpanel.de/realms/scp/protocol/openid-connect/token"  # noqa: S105
    netcup_refresh_token: SecretStr | None = None  # an offline refresh token (device-code flow, done once by ops)
    # A pool server back from a decommissioned tenant is wiped and reinstalled with this image flavour (its alias,
    # name or image name at netcup), with these SSH keys of the SCP user (ids at netcup) for the provisioner.
    netcup_reinstall_image: str = Field(default="Debian 12", min_length=1, max_length=100)
    netcup_ssh_key_ids: list[int] = []
    # --- every provider call ---
    provider_timeout_seconds: float = Field(default=15, gt=0)
    provider_retry_attempts: int = Field(default=4, ge=1, le=10)
    provider_backoff_seconds: float = Field(default=0.5, ge=0)
    # Polling a Hetzner action, a Netcup task or a new server's SSH: the first wait, doubled up to
    # provider_poll_seconds (ssh_probe_seconds for SSH). 1 s as Hetzner's clients start; the sandbox a few ms.
    provider_poll_first_seconds: float = Field(default=1.0, gt=0)
    provider_poll_seconds: float = Field(default=2.0, gt=0)  # Hetzner actions / Netcup tasks
    provider_action_timeout_seconds: float = Field(default=600, gt=0)
    # --- the servers we hand to the provisioner ---
    server_ssh_user: str = Field(default="letsbe", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    server_ssh_public_key: str | None = None  # cloud-init authorises it for server_ssh_user on overflow servers
    server_ssh_port: int = Field(default=22, ge=1, le=65535)  # probed on new overflow servers, passed on in events
    ssh_ready_timeout_seconds: float = Field(default=600, gt=0)
    ssh_probe_seconds: float = Field(default=5.0, gt=0)
    # --- workers ---
    allocation_concurrency: int = Field(default=4, ge=1, le=64)
    allocation_ack_wait_seconds: float = Field(default=60, gt=0)
    pool_check_seconds: float = Field(default=60, gt=0)
    migration_check_seconds: float = Field(default=24 * 3600, gt=0)  # proposals are per month; the check runs daily
    overflow_stale_seconds: float = Field(default=3600, gt=0)  # an intent stuck this long is cleaned up

    @field_validator("server_ssh_public_key")
    @classmethod
    def _one_public_key(cls, v: str | None) -> str | None:
        if v is not None and not _PUBLIC_KEY.match(v.strip()):
            raise ValueError("server_ssh_public_key must be one OpenSSH public key line")
        return v.strip() if v else v


class LifecycleSettings(BaseModel):
    """The lifecycle jobs' knobs: decommission, daily snapshots, restore/recovery/migration, tool changes, the job
    runner."""

    # Decommission: a final backup and the agents stopped on the server first (the provisioner's SSH path), then the
    # server and its data stay this long for the customer's export; then the Hetzner server is deleted (a Netcup
    # pool server is wiped, reinstalled with netcup_reinstall_image and preflighted before it rejoins the pool).
    decommission_export_window_hours: float = Field(default=14 * 24, ge=0)
    # Daily VPS snapshots (seed §8.1: daily, staggered, 3 rolling).
    snapshots_enabled: bool = True
    snapshots_keep: int = Field(default=3, ge=1, le=30)
    snapshot_schedule_seconds: float = Field(default=300, gt=0)  # how often the day's snapshot jobs are planned
    # Migration Hetzner -> Netcup: the source server is kept this long after the DNS switch (to switch back), then
    # deleted. With migrations_auto, each monthly proposal starts its migration job without an operator.
    migration_rollback_window_hours: float = Field(default=72, ge=0)
    migrations_auto: bool = False
    # A task a job asked of the provisioner or the DNS service (a final backup, a restore, a tool-change phase, …)
    # not reported within this time is asked again, and the step's attempt counts as failed. It replaces
    # decommission_task_, tenant_operation_ and tool_change_phase_timeout_seconds (no longer read).
    tenant_task_timeout_seconds: float = Field(default=3600, gt=0)
    # The job runner: how often it looks for due jobs, how long a claimed job's lease lasts (renewed while it
    # runs; a killed worker's job is picked up after it lapses), and retries of a failing step.
    lifecycle_poll_seconds: float = Field(default=5, gt=0)
    lifecycle_lease_seconds: float = Field(default=120, gt=0)
    lifecycle_max_attempts: int = Field(default=5, ge=1)
    lifecycle_retry_seconds: float = Field(default=60, gt=0)  # doubled per failed attempt, capped at 1 h


class BackupSettings(BaseModel):
    """The tenants' off-site backups: an S3-compatible store. Each tenant gets its own prefix in the bucket and its
    own encryption key (rclone crypt), issued by the hub when the tenant is provisioned. Unset endpoint: no off-site
    copies (the monitor raises backup.offsite for every tenant)."""

    offsite_s3_endpoint: str | None = None
    offsite_s3_region: str = Field(default="eu-central-1", min_length=1, max_length=40)
    offsite_s3_bucket: str = Field(default="letsbe-tenant-backups", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    offsite_s3_access_key_id: str | None = None
    offsite_s3_secret_access_key: SecretStr | None = None


class HubSettings(ServiceSettings, ServerSettings, LifecycleSettings, BackupSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_HUB_", env_file=".env", extra="ignore")

    service_name: str = "hub-api"
    port: int = Field(default=3847, ge=1, le=65535)
    # Creates (once) an admin token with every scope from this value, for the first operator and for scripts.
    bootstrap_admin_token: SecretStr | None = None

    # --- orders, payments and the welcome email --------------------------------------------------------------
    stripe_secret_key: SecretStr | None = None  # unset: orders are created without a checkout session
    stripe_webhook_secret: SecretStr | None = None  # unset: the webhook answers 503
    stripe_api_base: str = "https://api.stripe.com"
    stripe_currency: str = Field(default="eur", pattern=r"^[a-z]{3}$")
    # The monthly price per tier in cents; checkout charges the first month.
    tier_prices_cents: dict[Tier, int] = {Tier.LITE: 2900, Tier.BUILD: 4900, Tier.SCALE: 8900, Tier.ENTERPRISE: 16900}
    checkout_success_url: str = "https://letsbe.biz/welcome?order={order_id}"
    checkout_cancel_url: str = "https://letsbe.biz/pricing?order={order_id}"
    smtp_host: str | None = None  # unset: welcome emails stay queued until it is set
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool | None = None  # None: STARTTLS when the server offers it
    smtp_timeout_seconds: float = Field(default=30, gt=0)
    mail_from: str = "LetsBe <welcome@letsbe.biz>"
    # The tools' admin logins (credentials context): Fernet key they are kept under until the customer has seen them
    # once, through a link in the welcome email that works once and for this long. public_url: the hub as customers
    # reach it (the link's base).
    credentials_key: SecretStr | None = None
    credential_link_ttl_seconds: int = Field(default=72 * 3600, ge=60, le=30 * 24 * 3600)
    public_url: str = "https://hub.letsbe.biz"
    sse_ping_seconds: float = Field(default=15, gt=0)

    # --- self-serve subscriptions and billing (billing/) -------------------------------------------------------
    # Stripe Price per "tier:region" (e.g. "build:eu": "price_..."). Any missing pair is found by its lookup_key
    # (letsbe_<tier>_<region>_monthly_<currency>) or created at start-up with tier_prices_cents as a monthly price.
    stripe_price_ids: dict[str, str] = {}
    billing_portal_return_url: str = "https://letsbe.biz/account"
    # Dunning: after the first failed renewal the tenant keeps running this long, then its tools are suspended.
    billing_grace_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    # After the subscription ends the customer has this long to export their data, then the tenant is decommissioned.
    billing_export_window_seconds: int = Field(default=30 * 24 * 3600, ge=0)
    billing_tick_seconds: float = Field(default=60, gt=0)  # how often the billing worker looks for due steps
    # Abuse limits of the public order route: attempts per client address (an IPv6 /64) per window, shared by
    # every hub replica (Postgres).
    public_order_rate_limit: int = Field(default=10, ge=1)
    public_order_rate_window_seconds: int = Field(default=3600, ge=1)
    # Every per-address limit (orders, sign-in requests, operators' failed sign-ins) believes X-Forwarded-For only
    # from these proxies (addresses or CIDRs), e.g. the hub's nginx: ["172.20.0.0/16"]. Unset, nginx is one client.
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(p.strip(), strict=False)) for p in v]
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {exc} (give addresses or CIDRs, e.g. 172.16.0.0/12)") from None

    # Refused on top of the maintained list of the disposable-email-domains package (and their subdomains).
    disposable_email_domains: list[str] = []

    # --- the operators' web console ----------------------------------------------------------------------------
    # Fernet key the operators' TOTP secrets are kept under (they are read back to check a code). Unset: operator
    # accounts can be neither created nor used.
    operator_totp_key: SecretStr | None = None
    # A tenant's DNS records come from the DNS service (GET /api/v1/admin/records) with its read token; unset token:
    # the tenant page says they cannot be shown.
    dns_url: str = "http://127.0.0.1:3851"
    dns_read_token: SecretStr | None = None
    dns_timeout_seconds: float = Field(default=3, gt=0)

    # --- tenants, agents, commands and rollouts ----------------------------------------------------------------
    heartbeat_interval_seconds: int = Field(default=60, ge=1, le=3600)
    # The interval handed to agents stretches so the whole fleet stays under this many heartbeats per second.
    heartbeat_max_per_second: float = Field(default=2000, gt=0)
    registration_token_ttl_seconds: int = Field(default=1800, ge=1, le=7 * 24 * 3600)
    credential_rotation_grace_seconds: int = Field(default=3600, ge=0)
    command_redeliver_seconds: float = Field(default=30, gt=0)  # a delivered command not acked by then goes again
    command_sweep_seconds: float = Field(default=5, gt=0)
    # A waiting long-poll looks again this often even unwoken (a NOTIFY lost while the waker reconnected).
    command_long_poll_recheck_seconds: float = Field(default=5, gt=0)
    rollout_tick_seconds: float = Field(default=5, gt=0)

    # --- the LLM relay: tenants' Secrets Proxies reach the provider through the hub ------------------
    # The platform's provider account. Only the hub holds this key; each tenant gets its own relay key (llm/).
    llm_upstream_base_url: str = "https://api.openai.com/v1"
    llm_upstream_api_key: SecretStr | None = None  # unset: the relay answers 503
    llm_upstream_timeout_seconds: float = Field(default=600, gt=0)
    # How long a tenant's previous relay key keeps working after a new one is issued (its proxy switches over).
    llm_key_grace_seconds: int = Field(default=3600, ge=0)
    llm_max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)

    # --- the web foundation: browser sessions of customers (portal) and operators (console) --------------------
    # A session ends after this long without a request, and in any case this long after sign-in.
    web_session_idle_seconds: int = Field(default=2 * 3600, ge=60, le=30 * 24 * 3600)
    web_session_lifetime_seconds: int = Field(default=7 * 24 * 3600, ge=300, le=90 * 24 * 3600)
    # False drops the cookies' Secure flag, and only for a plain-http request to a loopback address (local dev).
    web_cookie_secure: bool = True

    # --- the chat relay: customers' apps <-> their tenant's AI agent, through NATS JetStream (relay/) ------------
    # One WebSocket message (a frame's JSON) larger than this is refused with close code 1009.
    relay_max_message_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Flow control per connection: at most this many messages sent (or queued) and not acknowledged; the hub stops
    # reading the conversation while the window is full. Full for this long: a slow consumer, closed with 4408 (it
    # resumes from its last acknowledged id when it reconnects).
    relay_max_unacked: int = Field(default=256, ge=1, le=100_000)
    relay_slow_consumer_seconds: float = Field(default=30, gt=0)
    # How long the hub keeps relayed messages for resuming (per tenant and direction, at most the count as well).
    relay_retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    relay_retained_per_tenant: int = Field(default=10_000, ge=10)
    # The first frame (hello) must come within this many seconds, or the connection is closed with 4400.
    relay_hello_timeout_seconds: float = Field(default=10, gt=0)
    # Browsers send Origin: a WebSocket from a page on another origin is refused (403). Apps send none.
    relay_allowed_origins: list[str] = ["https://letsbe.biz", "https://app.letsbe.biz", "https://hub.letsbe.biz"]

    # --- customer accounts and the portal -------------------------------------------------------------------------
    # The emailed sign-in link: works once, for this long. Per email, at most this many links an hour (more
    # requests get the same answer and no email); per client address and hub process, this many requests a minute.
    sign_in_link_ttl_seconds: int = Field(default=15 * 60, ge=60, le=24 * 3600)
    sign_in_links_per_email_per_hour: int = Field(default=5, ge=1, le=100)
    sign_in_requests_per_ip_per_minute: int = Field(default=10, ge=1, le=10_000)
    # The LLM tokens (in + out, metered by the relay) included per calendar month in each tier.
    tier_monthly_tokens: dict[Tier, int] = {
        Tier.LITE: 2_000_000,
        Tier.BUILD: 5_000_000,
        Tier.SCALE: 15_000_000,
        Tier.ENTERPRISE: 50_000_000,
    }
