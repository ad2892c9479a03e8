"""Fleet rollouts: one component to one image digest, stage by stage, with a stable cohort per target."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class Rollout(Base):
    __tablename__ = "rollouts"
    __table_args__ = (
        # One rollout of a component at a time: two would fight over the same containers.
        Index(
            "uq_rollouts_active_component",
            "component",
            unique=True,
            postgresql_where=text("status IN ('RUNNING', 'PAUSED', 'AWAITING_APPROVAL')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    component: Mapped[str] = mapped_column(String(60))
    agent_kind: Mapped[str] = mapped_column(String(40))  # which agent performs the update on each tenant
    image: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="RUNNING")
    stages: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    stage_index: Mapped[int] = mapped_column(Integer, default=0)
    stage_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    soak_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    concurrency: Mapped[int] = mapped_column(Integer)
    rollback_on_abort: Mapped[bool] = mapped_column(Boolean, default=False)
    min_healthy_seconds: Mapped[float] = mapped_column(Float)
    deadline_seconds: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(120))
    approved_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RolloutTarget(Base):
    """One tenant of a rollout. Its stage is fixed when the rollout is created (a stable cohort)."""

    __tablename__ = "rollout_targets"
    __table_args__ = (Index("ix_rollout_targets_stage", "rollout_id", "stage", "status"),)

    rollout_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    stage: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # newest tenant first
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    command_id: Mapped[uuid.UUID | None] = mapped_column()
    previous_digest: Mapped[str | None] = mapped_column(String(80))
    previous_version: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RolloutEvent(Base):
    """What happened to a rollout, in order: the audit trail and the SSE feed."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    rollout_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
