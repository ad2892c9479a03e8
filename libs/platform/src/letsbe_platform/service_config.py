"""The settings every service has, as a plain pydantic model: the hub's services read them from the environment
with pydantic-settings (``letsbe_platform.settings.ServiceSettings``), the tenant agents with their own small loader
(``letsbe_agent.settings``), which keeps pydantic-settings out of their memory.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, Field, field_validator

# Read by the development and test tooling (devstack, `make run`, the sandbox), never by a service's settings. They
# are declared here so that an agent, which refuses unknown LETSBE_ variables, does not take them for a typo.
TOOLING_VARIABLES = frozenset(
    {
        "LETSBE_DATA_DIR",
        "LETSBE_PG_PORT",
        "LETSBE_PG_BIN_DIR",
        "LETSBE_PG_ADMIN_URL",
        "LETSBE_NATS_PORT",
        "LETSBE_NATS_CLUSTER",
        "LETSBE_REPLICAS",
        "LETSBE_SANDBOX_DIR",
        "LETSBE_SANDBOX_SSH_PORT",
        "LETSBE_SANDBOX_SLOW_SECONDS",
    }
)


class ServiceConfig(BaseModel):
    service_name: str = "letsbe"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    log_json: bool = True
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    nats_url: str | None = Field(default=None, validation_alias=AliasChoices("NATS_URL"))
    # Every stream and subject lives under this root; tests give each test its own so they never see each other.
    bus_namespace: str = Field(
        default="letsbe", pattern=r"^[a-z][a-z0-9_]{0,30}$", validation_alias=AliasChoices("LETSBE_BUS_NAMESPACE")
    )
    bus_replicas: int = Field(default=1, ge=1, le=5, validation_alias=AliasChoices("LETSBE_BUS_REPLICAS"))
    # Sandbox mode of `make run`: providers are loopback fakes. Said in the logs and on every HTTP response.
    sandbox: bool = Field(default=False, validation_alias=AliasChoices("LETSBE_SANDBOX"))
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # Request size caps: a larger body is a 413 (routes that need more declare it, web.create_service_app), larger
    # request headers a 431 (serve.py).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=32 * 1024, ge=4096)

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")
        return v
