from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from letsbe_contracts.agent import CommandType
from letsbe_contracts.enums import AgentKind
from letsbe_contracts.validation import RequestModel


class CommandCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    type: CommandType
    params: dict[str, Any] = {}
    agent: AgentKind | None = None  # default: the agent that runs this type (see service.agent_for)
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    expires_in_seconds: Annotated[int, Field(ge=1, le=30 * 24 * 3600)] = 24 * 3600
    deadline_seconds: Annotated[int, Field(ge=1, le=24 * 3600)] = 900


class TransitionView(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: datetime


class CommandView(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    agent: str
    type: str
    params: dict[str, Any]
    idempotency_key: str
    status: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    deadline_seconds: int
    delivered_at: datetime | None
    deliveries: int
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: str | None
    rollout_id: uuid.UUID | None
    transitions: list[TransitionView] | None = None
