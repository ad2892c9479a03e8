import uuid
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class WelcomeEmail(Base):
    """One row per fulfilled order: the welcome email's send state (see notifications.mailer for the protocol)."""

    __tablename__ = "welcome_emails"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(320))
    customer_name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str] = mapped_column(String(253))
    tools: Mapped[list[str]] = mapped_column(ARRAY(String(41)))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(10), server_default="pending")  # pending | sending | sent
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
