"""Alerts (one open per tenant and rule), silences, and the sweep's own state."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Double, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_monitor.db import Base


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column()  # None: a platform alert
    rule: Mapped[str] = mapped_column(String(80))
    severity: Mapped[str] = mapped_column(String(10))
    summary: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Double)
    threshold: Mapped[float | None] = mapped_column(Double)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer, server_default=text("1"))  # consecutive failing observations
    clear_streak: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # consecutive clear ones
    emitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last alert-raised staged
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    acknowledged_by: Mapped[str | None] = mapped_column(String(120))
    auto_resolve_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_summary: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # The dedup guarantee: at most one open alert per (tenant, rule); platform alerts (NULL tenant) too.
        Index(
            "uq_alerts_open",
            "tenant_id",
            "rule",
            unique=True,
            postgresql_nulls_not_distinct=True,
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index(
            "ix_alerts_auto_resolve",
            "auto_resolve_at",
            postgresql_where=text("resolved_at IS NULL AND auto_resolve_at IS NOT NULL"),
        ),
    )


class Silence(Base):
    """No notifications for (tenant, rule) until ``until``; set from the hub's admin API."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column()
    rule: Mapped[str] = mapped_column(String(80))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    silenced_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("uq_silences_key", "tenant_id", "rule", unique=True, postgresql_nulls_not_distinct=True),)


class SweepState(Base):
    """One row: what the liveness sweep must remember across restarts and replicas."""

    __tablename__ = "sweep_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No tenant is declared offline before this: a fresh window after the heartbeat pipeline resumes.
    grace_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ingest_stalled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    last_sweep_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
