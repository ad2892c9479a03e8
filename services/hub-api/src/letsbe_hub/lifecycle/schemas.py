from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.validation import RequestModel


class JobTransitionView(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: datetime


class LifecycleJobView(BaseModel):
    job_id: uuid.UUID
    kind: Literal["decommission", "snapshot", "tool-change"]
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
