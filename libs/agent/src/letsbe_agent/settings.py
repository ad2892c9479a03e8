"""Settings every agent has (each agent's own settings class extends this with its env prefix), read from the
environment by a small loader instead of pydantic-settings (about 2 MB less in a 64 MB container).

As pydantic-settings reads them: ``<prefix><field>`` (or the field's alias), names in any case, a dict or list field
as JSON; constructing a settings class (``model_validate`` too) reads the environment, and the values it is given
win over it.

An agent refuses to start on a ``LETSBE_`` variable that nothing declares: a misspelt name (a compose file saying
``LETSBE_SW_BACKUP_STATUS_FILE`` where the setting is ``backup_status_path``) would otherwise be ignored silently
and the agent would run on a default that points somewhere else.
"""

from __future__ import annotations

import json
import os
import sys
import types
import typing
from collections.abc import Mapping
from datetime import time
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from letsbe_platform.service_config import TOOLING_VARIABLES, ServiceConfig

# Each agent's own prefix. A variable under another agent's prefix is that agent's (it checks its own environment).
AGENT_PREFIXES = ("LETSBE_SW_", "LETSBE_SP_")


def field_variables(cls: type[AgentSettings]) -> dict[str, tuple[str, ...]]:
    """Field name → the environment variables it is read from (upper case: names match in any case)."""
    out = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            out[name] = tuple(str(a).upper() for a in alias.choices)
        elif isinstance(alias, str):
            out[name] = (alias.upper(),)
        else:
            out[name] = (f"{cls.env_prefix}{name}".upper(),)
    return out


def declared_variables(cls: type[AgentSettings]) -> frozenset[str]:
    """Every environment variable ``cls`` reads, and the tooling's own."""
    return frozenset(TOOLING_VARIABLES).union(*field_variables(cls).values())


def unknown_variables(cls: type[AgentSettings], environ: Mapping[str, str]) -> list[str]:
    """``LETSBE_`` variables in ``environ`` that ``cls`` does not read and that are no other agent's."""
    own = cls.env_prefix.upper()
    others = tuple(p for p in AGENT_PREFIXES if p != own)
    declared = declared_variables(cls)
    return sorted(
        name
        for name in environ
        if name.upper().startswith("LETSBE_") and name.upper() not in declared and not name.upper().startswith(others)
    )


def _is_json(annotation: Any) -> bool:
    """A field whose variable holds JSON (a dict, list, set or model), as pydantic-settings treats it."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (
        annotation,)
    for option in options:
        kind = typing.get_origin(option) or option
        if kind in (dict, list, set, tuple, frozenset) or (isinstance(kind, type) and issubclass(kind, BaseModel)):
            return True
    return False


def environment_values(cls: type[AgentSettings], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What ``environ`` (default: the process's) sets for ``cls``'s fields, by field name. Text that is not JSON
    where JSON is expected is passed on as it is: validation then names the field."""
    upper = {k.upper(): v for k, v in (os.environ if environ is None else environ).items()}
    out: dict[str, Any] = {}
    for name, variables in field_variables(cls).items():
        value = next((upper[v] for v in variables if v in upper), None)
        if value is None:
            continue
        if _is_json(cls.model_fields[name].annotation):
            try:
                out[name] = json.loads(value)
                continue
            except ValueError:
                pass
        out[name] = value
    return out


S = TypeVar("S", bound="AgentSettings")


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
        variables = field_variables(cls)

        def where(loc: tuple[Any, ...]) -> str:
            path = ".".join(map(str, loc)) or "settings"
            return f"{variables[loc[0]][0]} ({path})" if loc and loc[0] in variables else path

        problems = "; ".join(f"{where(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
        sys.exit(f"error: {cls.__name__}: invalid settings: {problems}")


class AgentSettings(ServiceConfig):
    # Unknown LETSBE_ variables are refused by load_settings, not here (tests and the sandbox pass what they have).
    model_config = ConfigDict(extra="ignore", validate_default=True, populate_by_name=True)
    env_prefix: ClassVar[str] = ""

    def __init__(self, _environ: Mapping[str, str] | None = None, **values: Any) -> None:
        """``_environ``: read instead of the process's environment (``{}``: the defaults and ``values`` only)."""
        super().__init__(**{**environment_values(type(self), _environ), **values})

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
