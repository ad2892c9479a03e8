"""Notifications to send: one row per (alert, channel, kind), sent and retried by the delivery worker."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_monitor.db import Base
from letsbe_platform.state import Machine

# Channels (§9.2): staff email, Slack-compatible webhook, generic signed webhook, customer push.
EMAIL, SLACK, WEBHOOK, PUSH = "email", "slack", "webhook", "push"
# Kinds: the alert opened, a medium alert reached the customer-push count, the alert resolved.
RAISED, ESCALATED, RESOLVED = "raised", "escalated", "resolved"
# Statuses.
PENDING, SENDING, SENT, FAILED, SUPPRESSED, CANCELLED = (
    "pending",
    "sending",
    "sent",
    "failed",
    "suppressed",
    "cancelled",
)


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    alert_id: Mapped[uuid.UUID] = mapped_column()
    tenant_id: Mapped[uuid.UUID | None] = mapped_column()
    rule: Mapped[str] = mapped_column(String(80))
    channel: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("alert_id", "channel", "kind", name="uq_deliveries_alert_channel_kind"),
        Index("ix_deliveries_due", "next_attempt_at", postgresql_where=text("status IN ('pending', 'sending')")),
        Index("ix_deliveries_alert", "alert_id"),
    )


# No history table: attempts, last_error and sent_at on the row say what became of it.
DELIVERY = Machine(
    noun="delivery",
    model=Delivery,
    transitions={
        PENDING: frozenset({SENDING, SUPPRESSED, CANCELLED}),
        # Again SENDING: the lease of a worker that died mid-send expired, and another worker takes the row.
        SENDING: frozenset({SENDING, SENT, PENDING, FAILED, SUPPRESSED}),
    },
    id_field="delivery_id",
)
