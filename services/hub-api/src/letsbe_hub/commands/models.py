"""Commands for tenant agents and their transition history."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from letsbe_hub.db import Base


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        # The pull and the heartbeat's "anything pending?" look only at open commands: a tiny partial index.
        Index(
            "ix_commands_open",
            "tenant_id",
            "agent_kind",
            "created_at",
            postgresql_where=text("status IN ('QUEUED', 'DELIVERED')"),
        ),
        Index("ix_commands_running_deadline", "deadline_at", postgresql_where=text("status = 'RUNNING'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    agent_kind: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="QUEUED")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # must start running before this
    deadline_seconds: Mapped[int] = mapped_column(Integer)  # how long it may run once acknowledged
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    rollout_id: Mapped[uuid.UUID | None] = mapped_column(index=True)


class CommandTransition(Base):
    __tablename__ = "command_transitions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    command_id: Mapped[uuid.UUID] = mapped_column(index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
