from pydantic import Field
from pydantic_settings import SettingsConfigDict

from letsbe_platform.settings import ServiceSettings


class DnsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_DNS_", env_file=".env", extra="ignore")

    service_name: str = "dns"
    port: int = Field(default=3851, ge=1, le=65535)
