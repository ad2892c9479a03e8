"""Base settings every service extends with its own env prefix (``LETSBE_HUB_`` …).

DATABASE_URL and NATS_URL are shared by all services (one Postgres with a schema per service, one NATS), so they
are read without the prefix. The fields themselves are in :mod:`letsbe_platform.service_config` (the tenant agents
read them without pydantic-settings: ``letsbe_agent.settings``).
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from letsbe_platform.service_config import TOOLING_VARIABLES, ServiceConfig

__all__ = ["TOOLING_VARIABLES", "ServiceSettings"]


class ServiceSettings(BaseSettings, ServiceConfig):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")
