"""What the monitor knows about each tenant: liveness, the last heavy heartbeat, backups, TLS, token usage."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_monitor.db import Base

ONLINE, OFFLINE = "online", "offline"


class Tenant(Base):
    """One row per tenant. ``watched`` from its provisioned event on; the sweep reads only indexed columns."""

    __tablename__ = "tenants"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    domain: Mapped[str | None] = mapped_column(String(253))
    tier: Mapped[str | None] = mapped_column(String(20))
    tools: Mapped[list[str]] = mapped_column(ARRAY(String(60)), server_default=text("'{}'"))
    watched: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    watched_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    billing_anchor: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Liveness: last_seen is the hub's receive time of the latest Safety Wrapper heartbeat; offline_at is when it
    # becomes more than N missed intervals old (precomputed so the sweep is one index range scan).
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    interval_seconds: Mapped[int] = mapped_column(Integer, server_default=text("60"))
    offline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    liveness: Mapped[str] = mapped_column(String(10), server_default=text("'online'"))
    offline_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    offline_alerted: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The heavy part of the heartbeat: when last evaluated, and what the next one is compared with.
    details_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    container_restarts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    backup_last_run: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    backup_offsite_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last run copied off-site
    tls_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tls_not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tls_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        Index("ix_tenants_last_seen", "last_seen", postgresql_where=text("watched")),
        Index("ix_tenants_offline_at", "offline_at", postgresql_where=text("watched AND liveness = 'online'")),
        Index(
            "ix_tenants_offline_pending",
            "offline_since",
            postgresql_where=text("watched AND liveness = 'offline' AND NOT offline_alerted"),
        ),
        Index("ix_tenants_backup_last_run", "backup_last_run", postgresql_where=text("watched")),
        Index("ix_tenants_tls_checked_at", "tls_checked_at", postgresql_where=text("watched")),
    )


class UsageReport(Base):
    """Token usage per (tenant, hour, sequence): the idempotency key of the agent's usage report."""

    __tablename__ = "usage_reports"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TokenPoolFired(Base):
    """A token-pool threshold that fired in a billing period: each fires at most once per period."""

    __tablename__ = "token_pool_fired"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    rule: Mapped[str] = mapped_column(String(80), primary_key=True)
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
