"""Settings every agent has (each agent's own settings class extends this with its env prefix).

An agent refuses to start on a ``LETSBE_`` variable that nothing declares: a misspelt name (a compose file saying
``LETSBE_SW_BACKUP_STATUS_FILE`` where the setting is ``backup_status_path``) would otherwise be ignored silently
and the agent would run on a default that points somewhere else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator

from letsbe_platform.settings import TOOLING_VARIABLES, ServiceSettings

# Each agent's own prefix. A variable under another agent's prefix is that agent's (it checks its own environment).
AGENT_PREFIXES = ("LETSBE_SW_", "LETSBE_SP_")


def declared_variables(cls: type[ServiceSettings]) -> frozenset[str]:
    """Every environment variable ``cls`` reads (upper case: pydantic-settings matches names case-insensitively)."""
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    names = set(TOOLING_VARIABLES)
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(a).upper() for a in alias.choices}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return frozenset(names)


def unknown_variables(cls: type[ServiceSettings], environ: Mapping[str, str]) -> list[str]:
    """``LETSBE_`` variables in ``environ`` that ``cls`` does not read and that are no other agent's."""
    own = str(cls.model_config.get("env_prefix", "")).upper()
    others = tuple(p for p in AGENT_PREFIXES if p != own)
    declared = declared_variables(cls)
    return sorted(
        name
        for name in environ
        if name.upper().startswith("LETSBE_") and name.upper() not in declared and not name.upper().startswith(others)
    )


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S]) -> S:
    """How an agent starts (its ``__main__``): its settings from its environment, or exit 1 with one line that names
    what is wrong. Only here, not in every construction: other code builds settings objects in processes whose
    environment is not an agent's (the sandbox reads the defaults, tests pass values)."""
    unknown = unknown_variables(cls, os.environ)
    if unknown:
        service = cls.model_fields["service_name"].default
        sys.exit(
            f"error: {service}: unknown variable(s) in the environment: {', '.join(unknown)} "
            "(not a setting of this agent: a misspelt name? see its settings class)"
        )
    try:
        return cls()
    except ValidationError as exc:
        # Never the input values: they hold secrets.
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        sys.exit(f"error: {cls.__name__}: invalid settings: {problems}")


class AgentSettings(ServiceSettings):
    # Unset: the agent serves its local API only and never talks to a hub (development, unit tests of its routes).
    hub_url: str | None = None
    hub_timeout_seconds: float = Field(default=10, gt=0)
    # The credential, the command journal, unsent reports. Default: /var/lib/letsbe/<service_name>/agent.
    state_dir: Path | None = None  # always set after validation
    # The one-time token the provisioner leaves on the tenant: from the environment or from a file.
    registration_token: SecretStr | None = None
    registration_token_file: Path | None = None
    # Until the hub says otherwise (every heartbeat answer carries the interval to use).
    heartbeat_interval_seconds: float = Field(default=60, gt=0)
    heartbeat_jitter: float = Field(default=0.1, ge=0, le=0.5)  # ± this fraction of the interval
    heartbeat_details_every_seconds: float = Field(default=300, gt=0)  # the heavy part at least this often
    backoff_base_seconds: float = Field(default=1, gt=0)
    backoff_max_seconds: float = Field(default=60, gt=0)
    long_poll: bool = True
    long_poll_seconds: int = Field(default=25, ge=1, le=30)
    docker_socket: Path = Path("/var/run/docker.sock")
    docker_api_version: str = Field(default="v1.43", pattern=r"^v1\.\d+$")
    disk_path: str = "/"
    update_poll_seconds: float = Field(default=1.0, gt=0)
    # Backups (seed §8.3): letsbe-backup writes the status file, and holds an flock on the lock file while it runs.
    report_backups: bool = False
    backup_status_path: Path = Path("/var/lib/letsbe/backup/backup-status.json")
    backup_lock_path: Path = Path("/var/lib/letsbe/backup/backup.lock")
    backup_check_at: time = time(6, 0)
    backup_check_timezone: str = "UTC"
    # Token usage: the Secrets Proxy records into this ledger; the agent that reports usage sends it hourly.
    usage_ledger_path: Path | None = Path("/var/lib/letsbe/shared/usage.sqlite3")
    report_usage: bool = False
    usage_report_every_seconds: float = Field(default=300, gt=0)

    @model_validator(mode="after")
    def _default_state_dir(self) -> AgentSettings:
        if self.state_dir is None:
            self.state_dir = Path("/var/lib/letsbe") / self.service_name / "agent"
        return self
