"""SQL of the lifecycle context. Status changes go through lifecycle.state, never through here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.lifecycle.models import LifecycleJob, LifecycleJobTransition
from letsbe_hub.lifecycle.state import FAILED, SNAPSHOT, SUCCEEDED


async def claim(session: AsyncSession, owner: str, now: datetime, until: datetime) -> LifecycleJob | None:
    """Lease one due job nobody holds (``FOR UPDATE SKIP LOCKED``: replicas never wait on each other's rows)."""
    due = (
        select(LifecycleJob.id)
        .where(
            LifecycleJob.finished_at.is_(None),
            LifecycleJob.status != FAILED,
            LifecycleJob.due_at <= now,
            (LifecycleJob.lease_until.is_(None)) | (LifecycleJob.lease_until < now),
        )
        .order_by(LifecycleJob.due_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(LifecycleJob)
        .where(LifecycleJob.id == due)
        .values(lease_owner=owner, lease_until=until)
        .returning(LifecycleJob)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def renew(session: AsyncSession, job_id: uuid.UUID, owner: str, until: datetime) -> bool:
    stmt = (
        update(LifecycleJob)
        .where(LifecycleJob.id == job_id, LifecycleJob.lease_owner == owner)
        .values(lease_until=until)
        .returning(LifecycleJob.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def release(
    session: AsyncSession,
    job_id: uuid.UUID,
    owner: str,
    *,
    due_at: datetime,
    attempts: int | None = None,
    last_error: str | None = None,
) -> None:
    """Give the lease back with the next time the job is due (a wait, or a retry after an error)."""
    values: dict[str, object] = {"lease_owner": None, "lease_until": None, "due_at": due_at}
    if attempts is not None:
        values.update(attempts=attempts, last_error=last_error)
    await session.execute(
        update(LifecycleJob).where(LifecycleJob.id == job_id, LifecycleJob.lease_owner == owner).values(**values)
    )


async def make_due(session: AsyncSession, job_id: uuid.UUID, now: datetime) -> None:
    """Not a status change: the job's next step simply runs now instead of later."""
    await session.execute(
        update(LifecycleJob).where(LifecycleJob.id == job_id, LifecycleJob.due_at > now).values(due_at=now)
    )


async def set_data_key(
    session: AsyncSession, job_id: uuid.UUID, key: str, value: Any, *, owner: str | None = None
) -> bool:
    """Set one key of the job's ``data`` in SQL (``data || {key: value}``), so writers of other keys are not undone;
    with ``owner``, only while that worker holds the lease. Not a status change."""
    stmt = update(LifecycleJob).where(LifecycleJob.id == job_id)
    if owner is not None:
        stmt = stmt.where(LifecycleJob.lease_owner == owner)
    patch = bindparam("patch", {key: value}, type_=JSONB)
    done = await session.execute(stmt.values(data=LifecycleJob.data.op("||")(patch)).returning(LifecycleJob.id))
    return done.scalar_one_or_none() is not None


async def get(session: AsyncSession, job_id: uuid.UUID) -> LifecycleJob | None:
    return await session.get(LifecycleJob, job_id, populate_existing=True)


async def history(session: AsyncSession, job_id: uuid.UUID) -> Sequence[LifecycleJobTransition]:
    stmt = (
        select(LifecycleJobTransition)
        .where(LifecycleJobTransition.job_id == job_id)
        .order_by(LifecycleJobTransition.id)
    )
    return (await session.execute(stmt)).scalars().all()


async def transitions_after(
    session: AsyncSession, job_id: uuid.UUID, after_id: int, limit: int
) -> Sequence[LifecycleJobTransition]:
    stmt = (
        select(LifecycleJobTransition)
        .where(LifecycleJobTransition.job_id == job_id, LifecycleJobTransition.id > after_id)
        .order_by(LifecycleJobTransition.id)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def list_jobs(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, kind: str | None, limit: int
) -> Sequence[LifecycleJob]:
    stmt = select(LifecycleJob).order_by(LifecycleJob.created_at.desc(), LifecycleJob.id).limit(limit)
    if tenant_id is not None:
        stmt = stmt.where(LifecycleJob.tenant_id == tenant_id)
    if kind is not None:
        stmt = stmt.where(LifecycleJob.kind == kind)
    return (await session.execute(stmt)).scalars().all()


async def snapshots_beyond(session: AsyncSession, tenant_id: uuid.UUID, keep: int) -> Sequence[LifecycleJob]:
    """The tenant's succeeded snapshots older than its newest ``keep``."""
    stmt = (
        select(LifecycleJob)
        .where(LifecycleJob.tenant_id == tenant_id, LifecycleJob.kind == SNAPSHOT, LifecycleJob.status == SUCCEEDED)
        .order_by(LifecycleJob.due_at.desc())
        .offset(keep)
    )
    return (await session.execute(stmt)).scalars().all()


async def existing_keys(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    return set((await session.execute(select(LifecycleJob.key).where(LifecycleJob.key.in_(keys)))).scalars())
