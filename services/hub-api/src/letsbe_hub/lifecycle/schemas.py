from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.events import ToolName
from letsbe_contracts.validation import RequestModel

BackupSetName = Annotated[str, StringConstraints(pattern=r"^(latest|\d{4}-\d{2}-\d{2})$")]


class JobTransitionView(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: datetime


class LifecycleJobView(BaseModel):
    job_id: uuid.UUID
    kind: Literal["decommission", "snapshot", "restore", "recover", "migrate", "tool-change"]
    key: str
    tenant_id: uuid.UUID
    server_id: uuid.UUID | None
    status: str
    due_at: datetime  # when the next step runs (the end of the export window, a snapshot's slot, a retry)
    attempts: int
    last_error: str | None
    leased_by: str | None
    data: dict[str, Any]
    requested_by: str
    reason: str | None
    created_at: datetime
    finished_at: datetime | None
    history: list[JobTransitionView] = []


class JobRetry(RequestModel):
    reason: str = Field(default="retried by an operator", min_length=1, max_length=2000)


class BackupSetView(BaseModel):
    """One night's backup set as the tenant's Safety Wrapper reported it (``backup_set`` names it for a restore)."""

    backup_set: str
    checked_at: datetime
    status: dict[str, Any] | None  # backup-status.json as read: databases, remote_sync, …
    problem: str | None


class BackupSets(BaseModel):
    items: list[BackupSetView]


class RestoreCreate(RequestModel):
    backup_set: BackupSetName = "latest"
    tool: ToolName | None = None  # None: every tool of the tenant
    server_id: uuid.UUID | None = None  # another server of the tenant's (default: its current one)
    reason: str | None = Field(default=None, max_length=2000)


class RecoverCreate(RequestModel):
    reason: str | None = Field(default=None, max_length=2000)


ToolNameField = Annotated[str, StringConstraints(min_length=1, max_length=41)]  # the catalog decides (422 if unknown)


class ToolAdd(RequestModel):
    model_config = ConfigDict(extra="forbid")

    tool: ToolNameField
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None


class AgentToolChange(RequestModel):
    """The IT agent's call through the Safety Wrapper (policy tool ``letsbe``), after an operator approved it."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["add", "remove"]
    tool: ToolNameField
