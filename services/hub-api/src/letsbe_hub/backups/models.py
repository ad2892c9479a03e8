"""A tenant's off-site backup target: where its backup script copies to, and with which keys (sealed)."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class BackupTarget(Base):
    __tablename__ = "backup_targets"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(300))
    region: Mapped[str] = mapped_column(String(40))
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(200))  # tenants/<tenant id>: nothing else of the bucket is its
    # The credentials and the tenant's encryption key, Fernet-sealed under a key derived for this tenant alone.
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
