from pydantic import Field
from pydantic_settings import SettingsConfigDict

from letsbe_platform.settings import ServiceSettings


class SafetyWrapperSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_SW_", env_file=".env", extra="ignore")

    service_name: str = "safety-wrapper"
    port: int = Field(default=8200, ge=1, le=65535)
