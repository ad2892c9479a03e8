"""The agent protocol's bodies as the agents read and write them: msgspec structs, not the pydantic models of
``letsbe_contracts.agent`` / ``letsbe_contracts.events`` that the hub uses (pydantic and those models cost the
Secrets Proxy about 13 MB of its 64 MB; msgspec under 1 MB).

Each struct here mirrors the contract model of the same name, field for field, with the same constraints: requests
refuse unknown fields and control characters (as ``letsbe_contracts.validation.RequestModel``), answers ignore
unknown fields. ``libs/agent/tests/test_wire.py`` checks that both accept and refuse the same samples, so the two
cannot drift apart. ``parse`` validates (``msgspec.ValidationError``, a ValueError, names the field), ``dump``
gives JSON-ready builtins, ``checked`` validates what the agent built itself before it is sent.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from letsbe_contracts.enums import AgentKind

T = TypeVar("T")

Version = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._+-]+$")]
Hostname = Annotated[str, Meta(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$")]
ImageDigest = Annotated[str, Meta(pattern=r"^sha256:[0-9a-f]{64}$")]
ImageRepo = Annotated[str, Meta(pattern=r"^[a-z0-9]+([._/:-][a-z0-9]+)*$", max_length=255)]
ContainerName = Annotated[str, Meta(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]
ComponentName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_-]{1,40}$")]
CommandType = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9-]{1,40}$")]
AwareDatetime = Annotated[datetime, Meta(tz=True)]
NonNegInt = Annotated[int, Meta(ge=0)]
NonNegFloat = Annotated[float, Meta(ge=0)]
Percent = Annotated[float, Meta(ge=0, le=100)]

# As letsbe_contracts.validation.CONTROL_CHARACTERS: tab, newline and carriage return stay allowed.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _reject_control_characters(value: Any) -> None:
    if isinstance(value, str):
        if CONTROL_CHARACTERS.search(value):
            raise ValueError("control characters (NUL and the like) are not allowed in text")
    elif isinstance(value, dict):
        for k, v in value.items():
            _reject_control_characters(k)
            _reject_control_characters(v)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_control_characters(item)
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            _reject_control_characters(getattr(value, name))


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def __post_init__(self) -> None:
        _reject_control_characters(self)


class _Response(msgspec.Struct, frozen=True, kw_only=True):
    pass


class _Part(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A part of a request (letsbe_contracts.events' models: extra fields refused); the request checks its text."""


def parse(kind: type[T], data: Any) -> T:
    return msgspec.convert(data, kind)


def dump(value: Any, *, exclude_none: bool = False) -> Any:
    out = msgspec.to_builtins(value)
    return _without_none(out) if exclude_none else out


def checked(value: T) -> T:
    """``value`` (built by the agent) validated as if it had been read: a bad one raises before it is sent."""
    return msgspec.convert(msgspec.to_builtins(value), type(value))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


# --- the heavy part of a heartbeat (letsbe_contracts.events) ---------------------------------------------------


class DiskUsage(_Part, kw_only=True):
    path: str = "/"
    total_bytes: NonNegInt
    used_bytes: NonNegInt
    percent: Percent


class MemoryUsage(_Part, kw_only=True):
    total_bytes: NonNegInt
    available_bytes: NonNegInt
    percent: Percent


class ContainerState(_Part, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=255)]
    image: Annotated[str, Meta(max_length=500)]
    image_digest: Annotated[str, Meta(max_length=200)] | None = None
    state: Annotated[str, Meta(max_length=40)]
    health: Literal["healthy", "unhealthy", "starting", "none"] = "none"
    restart_count: NonNegInt = 0
    oom_killed: bool = False


class BackupDatabaseStatus(_Part, kw_only=True):
    status: Literal["success", "failed"]
    size_mb: NonNegFloat | None = None
    error: Annotated[str, Meta(max_length=2000)] | None = None


class RemoteSyncStatus(_Part, kw_only=True):
    status: Literal["success", "failed", "skipped"]
    uploaded_mb: NonNegFloat | None = None
    error: Annotated[str, Meta(max_length=2000)] | None = None


class BackupStatus(_Part, kw_only=True):
    """The seed's §8.3 ``backup-status.json``, exactly."""

    last_run: AwareDatetime
    duration_seconds: NonNegFloat
    databases: dict[str, BackupDatabaseStatus]
    remote_sync: RemoteSyncStatus


class HeartbeatDetails(_Part, kw_only=True):
    disk: DiskUsage
    memory: MemoryUsage
    containers: tuple[ContainerState, ...] = ()
    versions: dict[str, str] = {}
    backup: BackupStatus | None = None
    tls_not_after: AwareDatetime | None = None


# --- registration and heartbeats (letsbe_contracts.agent) ------------------------------------------------------


class RegisterRequest(_Request, kw_only=True):
    registration_token: Annotated[str, Meta(min_length=16, max_length=200)]
    agent: AgentKind
    version: Version
    hostname: Hostname


class RegisterResponse(_Response, kw_only=True):
    agent_id: uuid.UUID
    tenant_id: uuid.UUID
    api_key: str
    heartbeat_interval_seconds: int


class RotatedCredential(_Response, kw_only=True):
    api_key: str
    previous_valid_until: datetime


class HeartbeatRequest(_Request, kw_only=True):
    seq: Annotated[int, Meta(ge=1, le=2**62)]
    version: Version
    uptime_seconds: NonNegFloat = 0
    details: HeartbeatDetails | None = None


class CommandOut(_Response, kw_only=True):
    id: uuid.UUID
    type: CommandType
    params: dict[str, Any]
    idempotency_key: str
    expires_at: datetime
    deadline_seconds: int
    created_at: datetime


class HeartbeatResponse(_Response, kw_only=True):
    interval_seconds: int
    commands: list[CommandOut] = []
    details_wanted: bool = False


class CommandsResponse(_Response, kw_only=True):
    commands: list[CommandOut]


CommandStatus = Literal["QUEUED", "DELIVERED", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ROLLED_BACK",
                        "CANCELLED"]


class CommandAckResponse(_Response, kw_only=True):
    run: bool  # False: the command was cancelled or expired meanwhile; do not run it
    status: CommandStatus


class BackupReport(_Request, kw_only=True):
    report_date: date
    checked_at: AwareDatetime
    status: BackupStatus | None = None
    problem: Annotated[str, Meta(max_length=2000)] | None = None


# --- command parameters ----------------------------------------------------------------------------------------


class UpdateParams(_Request, kw_only=True):
    component: ComponentName
    image: ImageRepo
    digest: ImageDigest
    version: Version
    container: ContainerName | None = None  # default: the component name
    min_healthy_seconds: Annotated[float, Meta(ge=0, le=3600)] = 30
    deadline_seconds: Annotated[float, Meta(gt=0, le=7200)] = 300
    min_free_disk_bytes: NonNegInt = 2 * 1024**3


class RestartParams(_Request, kw_only=True):
    containers: Annotated[list[ContainerName], Meta(min_length=1, max_length=50)]
    timeout_seconds: Annotated[int, Meta(ge=0, le=300)] = 10


class ConfigSyncParams(_Request, kw_only=True):
    version: Annotated[int, Meta(ge=1)]
    config: dict[str, Any]


class RotateCredentialParams(_Request, kw_only=True):
    credential: Literal["agent", "llm-key", "tools-token", "sentinel-key", "secrets-key"] = "agent"
