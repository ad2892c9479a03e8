import json
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from letsbe_platform.settings import ServiceSettings


class DnsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_DNS_", env_file=".env", extra="ignore")

    service_name: str = "dns"
    port: int = Field(default=3851, ge=1, le=65535)

    # Cloudflare: an API token scoped to Zone.DNS:Edit + Zone:Read of the customer zones. Never logged.
    cloudflare_api_token: SecretStr | None = None
    cloudflare_base_url: str = "https://api.cloudflare.com/client/v4"
    cloudflare_timeout_seconds: float = Field(default=20.0, gt=0)
    # Retries of one API call (429 honouring Retry-After, 5xx, connection errors) before the call fails.
    cloudflare_max_retries: int = Field(default=4, ge=0, le=10)
    record_ttl: int = Field(default=1, ge=1, le=86400)  # 1 = Cloudflare's "automatic"

    # Verification: query the zone's authoritative nameservers. In tests and the sandbox, an override points
    # at the fake's loopback DNS server instead of resolving the zone's NS names.
    nameserver: str | None = None
    nameserver_port: int = Field(default=53, ge=1, le=65535)
    verify_timeout_seconds: float = Field(default=180.0, gt=0)
    verify_first_interval_seconds: float = Field(default=0.005, gt=0)  # doubled after each miss, up to:
    verify_interval_seconds: float = Field(default=2.0, gt=0)
    dns_query_timeout_seconds: float = Field(default=2.0, gt=0)

    # server-allocated consumer: attempts before order-failed, and the delays between them.
    consumer_max_deliver: int = Field(default=6, ge=1, le=50)
    # NoDecode: the validator below reads "1,2,5" as well as a JSON list (the env source would demand JSON).
    consumer_backoff_seconds: Annotated[tuple[float, ...], NoDecode] = (5.0, 15.0, 30.0, 60.0, 120.0)
    # Redelivery after a crash waits this long; handlers call in_progress() while they verify, so it can be short.
    consumer_ack_wait_seconds: float = Field(default=60.0, gt=0)

    # ACME DNS-01 hooks authenticate by forwarding the agent's credential to the hub's GET /api/v1/tenant/me.
    hub_url: str = "http://127.0.0.1:3847"
    hub_timeout_seconds: float = Field(default=5.0, gt=0)
    acme_visible_timeout_seconds: float = Field(default=120.0, gt=0)
    # The hub reads a tenant's records with this bearer (GET /api/v1/admin/records); unset: that route answers 503.
    read_token: SecretStr | None = None

    @field_validator("consumer_backoff_seconds", mode="before")
    @classmethod
    def _csv(cls, v: object) -> object:
        # LETSBE_DNS_CONSUMER_BACKOFF_SECONDS="1,2,5" reads as well as a JSON list.
        if isinstance(v, str):
            text = v.strip()
            return json.loads(text) if text.startswith("[") else tuple(float(x) for x in text.split(",") if x.strip())
        return v
