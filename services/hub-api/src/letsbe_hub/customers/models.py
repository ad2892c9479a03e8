import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class Customer(Base):
    """A customer: the (lower-cased) email their orders carry. Created when they first ask for a sign-in link."""

    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SignInLink(Base):
    """An emailed one-time sign-in link: single use, short-lived, only the token's SHA-256 stored."""

    __tablename__ = "sign_in_links"
    __table_args__ = (Index("ix_sign_in_links_customer_created", "customer_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PushDevice(Base):
    """A device of the customer's app that takes the §9.2 push notifications (a medium alert after its third failure,
    a hard one at once). One row per device token: registering it again, even from another account, moves it."""

    __tablename__ = "push_devices"
    __table_args__ = (
        CheckConstraint("platform IN ('apns', 'fcm', 'webpush')", name="ck_push_devices_platform"),
        Index("ix_push_devices_customer_created", "customer_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hub.customers.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(10))
    token: Mapped[str] = mapped_column(Text)  # the push service's address of the device (read back to send)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # one row per device
    label: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
