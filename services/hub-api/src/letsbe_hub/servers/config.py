"""The servers context's part of :class:`letsbe_hub.config.HubSettings` (env prefix ``LETSBE_HUB_``).

A mixin, so the hub keeps one settings class while each context keeps its knobs next to its code.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, SecretStr, field_validator

from letsbe_contracts import Region
from letsbe_hub.providers.hetzner import DEFAULT_SERVER_TYPES

_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( [^\n\r]{0,200})?$")


class ServerSettings(BaseModel):
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
