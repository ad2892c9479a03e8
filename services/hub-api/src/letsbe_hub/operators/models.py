"""Operator accounts of the web console: a name, an argon2 password hash, a TOTP secret (encrypted) and scopes."""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    # Fernet(settings.operator_totp_key): the secret must be read back to check a code, so it is encrypted.
    totp_secret: Mapped[bytes] = mapped_column(LargeBinary)
    # The last 30 s TOTP step accepted: a code is good once (an observed code cannot be replayed).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
