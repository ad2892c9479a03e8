"""Tenants, their agents, agent credentials, registration tokens and what agents report."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base
from letsbe_platform.state import Machine


class TenantState(StrEnum):
    PENDING = "PENDING"  # until its Safety Wrapper registers
    ACTIVE = "ACTIVE"
    DECOMMISSIONED = "DECOMMISSIONED"


class Tenant(Base):
    """One customer server. ``id`` is the order id of the order that created it (interfaces.md)."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column()
    domain: Mapped[str] = mapped_column(String(253))
    tier: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(10))
    server_id: Mapped[uuid.UUID | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default=TenantState.PENDING)
    staging: Mapped[bool] = mapped_column(Boolean, default=False)  # a rollout's first stage runs here
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Agent(Base):
    """A registered agent. Heartbeats touch only ``last_heartbeat_at``/``last_seq`` (no indexed column), so with the
    table's fillfactor they are HOT updates."""

    __tablename__ = "agents"
    __table_args__ = (
        Index("uq_agents_active_kind", "tenant_id", "kind", unique=True, postgresql_where=text("revoked_at IS NULL")),
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(40))
    domain: Mapped[str] = mapped_column(String(253))  # copied from the tenant: the heartbeat event needs no join
    version: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(253))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    details_hash: Mapped[str | None] = mapped_column(String(64))
    details_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AgentCredential(Base):
    """An agent's API key, stored as SHA-256. Two may be valid at once for a while after a rotation."""

    __tablename__ = "agent_credentials"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    agent_id: Mapped[uuid.UUID] = mapped_column(index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RegistrationToken(Base):
    """Single use, short lived, stored hashed; consumed by one compare-and-set UPDATE."""

    __tablename__ = "registration_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    used_by_agent_id: Mapped[uuid.UUID | None] = mapped_column()


class AgentDetails(Base):
    """The latest heavy part of an agent's heartbeat (disk, memory, containers, versions, backup)."""

    __tablename__ = "agent_details"

    agent_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TenantComponent(Base):
    """What runs on a tenant, per component: the basis of "never downgrade" in rollouts."""

    __tablename__ = "tenant_components"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    component: Mapped[str] = mapped_column(String(60), primary_key=True)
    version: Mapped[str | None] = mapped_column(String(64))
    digest: Mapped[str | None] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BackupReportRow(Base):
    __tablename__ = "backup_reports"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    report_date: Mapped[date] = mapped_column(Date, primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column()
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    problem: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UsageReportRow(Base):
    """(tenant, hour, sequence) is the idempotency key of a usage report."""

    __tablename__ = "usage_reports"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[uuid.UUID] = mapped_column()
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    tokens_in: Mapped[int] = mapped_column(BigInteger)
    tokens_out: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# No history table: the tenant-decommissioned event and the decommission job's history record the end, the first
# agent registration (tenant_agent_registered event, agents.created_at) the start.
TENANT = Machine(
    noun="tenant",
    model=Tenant,
    transitions={
        TenantState.PENDING: frozenset({TenantState.ACTIVE, TenantState.DECOMMISSIONED}),
        TenantState.ACTIVE: frozenset({TenantState.DECOMMISSIONED}),
    },
    id_field="tenant_id",
)
