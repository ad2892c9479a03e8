"""Settings every agent has (each agent's own settings class extends this with its env prefix), read from the
environment and validated without pydantic (pydantic, pydantic-settings and the models cost the Secrets Proxy about
12 MB of its 64 MB container).

A settings class declares its fields as annotations with defaults; constraints go in the annotation
(``Annotated[int, Meta(ge=1, le=65535)]``, msgspec's), a cross-field rule in ``_check``. Each value is converted
and validated by msgspec (leniently, as pydantic-settings does: ``"8100"`` is an int, ``"yes"`` a bool, a text a
``Path`` or a ``SecretStr``); a bad one raises :class:`SettingsError` naming the field.

As pydantic-settings reads them: ``<prefix><field>`` (or the field's ``aliases``), names in any case, a dict or list
field as JSON; constructing a settings class (``model_validate`` too) reads the environment, and the values it is
given win over it.

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
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec
from msgspec import Meta

from letsbe_platform.tooling import TOOLING_VARIABLES

# Each agent's own prefix. A variable under another agent's prefix is that agent's (it checks its own environment).
AGENT_PREFIXES = ("LETSBE_SW_", "LETSBE_SP_")
# What pydantic reads as a bool from text.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class SecretStr:
    """A secret setting: its value only through ``get_secret_value()``, never in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "SecretStr('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SettingsError(ValueError):
    """Invalid settings: ``errors`` is [(field, message)], without the values (they may be secrets)."""

    def __init__(self, cls_name: str, errors: list[tuple[str, str]]):
        super().__init__(f"{cls_name}: " + "; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


@dataclass(frozen=True)
class FieldInfo:
    annotation: Any
    default: Any


def _decode(kind: type, value: Any) -> Any:
    """msgspec's hook for the types it does not know."""
    if kind is Path and isinstance(value, str | os.PathLike):
        return Path(value)
    if kind is SecretStr and isinstance(value, str):
        return SecretStr(value)
    if kind is SecretStr and hasattr(value, "get_secret_value"):  # a pydantic SecretStr, from a test
        return SecretStr(value.get_secret_value())
    if isinstance(value, kind):
        return value
    raise ValueError(f"Expected `{kind.__name__}`, got `{type(value).__name__}`")


def _options(annotation: Any) -> tuple[Any, ...]:
    """The members of ``X | Y`` (of ``Annotated[X | Y, …]`` too), else the annotation itself."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _convert(annotation: Any, value: Any) -> Any:
    options = _options(annotation)
    if isinstance(value, str):  # what msgspec's lax mode reads otherwise
        if bool in options and value.strip().lower() in _TRUE | _FALSE:
            value = value.strip().lower() in _TRUE
        elif time in options:
            try:
                value = time.fromisoformat(value)
            except ValueError:
                pass
    return msgspec.convert(value, annotation, strict=False, dec_hook=_decode)


def _is_json(annotation: Any) -> bool:
    """A field whose variable holds JSON (a dict, list, set or tuple), as pydantic-settings treats it."""
    return any((typing.get_origin(o) or o) in (dict, list, set, tuple, frozenset) for o in _options(annotation))


class AgentSettings:
    """The settings every agent has; subclasses add theirs (and an ``env_prefix``)."""

    env_prefix: ClassVar[str] = ""
    # Field name → the environment variables it is read from instead of ``<prefix><field>``.
    aliases: ClassVar[dict[str, tuple[str, ...]]] = {
        "database_url": ("DATABASE_URL",),
        "nats_url": ("NATS_URL",),
        "bus_namespace": ("LETSBE_BUS_NAMESPACE",),
        "bus_replicas": ("LETSBE_BUS_REPLICAS",),
        "sandbox": ("LETSBE_SANDBOX",),
    }
    model_fields: ClassVar[dict[str, FieldInfo]] = {}

    # --- what every service has (as letsbe_platform.service_config.ServiceConfig: a test keeps the two the same) ---
    service_name: str = "letsbe"
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8000
    log_level: str = "INFO"
    log_json: bool = True
    database_url: str | None = None
    nats_url: str | None = None
    bus_namespace: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,30}$")] = "letsbe"
    bus_replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    sandbox: bool = False
    shutdown_grace_seconds: Annotated[float, Meta(ge=0)] = 20.0
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 1024 * 1024
    max_header_bytes: Annotated[int, Meta(ge=4096)] = 32 * 1024

    # --- the agent runtime ---
    # Unset: the agent serves its local API only and never talks to a hub (development, unit tests of its routes).
    hub_url: str | None = None
    hub_timeout_seconds: Annotated[float, Meta(gt=0)] = 10
    # The credential, the command journal, unsent reports. Default: /var/lib/letsbe/<service_name>/agent.
    state_dir: Path | None = None  # always set after validation
    # The one-time token the provisioner leaves on the tenant: from the environment or from a file.
    registration_token: SecretStr | None = None
    registration_token_file: Path | None = None
    # Until the hub says otherwise (every heartbeat answer carries the interval to use).
    heartbeat_interval_seconds: Annotated[float, Meta(gt=0)] = 60
    heartbeat_jitter: Annotated[float, Meta(ge=0, le=0.5)] = 0.1  # ± this fraction of the interval
    heartbeat_details_every_seconds: Annotated[float, Meta(gt=0)] = 300  # the heavy part at least this often
    backoff_base_seconds: Annotated[float, Meta(gt=0)] = 1
    backoff_max_seconds: Annotated[float, Meta(gt=0)] = 60
    long_poll: bool = True
    long_poll_seconds: Annotated[int, Meta(ge=1, le=30)] = 25
    docker_socket: Path = Path("/var/run/docker.sock")
    docker_api_version: Annotated[str, Meta(pattern=r"^v1\.\d+$")] = "v1.43"
    disk_path: str = "/"
    update_poll_seconds: Annotated[float, Meta(gt=0)] = 1.0
    # Backups (seed §8.3): letsbe-backup writes the status file, and holds an flock on the lock file while it runs.
    report_backups: bool = False
    backup_status_path: Path = Path("/var/lib/letsbe/backup/backup-status.json")
    backup_lock_path: Path = Path("/var/lib/letsbe/backup/backup.lock")
    backup_check_at: time = time(6, 0)
    backup_check_timezone: str = "UTC"
    # Token usage: the Secrets Proxy records into this ledger; the agent that reports usage sends it hourly.
    usage_ledger_path: Path | None = Path("/var/lib/letsbe/shared/usage.sqlite3")
    report_usage: bool = False
    usage_report_every_seconds: Annotated[float, Meta(gt=0)] = 300

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.model_fields = _fields(cls)

    def __init__(self, _environ: Mapping[str, str] | None = None, **values: Any) -> None:
        """``_environ``: read instead of the process's environment (``{}``: the defaults and ``values`` only).
        Values for names that are no field are ignored (tests and the sandbox pass what they have)."""
        given = {**environment_values(type(self), _environ), **values}
        errors = []
        for name, field in type(self).model_fields.items():
            try:
                value = _convert(field.annotation, given[name] if name in given else field.default)
            except msgspec.ValidationError as exc:
                errors.append((name, str(exc).removesuffix(" - at `$`")))
                continue
            object.__setattr__(self, name, value)
        if not errors:
            try:
                self._check()
            except ValueError as exc:
                errors.append(("settings", str(exc)))
        if errors:
            raise SettingsError(type(self).__name__, errors)

    def _check(self) -> None:
        """Rules across fields, and defaults that depend on others; ValueError says what is wrong."""
        if self.state_dir is None:
            self.state_dir = Path("/var/lib/letsbe") / self.service_name / "agent"
        self.log_level = self.log_level.upper()
        if self.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("log_level must be DEBUG, INFO, WARNING or ERROR")

    @classmethod
    def model_validate(cls: type[S], data: Mapping[str, Any]) -> S:
        return cls(**data)

    def model_dump(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields}

    def model_copy(self: S, *, update: Mapping[str, Any] | None = None) -> S:
        """A copy with ``update`` taken as it is (as pydantic's: not validated)."""
        copy = object.__new__(type(self))
        copy.__dict__.update({**self.__dict__, **(update or {})})
        return copy

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.model_dump().items())})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.model_dump() == other.model_dump()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


S = TypeVar("S", bound=AgentSettings)


def _fields(cls: type[AgentSettings]) -> dict[str, FieldInfo]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {name: FieldInfo(hint, getattr(cls, name)) for name, hint in hints.items()
            if typing.get_origin(hint) is not ClassVar and not name.startswith("_")}


AgentSettings.model_fields = _fields(AgentSettings)


def field_variables(cls: type[AgentSettings]) -> dict[str, tuple[str, ...]]:
    """Field name → the environment variables it is read from (upper case: names match in any case)."""
    return {name: tuple(a.upper() for a in cls.aliases.get(name, (f"{cls.env_prefix}{name}",)))
            for name in cls.model_fields}


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
    except SettingsError as exc:
        # Never the input values: they hold secrets.
        variables = field_variables(cls)
        problems = "; ".join(f"{variables[f][0]} ({f})" + f": {m}" if f in variables else f"{f}: {m}"
                             for f, m in exc.errors)
        sys.exit(f"error: {cls.__name__}: invalid settings: {problems}")
