"""Approval requests of tenants' Safety Wrappers (one row per gated tool call awaiting or having a decision)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, String, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_contracts.approvals import ApprovalStatus
from letsbe_hub.db import Base
from letsbe_platform.state import Machine


class ApprovalRow(Base):
    __tablename__ = "approvals"
    __table_args__ = (
        # One open request per exact call and tenant: a repeated gated call gets the same approval back.
        Index(
            "uq_approvals_pending_call",
            "tenant_id",
            "args_hash",
            unique=True,
            postgresql_where=text(f"status = '{ApprovalStatus.PENDING}'"),
        ),
        Index("ix_approvals_status_requested", "status", "requested_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    agent_id: Mapped[uuid.UUID] = mapped_column()
    tool: Mapped[str] = mapped_column(String(41))
    action: Mapped[str] = mapped_column(String(80))
    risk_class: Mapped[str] = mapped_column(String(20))
    args_hash: Mapped[str] = mapped_column(String(64))
    args_preview: Mapped[dict[str, Any]] = mapped_column(JSONB)
    reasons: Mapped[list[str]] = mapped_column(ARRAY(String(200)))
    status: Mapped[str] = mapped_column(String(12))  # an ApprovalStatus
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(120))
    decision_note: Mapped[str | None] = mapped_column(String(1000))
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# No history table: the row itself keeps who decided when (decided_*) and when it was used (consumed_at).
APPROVAL = Machine(
    noun="approval",
    model=ApprovalRow,
    transitions={
        ApprovalStatus.PENDING: frozenset({ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED}),
        ApprovalStatus.APPROVED: frozenset({ApprovalStatus.CONSUMED, ApprovalStatus.EXPIRED}),
    },
    id_field="approval_id",
)
