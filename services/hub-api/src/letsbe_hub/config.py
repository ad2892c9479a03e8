from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from letsbe_platform.settings import ServiceSettings


class HubSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_HUB_", env_file=".env", extra="ignore")

    service_name: str = "hub-api"
    port: int = Field(default=3847, ge=1, le=65535)
    # Creates (once) an admin token with every scope from this value, for the first operator and for scripts.
    bootstrap_admin_token: SecretStr | None = None
