"""SQL of the commands context."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.agent import CommandStatus
from letsbe_hub.commands.models import Command, CommandTransition
from letsbe_platform.pagination import Keyset

NOTIFY_CHANNEL = "hub_commands"
OPEN = (CommandStatus.QUEUED, CommandStatus.DELIVERED)


async def insert_command(session: AsyncSession, values: dict[str, Any]) -> Command | None:
    """None when (tenant, idempotency_key) exists: the caller reads the existing one."""
    stmt = (
        insert(Command)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        .returning(Command)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def by_key(session: AsyncSession, tenant_id: uuid.UUID, key: str) -> Command | None:
    stmt = select(Command).where(Command.tenant_id == tenant_id, Command.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get(session: AsyncSession, command_id: uuid.UUID, *, lock: bool = False) -> Command | None:
    stmt = select(Command).where(Command.id == command_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def notify(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """Wakes long-polls of this tenant, at commit (Postgres delivers NOTIFY only then)."""
    await session.execute(text("SELECT pg_notify(:ch, :tid)"), {"ch": NOTIFY_CHANNEL, "tid": str(tenant_id)})


async def due_for_delivery(
    session: AsyncSession, tenant_id: uuid.UUID, agent_kind: str, redeliver_after: timedelta, limit: int
) -> list[Command]:
    """Open commands for this agent, oldest first, locked: queued ones, and delivered ones nobody acknowledged in
    time (redelivery)."""
    now = func.now()
    stmt = (
        select(Command)
        .where(
            Command.tenant_id == tenant_id,
            Command.agent_kind == agent_kind,
            Command.status.in_(OPEN),
            Command.expires_at > now,
            or_(Command.status == CommandStatus.QUEUED, Command.delivered_at < now - redeliver_after),
        )
        .order_by(Command.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(stmt)).scalars())


async def redeliver(session: AsyncSession, command: Command) -> None:
    """Delivered again (its status stays DELIVERED)."""
    stmt = (
        update(Command)
        .where(Command.id == command.id)
        .values(delivered_at=func.now(), deliveries=Command.deliveries + 1)
        .returning(Command)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    await session.execute(stmt)


async def transitions_of(session: AsyncSession, command_id: uuid.UUID) -> list[CommandTransition]:
    stmt = select(CommandTransition).where(CommandTransition.command_id == command_id).order_by(CommandTransition.id)
    return list((await session.execute(stmt)).scalars())


KEYSET = Keyset("commands", Command.created_at, Command.id)  # newest first


async def list_for_tenant(
    session: AsyncSession, tenant_id: uuid.UUID, *, status: Sequence[str] = (), limit: int, cursor: str | None
) -> tuple[list[Command], str | None]:
    stmt = select(Command).where(Command.tenant_id == tenant_id)
    if status:
        stmt = stmt.where(Command.status.in_(status))
    return await KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


async def overdue(session: AsyncSession, now: datetime, limit: int = 500) -> list[Command]:
    """Running past their deadline, or still undelivered/unacknowledged past their expiry."""
    stmt = (
        select(Command)
        .where(
            or_(
                and_(Command.status == CommandStatus.RUNNING, Command.deadline_at < now),
                and_(Command.status.in_(OPEN), Command.expires_at < now),
            )
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(stmt)).scalars())


async def open_for_rollout(session: AsyncSession, rollout_id: uuid.UUID) -> list[Command]:
    stmt = select(Command).where(Command.rollout_id == rollout_id, Command.status.in_(OPEN))
    return list((await session.execute(stmt)).scalars())
