"""The server inventory, pool policies and the allocation worker's own bookkeeping (schema ``hub``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base
from letsbe_platform.state import Machine


class InventoryStatus(StrEnum):
    AVAILABLE = "AVAILABLE"  # in the pool, freshly installed, nobody's
    RESERVED = "RESERVED"  # handed to an order (server-allocated emitted), being set up
    IN_USE = "IN_USE"  # the tenant runs on it (provisioned)
    DRAINING = "DRAINING"  # to be retired once its tenant has moved off
    RETIRED = "RETIRED"  # out of the inventory for good


# A server in one of these states belongs to its order: at most one per order (a unique partial index).
HELD_STATUSES = (InventoryStatus.RESERVED, InventoryStatus.IN_USE, InventoryStatus.DRAINING)


class OverflowStatus(StrEnum):
    CREATING = "CREATING"  # intent recorded; the Hetzner server may or may not exist yet
    READY = "READY"  # running, reachable, in the inventory, server-allocated emitted
    FAILING = "FAILING"  # gave up; deleting whatever was created before failing the order
    FAILED = "FAILED"  # cleaned up, order-failed emitted; a retry starts a new attempt


class HoldStatus(StrEnum):
    HELD = "HELD"
    ASSIGNED = "ASSIGNED"


def _enum_check(column: str, values: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Server(Base):
    __tablename__ = "servers"
    __table_args__ = (
        UniqueConstraint("provider", "provider_ref"),
        CheckConstraint(_enum_check("status", InventoryStatus), name="status"),
        CheckConstraint("provider IN ('netcup', 'hetzner')", name="provider"),
        CheckConstraint("tier IN ('lite', 'build', 'scale', 'enterprise')", name="tier"),
        CheckConstraint("region IN ('eu', 'us')", name="region"),
        Index("ix_servers_pool", "tier", "region", "status"),
        Index(
            "uq_servers_order_held",
            "order_id",
            unique=True,
            postgresql_where=text("order_id IS NOT NULL AND status IN ('RESERVED', 'IN_USE', 'DRAINING')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(20))
    provider_ref: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(10))
    ipv4: Mapped[str] = mapped_column(String(15))
    ipv6: Mapped[str | None] = mapped_column(String(45))
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    ssh_user: Mapped[str] = mapped_column(String(32), default="letsbe")
    host_key_fingerprint: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20), default=InventoryStatus.AVAILABLE.value)
    order_id: Mapped[uuid.UUID | None] = mapped_column()
    tenant_id: Mapped[uuid.UUID | None] = mapped_column()
    contract_end: Mapped[date | None] = mapped_column(Date)  # Netcup: end of the 12-month term
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    reserved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Who registered and who retired it (an API token's name, or operator:<name> from the console).
    registered_by: Mapped[str | None] = mapped_column(String(200))
    retired_by: Mapped[str | None] = mapped_column(String(200))


class PoolPolicy(Base):
    """How many AVAILABLE servers a tier × region pool should hold, and the open below-minimum alert if any."""

    __tablename__ = "server_pools"
    __table_args__ = (CheckConstraint("min_available >= 0 AND target_available >= min_available", name="sizes"),)

    tier: Mapped[str] = mapped_column(String(20), primary_key=True)
    region: Mapped[str] = mapped_column(String(10), primary_key=True)
    min_available: Mapped[int] = mapped_column(Integer)
    target_available: Mapped[int] = mapped_column(Integer)
    alert_id: Mapped[uuid.UUID | None] = mapped_column()
    below_minimum_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    updated_by: Mapped[str | None] = mapped_column(String(200))  # who set the sizes last (None: the defaults)


class AllocationHold(Base):
    """A MANUAL order that found its pool empty: it waits here until an operator assigns a server."""

    __tablename__ = "allocation_holds"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tier: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(10))
    order_spec: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the OrderSpec, to emit server-allocated later
    status: Mapped[str] = mapped_column(String(20), default=HoldStatus.HELD.value)
    reason: Mapped[str] = mapped_column(Text)
    held_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    server_id: Mapped[uuid.UUID | None] = mapped_column()
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_by: Mapped[str | None] = mapped_column(String(120))


class OverflowServer(Base):
    """The intent to create a Hetzner server for an order, written *before* calling Hetzner.

    One row per order; ``name`` (unique at Hetzner too) makes a redelivered or crashed attempt find its server
    instead of creating a second one. A retry after a failure starts a new attempt with a new name.
    """

    __tablename__ = "overflow_servers"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column()  # the order-created event that owns the current attempt
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    tier: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default=OverflowStatus.CREATING.value)
    hetzner_id: Mapped[int | None] = mapped_column(BigInteger)
    server_id: Mapped[uuid.UUID | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    retryable: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class MigrationProposal(Base):
    """A tenant on Hetzner overflow that could move to an AVAILABLE Netcup server (found by the monthly check)."""

    __tablename__ = "migration_proposals"
    __table_args__ = (UniqueConstraint("from_server_id", "period"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM: one proposal per tenant per month
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    from_server_id: Mapped[uuid.UUID] = mapped_column()
    to_server_id: Mapped[uuid.UUID] = mapped_column()
    tier: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(10))
    monthly_saving_eur: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# The status machines of this context. None has a history table: a server's moves are recorded where operators
# already look (the order's transitions for reserve and in use, the decommission job's history for drain and
# retire, the log line of an operator's retire), a hold's in its own assigned_at/assigned_by, an overflow
# attempt's in the order's failure events.
Inv, Ovf = InventoryStatus, OverflowStatus
SERVER = Machine(
    noun="server",
    model=Server,
    transitions={
        Inv.AVAILABLE: frozenset({Inv.RESERVED, Inv.DRAINING, Inv.RETIRED}),
        Inv.RESERVED: frozenset({Inv.IN_USE, Inv.DRAINING, Inv.RETIRED}),
        Inv.IN_USE: frozenset({Inv.DRAINING, Inv.RETIRED}),
        # AVAILABLE: a Netcup pool server wiped, reinstalled and preflighted after its tenant's decommission
        Inv.DRAINING: frozenset({Inv.RETIRED, Inv.AVAILABLE}),
    },
    id_field="server_id",
)
HOLD = Machine(
    noun="allocation hold",
    model=AllocationHold,
    transitions={HoldStatus.HELD: frozenset({HoldStatus.ASSIGNED})},
    id_field="order_id",
)
OVERFLOW = Machine(
    noun="overflow attempt",
    model=OverflowServer,
    transitions={
        Ovf.CREATING: frozenset({Ovf.READY, Ovf.FAILING, Ovf.FAILED}),
        Ovf.FAILING: frozenset({Ovf.FAILED}),
        Ovf.READY: frozenset({Ovf.CREATING}),  # its server was released: a retry starts a new attempt
        Ovf.FAILED: frozenset({Ovf.CREATING}),
    },
    id_field="order_id",
)
