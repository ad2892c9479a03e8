from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from letsbe_contracts import AlertSeverity
from letsbe_contracts.validation import RequestModel

MAX_SILENCE = timedelta(days=30)


class Alert(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    alert_id: uuid.UUID
    tenant_id: uuid.UUID | None
    rule: str
    severity: AlertSeverity
    status: Literal["open", "resolved"]
    summary: str
    value: float | None
    threshold: float | None
    first_seen: datetime
    last_seen: datetime
    count: int
    resolved_at: datetime | None
    resolved_summary: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_note: str | None
    silenced_until: datetime | None
    silenced_by: str | None
    silence_note: str | None = None


class AcknowledgeRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class SilenceRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    until: AwareDatetime = Field(
        description="No notifications for this alert's tenant and rule until then (≤ 30 days)."
    )
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None

    @field_validator("until")
    @classmethod
    def _future_and_bounded(cls, v: datetime) -> datetime:
        now = datetime.now(UTC)
        if v <= now:
            raise ValueError("must be in the future")
        if v > now + MAX_SILENCE:
            raise ValueError("must be at most 30 days ahead")
        return v


# --- hub health (§9.3) ------------------------------------------------------------------------------------------


class PoolHealth(BaseModel):
    size: int
    checked_out: int
    overflow: int
    max_connections: int
    usage: float = Field(description="checked_out / max_connections")


class DatabaseHealth(BaseModel):
    ok: bool
    latency_ms: float | None
    pool: PoolHealth | None


class OutboxHealth(BaseModel):
    unpublished: int
    oldest_age_seconds: float | None


class JobHealth(BaseModel):
    task: str
    last_success_at: datetime
    age_seconds: float
    stale: bool


class DiskHealth(BaseModel):
    path: str
    total_bytes: int
    free_bytes: int
    used_percent: float


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checked_at: datetime
    problems: list[str]
    database: DatabaseHealth
    outbox: OutboxHealth | None
    jobs: list[JobHealth]
    disk: DiskHealth
    open_alerts: dict[str, int] = Field(description="Open alerts by severity")
