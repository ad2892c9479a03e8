"""Customer app tokens: what a customer's app authenticates to the chat relay with (until sessions cover apps)."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class CustomerAppToken(Base):
    """One app token of a tenant's customer, stored as SHA-256 (only ever compared); shown once when issued."""

    __tablename__ = "customer_app_tokens"
    __table_args__ = (Index("ix_customer_app_tokens_tenant_id", "tenant_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
