"""Fleet rollouts: one component to one image digest, stage by stage, with a stable cohort per target."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base
from letsbe_platform.state import Machine


class RolloutStatus(StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # by an operator, or by a gate that found no result or a silent tenant
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # the next stage needs an operator's approval
    COMPLETED = "COMPLETED"
    ABORTED = "ABORTED"


class TargetStatus(StrEnum):
    PENDING = "PENDING"
    DISPATCHED = "DISPATCHED"  # its update command is queued or running
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"  # the update failed and the agent put the previous version back
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"  # already at or above the version
    REVERTED = "REVERTED"  # rolled back to its previous digest when the rollout was aborted


R, T = RolloutStatus, TargetStatus
ACTIVE = (R.RUNNING, R.PAUSED, R.AWAITING_APPROVAL)
FINAL = (R.COMPLETED, R.ABORTED)


class Rollout(Base):
    __tablename__ = "rollouts"
    __table_args__ = (
        # One rollout of a component at a time: two would fight over the same containers.
        Index(
            "uq_rollouts_active_component",
            "component",
            unique=True,
            postgresql_where=text(f"status IN {tuple(map(str, ACTIVE))}"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    component: Mapped[str] = mapped_column(String(60))
    agent_kind: Mapped[str] = mapped_column(String(40))  # which agent performs the update on each tenant
    image: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=R.RUNNING)
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
    status: Mapped[str] = mapped_column(String(20), default=T.PENDING)
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


# Neither machine has a history table: rollout_events is the rollouts' audit trail (the service writes one event
# per move, with the operator or the gate that made it), and a target's moves are events of kind "target".
ROLLOUT = Machine(
    noun="rollout",
    model=Rollout,
    transitions={
        R.RUNNING: frozenset({R.PAUSED, R.AWAITING_APPROVAL, R.COMPLETED, R.ABORTED}),
        R.PAUSED: frozenset({R.RUNNING, R.ABORTED}),
        R.AWAITING_APPROVAL: frozenset({R.RUNNING, R.ABORTED}),
    },
    id_field="rollout_id",
    reason_column="reason",
)
TARGET = Machine(
    noun="rollout target",
    model=RolloutTarget,
    transitions={
        T.PENDING: frozenset({T.DISPATCHED, T.SKIPPED, T.CANCELLED}),
        T.DISPATCHED: frozenset({T.SUCCEEDED, T.FAILED, T.ROLLED_BACK, T.ROLLBACK_FAILED, T.TIMED_OUT, T.CANCELLED}),
        T.TIMED_OUT: frozenset({T.PENDING}),  # tried once more when the rollout resumes
        T.CANCELLED: frozenset({T.PENDING}),
        T.SUCCEEDED: frozenset({T.REVERTED}),
    },
    id_field="target",
)
