from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from letsbe_platform.settings import ServiceSettings


class HubSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_HUB_", env_file=".env", extra="ignore")

    service_name: str = "hub-api"
    port: int = Field(default=3847, ge=1, le=65535)
    # Creates (once) an admin token with every scope from this value, for the first operator and for scripts.
    bootstrap_admin_token: SecretStr | None = None

    # --- tenants, agents, commands and rollouts (issue 7) -------------------------------------------------------
    heartbeat_interval_seconds: int = Field(default=60, ge=1, le=3600)
    # The interval handed to agents stretches so the whole fleet stays under this many heartbeats per second.
    heartbeat_max_per_second: float = Field(default=2000, gt=0)
    registration_token_ttl_seconds: int = Field(default=1800, ge=1, le=7 * 24 * 3600)
    credential_rotation_grace_seconds: int = Field(default=3600, ge=0)
    command_redeliver_seconds: float = Field(default=30, gt=0)  # a delivered command not acked by then goes again
    command_sweep_seconds: float = Field(default=5, gt=0)
    rollout_tick_seconds: float = Field(default=5, gt=0)
