from pathlib import Path
from typing import Annotated, ClassVar

from msgspec import Meta

from letsbe_agent.settings import AgentSettings, SecretStr


class SafetyWrapperSettings(AgentSettings):
    env_prefix: ClassVar[str] = "LETSBE_SW_"

    service_name: str = "safety-wrapper"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8200
    # The agent runtime (letsbe_agent.AgentSettings: hub_url, state_dir, …): this agent also reports backups
    # (daily, from backup-status.json) and the token usage the Secrets Proxy records in the shared ledger.
    report_backups: bool = True
    report_usage: bool = True

    # --- tool gate (tools/) ---
    # The AI agent's bearer token for /api/v1/tools/*. Unset: every tool call is refused (fail closed).
    tools_token: SecretStr | None = None
    tools_policy_path: Path | None = None  # default: the policy shipped with the package
    tools_dir: Path = Path("/var/lib/letsbe/safety-wrapper/tools")  # audit.jsonl, state.json
    # The tenant's secret store (Fernet): shared with the Secrets Proxy, which reads the same file and key.
    secrets_path: Path = Path("/var/lib/letsbe/secrets/secrets.enc")
    secrets_key: SecretStr | None = None
    # Set only while the provisioner rotates the secrets key: a store still under this key is re-encrypted under
    # secrets_key when loaded (atomically), then the provisioner renders secrets_key alone again.
    secrets_previous_key: SecretStr | None = None
    tool_host: str = "127.0.0.1"
    tool_ports: dict[str, int] = {}  # overrides the catalog's host ports (tests, unusual installs)
    # Per tool, the base URL that wins over tool_host + port: in a container, each tool answers on its own network
    # (e.g. {"ghost": "http://letsbe-ghost:2368"}, rendered by the provisioner).
    tool_urls: dict[str, str] = {}
    tool_timeout_seconds: Annotated[float, Meta(gt=0, le=600)] = 30.0
    # A larger tool-call body is refused with 413 before it is held in memory (the container's limit is 128 MB).
    max_request_bytes: Annotated[int, Meta(gt=0)] = 1024 * 1024

    # --- chat relay (chat/): customers' messages from the hub to the AI agent, its answers back ---
    # The AI agent's chat API: OpenClaw's gateway, OpenAI Chat Completions (rendered by the provisioner). Unset: the
    # Safety Wrapper does not open the relay.
    chat_url: str | None = None
    chat_token: SecretStr | None = None  # the gateway's token
    chat_model: str = "openclaw"
    chat_timeout_seconds: Annotated[float, Meta(gt=0)] = 300.0
