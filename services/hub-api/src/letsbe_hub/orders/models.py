"""Orders, their transition history and the provisioning progress the hub has seen for them.

Transition rows and progress rows draw their ids from one sequence, so the SSE stream of an order has one
cursor (the ``Last-Event-ID``) across both tables. Writers take the order's stream lock first
(:func:`letsbe_hub.orders.state.lock_stream`), so within one order ids are handed out in commit order and a
reader that has seen id N has seen every row of that order below N.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    Sequence,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_contracts.enums import OrderStatus
from letsbe_hub.db import Base

ORDER_STREAM_SEQ = Sequence("order_stream_seq", metadata=Base.metadata)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(253))
    tier: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(10))
    tools: Mapped[list[str]] = mapped_column(ARRAY(String(41)))
    automation_mode: Mapped[str] = mapped_column(String(10))
    cloudflare_zone_id: Mapped[str | None] = mapped_column(String(32))
    # Written only by letsbe_hub.orders.state (the one place that knows the transition table).
    status: Mapped[str] = mapped_column(String(30))
    failed_stage: Mapped[str | None] = mapped_column(String(20))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    failure_retryable: Mapped[bool | None] = mapped_column(Boolean)
    retry_count: Mapped[int] = mapped_column(Integer, server_default="0")
    # Payment (Stripe Checkout).
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(Text)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    amount_refunded_cents: Mapped[int] = mapped_column(Integer, server_default="0")
    payment_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    last_payment_error: Mapped[str | None] = mapped_column(Text)
    # Something an operator must look at (a refund after fulfilment, money for a cancelled order).
    attention: Mapped[str | None] = mapped_column(Text)
    # What the events told us, so a retry can re-emit the event that starts the failed stage.
    server_target: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    dns_records: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    tenant_id: Mapped[uuid.UUID | None]
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # One live order per domain: DNS records and the tenant are keyed by it. Cancelled orders free it.
        Index("uq_orders_domain_live", "domain", unique=True, postgresql_where=text("status <> 'CANCELLED'")),
        Index("ix_orders_created_at_id", "created_at", "id"),
        Index("ix_orders_status", "status"),
        # Search by customer email (case-insensitive: the list filters on lower(customer_email)).
        Index("ix_orders_customer_email_lower", func.lower(customer_email)),
        CheckConstraint(f"status IN ({', '.join(repr(s.value) for s in OrderStatus)})", name="status"),
    )


class OrderTransition(Base):
    """The audit trail of the state machine: who or what moved the order, when and why."""

    __tablename__ = "order_transitions"

    id: Mapped[int] = mapped_column(BigInteger, server_default=ORDER_STREAM_SEQ.next_value(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(index=True)
    from_status: Mapped[str | None] = mapped_column(String(30))
    to_status: Mapped[str] = mapped_column(String(30))
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)
    failed_stage: Mapped[str | None] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProvisioningProgress(Base):
    """Provisioning steps and log lines the provisioner reported, for the order's live stream and its history."""

    __tablename__ = "provisioning_progress"

    id: Mapped[int] = mapped_column(BigInteger, server_default=ORDER_STREAM_SEQ.next_value(), primary_key=True)
    order_id: Mapped[uuid.UUID]
    job_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(4))  # "step" | "log"
    step: Mapped[int] = mapped_column(SmallInteger)
    # log:<job>:<seq> or step:<job>:<step>:<attempt>:<status> — a redelivered or republished report is stored once.
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_provisioning_progress_order_id_id", "order_id", "id"),)
