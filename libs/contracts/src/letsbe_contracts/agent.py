"""The agent protocol (tenant agent ⇄ hub, HTTPS + JSON under /api/v1/tenant/…): request and response bodies.

Both sides validate with these models, so the hub and the agents cannot drift apart. Requests are strict
(``extra="forbid"``); responses ignore unknown fields so a newer hub can add one without breaking older agents.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.enums import AgentKind
from letsbe_contracts.events import BackupStatus, HeartbeatDetails
from letsbe_contracts.protocol import CREDENTIAL_FILE, LLM_RELAY_PATH  # noqa: F401  (re-exported)
from letsbe_contracts.validation import RequestModel

Version = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._+-]+$")]
Hostname = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$")]
ImageDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
ImageRepo = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+([._/:-][a-z0-9]+)*$", max_length=255)]
ContainerName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")]
ComponentName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,40}$")]
CommandType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,40}$")]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=120)]


class _Request(RequestModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CommandStatus(StrEnum):
    QUEUED = "QUEUED"
    DELIVERED = "DELIVERED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ROLLED_BACK = "ROLLED_BACK"
    CANCELLED = "CANCELLED"


TERMINAL_COMMAND_STATUSES = frozenset(
    {
        CommandStatus.SUCCEEDED,
        CommandStatus.FAILED,
        CommandStatus.TIMED_OUT,
        CommandStatus.ROLLED_BACK,
        CommandStatus.CANCELLED,
    }
)
# What an agent may report as the outcome of a command it ran.
AgentOutcome = Literal["SUCCEEDED", "FAILED", "ROLLED_BACK", "TIMED_OUT"]


# --- registration ----------------------------------------------------------------------------------------------


class RegisterRequest(_Request):
    registration_token: Annotated[str, StringConstraints(min_length=16, max_length=200)]
    agent: AgentKind
    version: Version
    hostname: Hostname


class RegisterResponse(_Response):
    agent_id: uuid.UUID
    tenant_id: uuid.UUID
    api_key: str = Field(description="Shown once: the hub keeps only its hash.")
    heartbeat_interval_seconds: int


class AgentIdentity(_Response):
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    agent: AgentKind
    domain: str


class RotatedCredential(_Response):
    api_key: str
    previous_valid_until: datetime


# --- heartbeat -------------------------------------------------------------------------------------------------


class HeartbeatRequest(_Request):
    # Strictly increasing per agent (kept across restarts): the hub ignores a seq it has seen, so a retried
    # heartbeat is counted once.
    seq: Annotated[int, Field(ge=1, le=2**62)]
    version: Version
    uptime_seconds: Annotated[float, Field(ge=0)] = 0
    details: HeartbeatDetails | None = None  # the heavy part: when it changed, or every few minutes


class CommandOut(_Response):
    id: uuid.UUID
    type: CommandType
    params: dict[str, Any]
    idempotency_key: str
    expires_at: datetime
    deadline_seconds: int
    created_at: datetime


class HeartbeatResponse(_Response):
    interval_seconds: int
    commands: list[CommandOut] = []
    details_wanted: bool = False  # the hub has no heavy part for this agent: send it next time


class CommandsResponse(_Response):
    commands: list[CommandOut]


class CommandAckResponse(_Response):
    run: bool  # False: the command was cancelled or expired meanwhile; do not run it
    status: CommandStatus


class CommandResultRequest(_Request):
    status: AgentOutcome
    result: dict[str, Any] = {}
    error: Annotated[str, StringConstraints(max_length=4000)] | None = None


# --- reports ---------------------------------------------------------------------------------------------------


class BackupReport(_Request):
    """What the Safety Wrapper found in backup-status.json at its daily check (seed §8.3)."""

    report_date: date
    checked_at: AwareDatetime
    status: BackupStatus | None = None  # None: the file is missing or unreadable (see problem)
    problem: Annotated[str, StringConstraints(max_length=2000)] | None = None


class UsageLine(_Request):
    model: ModelName
    # Bounded far above any real hour, far below a bigint.
    tokens_in: Annotated[int, Field(ge=0, le=10**12)]
    tokens_out: Annotated[int, Field(ge=0, le=10**12)]
    requests: Annotated[int, Field(ge=0, le=10**9)]


class UsageReport(_Request):
    """Token usage of one hour. (tenant, hour, sequence) is the idempotency key: a retry never double-counts;
    usage recorded for an hour after its first report goes out as the next sequence."""

    hour: AwareDatetime
    sequence: Annotated[int, Field(ge=0, le=100_000)]
    lines: Annotated[list[UsageLine], Field(min_length=1, max_length=200)]


class Accepted(_Response):
    duplicate: bool = False


# --- command parameters (validated by the hub when queued, and by the agent before running) --------------------


class UpdateParams(_Request):
    component: ComponentName
    image: ImageRepo
    digest: ImageDigest
    version: Version
    container: ContainerName | None = None  # default: the component name
    min_healthy_seconds: Annotated[float, Field(ge=0, le=3600)] = 30
    deadline_seconds: Annotated[float, Field(gt=0, le=7200)] = 300
    min_free_disk_bytes: Annotated[int, Field(ge=0)] = 2 * 1024**3


class RestartParams(_Request):
    containers: Annotated[list[ContainerName], Field(min_length=1, max_length=50)]
    timeout_seconds: Annotated[int, Field(ge=0, le=300)] = 10


class SuspendParams(_Request):
    """suspend (billing: the subscription is unpaid past its grace): the tenant's tool containers stop and the tool
    gate's kill switch engages; volumes and data stay. resume undoes both. Both are idempotent."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ResumeParams(_Request):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None


class ConfigSyncParams(_Request):
    version: Annotated[int, Field(ge=1)]
    config: dict[str, Any]


# The tenant's AI-stack keys the provisioner generated, keeps and renders (tools token: OpenClaw -> Safety Wrapper;
# sentinel key: OpenClaw -> Secrets Proxy; secrets key: the tenant's secret store). No agent holds all of their
# copies, so the provisioner rotates them: a new value, the affected env files re-rendered, those containers recreated.
TenantKey = Literal["tools-token", "sentinel-key", "secrets-key"]
TENANT_KEYS: tuple[str, ...] = ("tools-token", "sentinel-key", "secrets-key")


class RotateCredentialParams(_Request):
    """rotate-credential: "agent" is the agent's own hub API key (either agent); "llm-key" is the tenant's LLM relay
    key, which only the Secrets Proxy holds (it fetches a new one from the hub and switches to it live);
    ``TENANT_KEYS`` are rotated by the provisioner (the hub hands the command to it, not to an agent)."""

    credential: Literal["agent", "llm-key", "tools-token", "sentinel-key", "secrets-key"] = "agent"
