"""Per-tenant LLM keys (the relay's credentials) and the usage the relay metered."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class LlmKey(Base):
    """A tenant's key for the LLM relay, stored as SHA-256 (only ever compared). After a new key is issued the
    previous one keeps working until ``valid_until`` (the tenant's proxy is switched over meanwhile)."""

    __tablename__ = "llm_keys"
    __table_args__ = (Index("ix_llm_keys_tenant_id", "tenant_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # None: until replaced
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LlmUsage(Base):
    """What the relay forwarded for a tenant, per hour and model (counted by the hub, not reported by the tenant)."""

    __tablename__ = "llm_usage"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens_in: Mapped[int] = mapped_column(BigInteger, server_default="0")
    tokens_out: Mapped[int] = mapped_column(BigInteger, server_default="0")
    requests: Mapped[int] = mapped_column(Integer, server_default="0")
