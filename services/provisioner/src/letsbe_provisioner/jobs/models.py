"""Job, step and secret rows of the provisioner schema."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_contracts.enums import StepStatus
from letsbe_platform.state import Machine
from letsbe_provisioner.db import Base


class JobStatus(StrEnum):
    RUNNING = "RUNNING"
    AWAITING_REGISTRATION = "AWAITING_REGISTRATION"  # all ten steps done; waiting for the Safety Wrapper
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    domain: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(30))
    run: Mapped[int] = mapped_column(Integer, default=1)  # 1 + how many times a failed job was resumed
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the dns-ready payload: order, server, records
    error: Mapped[str | None] = mapped_column(Text)
    failed_step: Mapped[int | None] = mapped_column(Integer)
    log_seq: Mapped[int] = mapped_column(BigInteger, default=0)  # next provisioning-log seq of this job
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    steps_done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class JobStep(Base):
    __tablename__ = "job_steps"

    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("jobs.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # letsbe_contracts.StepStatus
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # attempts over the job's whole life
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    output_tail: Mapped[str | None] = mapped_column(Text)  # last lines, already redacted
    error: Mapped[str | None] = mapped_column(Text)


class TenantSecret(Base):
    """A generated per-tenant secret, Fernet-encrypted, so ops can recover it and a re-run writes the same value."""

    __tablename__ = "tenant_secrets"

    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RotationStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class KeyRotation(Base):
    """One rotation of a tenant key, keyed by the hub's command: created in the transaction that stores the new value,
    so a redelivered request resumes it (same value) or, once it ended, only reports it again."""

    __tablename__ = "key_rotations"

    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), index=True)
    key: Mapped[str] = mapped_column(String(40))
    requested_by: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    output_tail: Mapped[str | None] = mapped_column(Text)  # redacted
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# No history tables: every move is already published (provisioning-step, order-failed, provisioned and
# key-rotation-reported events, staged with the move), and the hub keeps them in the order's stream.
J, St, Rot = JobStatus, StepStatus, RotationStatus
JOB = Machine(
    noun="provisioning job",
    model=Job,
    transitions={
        J.RUNNING: frozenset({J.AWAITING_REGISTRATION, J.FAILED}),
        J.AWAITING_REGISTRATION: frozenset({J.SUCCEEDED, J.FAILED}),
        J.FAILED: frozenset({J.RUNNING}),  # a retry resumes at the failed step
        J.SUCCEEDED: frozenset({J.RUNNING}),  # the tenant moves to another server: all ten steps run there
    },
    id_field="job_id",
)
STEP = Machine(
    noun="provisioning step",
    model=JobStep,
    transitions={
        St.PENDING: frozenset({St.RUNNING}),
        St.RUNNING: frozenset({St.RUNNING, St.SUCCEEDED, St.FAILED}),  # RUNNING again: the next attempt
        # FAILED: step 10, when the Safety Wrapper never registers after it; PENDING: the tenant moves to another server
        St.SUCCEEDED: frozenset({St.FAILED, St.PENDING}),
        St.FAILED: frozenset({St.PENDING}),
    },
    id_field="step",
)
ROTATION = Machine(
    noun="key rotation",
    model=KeyRotation,
    transitions={Rot.RUNNING: frozenset({Rot.SUCCEEDED, Rot.FAILED})},
    id_field="command_id",
)
