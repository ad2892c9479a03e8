"""Lifecycle jobs and their history.

A job is one resumable piece of lifecycle work (one tenant's decommission, one tenant's snapshot of one day). Its
``key`` is unique, so asking twice (two operators, two hub replicas scheduling the same day) makes one job. A worker
works on a job only while it holds its lease (``lease_until``); a worker killed mid-step loses the lease and the
next one resumes at the job's status, where every step first checks at the provider whether its effect happened.
"""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class JobStatus(StrEnum):
    """Every kind's states (one ``status`` column for all kinds); which apply to which kind, and the moves between
    them, are ``letsbe_hub.lifecycle.state.TRANSITIONS``."""

    # decommission
    FINAL_BACKUP = "FINAL_BACKUP"
    STOPPING_AGENTS = "STOPPING_AGENTS"
    EXPORT_WINDOW = "EXPORT_WINDOW"
    RELEASING_SERVER = "RELEASING_SERVER"
    REINSTALLING = "REINSTALLING"
    PREFLIGHT = "PREFLIGHT"
    # snapshot
    SCHEDULED = "SCHEDULED"
    CREATING = "CREATING"
    PRUNED = "PRUNED"
    # restore, recover, migrate
    ALLOCATING = "ALLOCATING"
    PROVISIONING = "PROVISIONING"
    BACKING_UP = "BACKING_UP"
    RESTORING = "RESTORING"
    VERIFYING = "VERIFYING"
    SWITCHING_DNS = "SWITCHING_DNS"
    ROLLBACK_WINDOW = "ROLLBACK_WINDOW"
    RELEASING_OLD = "RELEASING_OLD"
    # tool-change (its phases: DNS, STACK, and FINAL_BACKUP above)
    REQUESTED = "REQUESTED"
    DNS = "DNS"
    STACK = "STACK"
    # every kind
    FAILED = "FAILED"
    SUCCEEDED = "SUCCEEDED"
    CANCELLED = "CANCELLED"


KINDS_SQL = "'decommission', 'snapshot', 'restore', 'recover', 'migrate', 'tool-change'"


class LifecycleJob(Base):
    __tablename__ = "lifecycle_jobs"
    __table_args__ = (
        Index("ix_lifecycle_jobs_runnable", "due_at", postgresql_where=text("finished_at IS NULL")),
        Index("ix_lifecycle_jobs_tenant", "tenant_id", "kind", "created_at"),
        CheckConstraint(f"kind IN ({KINDS_SQL})", name="kind"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(20))  # letsbe_hub.lifecycle.state.TRANSITIONS
    key: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    server_id: Mapped[uuid.UUID | None] = mapped_column()  # hub.servers row the job acts on
    # Written only by letsbe_hub.lifecycle.state.
    status: Mapped[str] = mapped_column(String(30))  # JobStatus
    failed_from: Mapped[str | None] = mapped_column(String(30))  # where a retry resumes
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # not before (window, backoff, slot)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")  # failed tries of the current step
    last_error: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    requested_by: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LifecycleJobTransition(Base):
    __tablename__ = "lifecycle_job_transitions"
    __table_args__ = (Index("ix_lifecycle_job_transitions_job_id", "job_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column()
    from_status: Mapped[str | None] = mapped_column(String(30))
    to_status: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
