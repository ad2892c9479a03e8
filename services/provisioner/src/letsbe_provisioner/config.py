from letsbe_platform.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class ProvisionerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LETSBE_PROVISIONER_", env_file=".env", extra="ignore")

    service_name: str = "provisioner"
    port: int = Field(default=3850, ge=1, le=65535)
