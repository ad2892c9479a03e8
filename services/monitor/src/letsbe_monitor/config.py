from pydantic import Field
from pydantic_settings import SettingsConfigDict

from letsbe_platform.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_MONITOR_", env_file=".env", extra="ignore")

    service_name: str = "monitor"
    port: int = Field(default=3852, ge=1, le=65535)
