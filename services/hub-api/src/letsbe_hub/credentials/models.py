import uuid
from datetime import datetime

from sqlalchemy import DateTime, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class CredentialReveal(Base):
    """One row per order: the tools' admin logins the provisioner created, until the customer has seen them once.

    ``ciphertext`` is Fernet (settings.credentials_key) and is dropped when revealed. The link's token is stored as
    a SHA-256 hash only; the welcome email carries the token itself (notifications.mailer)."""

    __tablename__ = "credential_reveals"

    order_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revealed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
