from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from msgspec import Meta

from letsbe_agent.settings import AgentSettings, SecretStr

Positive = Annotated[int, Meta(gt=0)]


class SecretsProxySettings(AgentSettings):
    env_prefix: ClassVar[str] = "LETSBE_SP_"

    service_name: str = "secrets-proxy"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8100

    # --- LLM pass-through (proxy/) ---
    # What the agent sends as its API key: an opaque value that is worth nothing outside this tenant.
    # Unset: every call is refused (fail closed).
    sentinel_key: SecretStr | None = None
    upstream_base_url: str = "https://api.openai.com/v1"
    upstream_api_key: SecretStr | None = None  # attached at egress, only to the host below
    upstream_key_host: str | None = None  # pin (default: the host of upstream_base_url); a mismatch refuses to start
    upstream_timeout_seconds: Annotated[float, Meta(gt=0)] = 600.0
    # The tenant's secret store, shared with the Safety Wrapper (same file, same Fernet key).
    secrets_path: Path = Path("/var/lib/letsbe/secrets/secrets.enc")
    secrets_key: SecretStr | None = None
    # Per match class: "mask" (stable placeholder) or "block" (refuse the request). Defaults: private_key blocks,
    # everything else masks. Classes: secret, private_key, aws_access_key, aws_secret_key, gcp_api_key, stripe_key,
    # github_token, llm_api_key, slack_token, jwt, connection_password.
    redaction_policy: dict[str, Literal["mask", "block"]] = {}
    # Memory bounds (the container's limit is 64 MB; a body is redacted whole, which takes a few times its size).
    # A request body above the first is refused with 413; a non-streamed answer above the second with 502 (a
    # stream is relayed as it comes, holding at most that much of an unfinished event or held-back text); all
    # bodies held at once stay under the third (a call that does not fit waits for the others).
    max_request_bytes: Positive = 1024 * 1024
    max_response_bytes: Positive = 1024 * 1024
    body_budget_bytes: Positive = 1024 * 1024

    def _check(self) -> None:
        super()._check()
        if self.body_budget_bytes < max(self.max_request_bytes, self.max_response_bytes):
            raise ValueError("body_budget_bytes must be at least max_request_bytes and max_response_bytes")
