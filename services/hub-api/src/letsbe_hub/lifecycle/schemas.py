from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from letsbe_contracts.validation import RequestModel


class JobTransitionView(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: datetime


class LifecycleJobView(BaseModel):
    job_id: uuid.UUID
    kind: Literal["decommission", "snapshot", "restore", "recover", "migrate"]
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
