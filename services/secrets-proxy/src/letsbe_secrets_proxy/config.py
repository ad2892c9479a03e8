from pydantic import Field
from pydantic_settings import SettingsConfigDict

from letsbe_agent.settings import AgentSettings


class SecretsProxySettings(AgentSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_SP_", env_file=".env", extra="ignore")

    service_name: str = "secrets-proxy"
    port: int = Field(default=8100, ge=1, le=65535)
