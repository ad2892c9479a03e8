"""A subscription per self-serve order, its dunning state and the billing emails."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class SubscriptionState(StrEnum):
    """ACTIVE → PAST_DUE → SUSPENDED → ACTIVE (paid); any → CANCELLED → DECOMMISSIONED. billing.service.ALLOWED has
    the table."""

    ACTIVE = "ACTIVE"
    PAST_DUE = "PAST_DUE"  # a renewal failed: grace runs
    SUSPENDED = "SUSPENDED"  # grace over: tools stopped, data kept
    CANCELLED = "CANCELLED"  # subscription ended: the export window runs
    DECOMMISSIONED = "DECOMMISSIONED"


class Subscription(Base):
    """The Stripe subscription of one order. The customer is the order's email plus ``stripe_customer_id``."""

    __tablename__ = "billing_subscriptions"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_email: Mapped[str] = mapped_column(String(320))
    price_id: Mapped[str | None] = mapped_column(String(255))
    tier: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(10))
    # Written only by billing.service.transition (compare-and-set on the current state).
    state: Mapped[str] = mapped_column(String(20), server_default=SubscriptionState.ACTIVE.value)
    paid_through: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    past_due_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    grace_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    suspensions: Mapped[int] = mapped_column(Integer, server_default="0")  # numbers the suspend/resume commands
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decommission_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decommissioned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(f"state IN ({', '.join(repr(s.value) for s in SubscriptionState)})", name="state"),
        Index("ix_billing_subscriptions_due", "state", "grace_until", "decommission_at"),
    )


class BillingEmail(Base):
    """A dunning/billing email to send once: the same protocol as notifications.mailer (claim, send, mark sent)."""

    __tablename__ = "billing_emails"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # derived from (kind, order, cause): enqueued once
    order_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(10), server_default="pending")  # pending | sending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
