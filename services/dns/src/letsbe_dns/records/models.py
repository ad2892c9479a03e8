"""Every Cloudflare record this service wrote, so decommission can remove exactly its own and nothing else."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_dns.db import Base


class ManagedRecord(Base):
    __tablename__ = "records"
    __table_args__ = (
        UniqueConstraint("zone_id", "record_id"),
        Index("ix_records_tenant_live", "tenant_id", postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)  # == the order id
    domain: Mapped[str] = mapped_column(String(253), nullable=False)
    zone_id: Mapped[str] = mapped_column(String(32), nullable=False)
    zone_name: Mapped[str] = mapped_column(String(253), nullable=False)
    record_id: Mapped[str] = mapped_column(String(64), nullable=False)  # Cloudflare's id
    type: Mapped[str] = mapped_column(String(10), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    priority: Mapped[int | None] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(60), nullable=False)  # root, wildcard, tool:files, mail-mx, acme…
    # True: this service created the record, so decommission deletes it. False: it was there before (the
    # customer's) and we only corrected its content; decommission restores ``previous_content`` in it.
    created: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # The customer's content before we replaced it (their apex A, their SPF): decommission puts it back.
    previous_content: Mapped[str | None] = mapped_column(Text)
    previous_priority: Mapped[int | None] = mapped_column(Integer)
    restored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
