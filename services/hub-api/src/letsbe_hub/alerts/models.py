import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Double, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base
from letsbe_platform.state import Machine


class AlertStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"  # for good: a later alert-raised of the same id changes nothing


OPEN, RESOLVED = AlertStatus.OPEN, AlertStatus.RESOLVED


class AlertRecord(Base):
    """The hub's copy of an alert, kept current from alert-raised / alert-resolved; the dashboard reads it."""

    __tablename__ = "alerts"

    alert_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column()
    rule: Mapped[str] = mapped_column(String(80))
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    summary: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Double)
    threshold: Mapped[float | None] = mapped_column(Double)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_summary: Mapped[str | None] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(120))
    ack_note: Mapped[str | None] = mapped_column(String(2000))
    silenced_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    silenced_by: Mapped[str | None] = mapped_column(String(120))
    silence_note: Mapped[str | None] = mapped_column(String(2000))  # why, in the operator's words
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status"),
        CheckConstraint("severity IN ('soft', 'medium', 'hard')", name="severity"),
        Index("ix_alerts_status_last_seen", "status", "last_seen", "alert_id"),
        Index("ix_alerts_tenant_id", "tenant_id"),
    )


# No history table: the row keeps first_seen, last_seen and resolved_at, and the monitor keeps the alert's events.
ALERT = Machine(noun="alert", model=AlertRecord, transitions={OPEN: frozenset({RESOLVED})}, id_field="alert_id")
