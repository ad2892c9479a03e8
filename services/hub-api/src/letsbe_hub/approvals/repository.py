"""SQL of the approvals context. State changes are the APPROVAL machine's compare-and-set transitions, so two
deciders (or two consumers) cannot both win."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_contracts.approvals import ApprovalStatus
from letsbe_hub.approvals.models import APPROVAL, ApprovalRow
from letsbe_platform import state
from letsbe_platform.pagination import Keyset


async def expire_due(
    session: AsyncSession,
    *,
    approval_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
    args_hash: str | None = None,
) -> None:
    """Mark open approvals past their expiry EXPIRED (lazily, on the rows about to be read or written)."""
    given = ((ApprovalRow.id, approval_id), (ApprovalRow.tenant_id, tenant_id), (ApprovalRow.args_hash, args_hash))
    where = (ApprovalRow.expires_at <= func.now(), *(column == value for column, value in given if value is not None))
    await state.transition_all(session, APPROVAL, ApprovalStatus.EXPIRED, where=where, actor="hub")


async def insert_pending(session: AsyncSession, values: dict[str, Any]) -> ApprovalRow | None:
    """Insert a PENDING request; None if one is already pending for the same tenant and call."""
    stmt = (
        insert(ApprovalRow)
        .values(id=uuid.uuid4(), status=ApprovalStatus.PENDING, **values)
        # The predicate as literal SQL: a bound parameter stops matching the partial index once asyncpg uses a
        # generic plan (the sixth run of the statement on a connection).
        .on_conflict_do_nothing(
            index_elements=["tenant_id", "args_hash"], index_where=text(f"status = '{ApprovalStatus.PENDING}'")
        )
        .returning(ApprovalRow)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def pending_for(session: AsyncSession, tenant_id: uuid.UUID, args_hash: str) -> ApprovalRow | None:
    stmt = select(ApprovalRow).where(
        ApprovalRow.tenant_id == tenant_id,
        ApprovalRow.args_hash == args_hash,
        ApprovalRow.status == ApprovalStatus.PENDING,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get(session: AsyncSession, approval_id: uuid.UUID, tenant_id: uuid.UUID | None = None) -> ApprovalRow | None:
    stmt = select(ApprovalRow).where(ApprovalRow.id == approval_id)
    if tenant_id is not None:
        stmt = stmt.where(ApprovalRow.tenant_id == tenant_id)
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()


async def decide(
    session: AsyncSession, approval_id: uuid.UUID, status: ApprovalStatus, by: str, note: str | None
) -> ApprovalRow | None:
    return await state.try_transition(
        session, APPROVAL, approval_id, ApprovalStatus.PENDING, status, actor=by,
        where=(ApprovalRow.expires_at > func.now(),), decided_at=func.now(), decided_by=by, decision_note=note,
    )  # fmt: skip


async def consume(
    session: AsyncSession, approval_id: uuid.UUID, tenant_id: uuid.UUID, args_hash: str
) -> ApprovalRow | None:
    where = (
        ApprovalRow.tenant_id == tenant_id,
        ApprovalRow.args_hash == args_hash,
        ApprovalRow.expires_at > func.now(),
    )
    return await state.try_transition(
        session,
        APPROVAL,
        approval_id,
        ApprovalStatus.APPROVED,
        ApprovalStatus.CONSUMED,
        actor="safety-wrapper",
        where=where,
        consumed_at=func.now(),
    )


KEYSET = Keyset("approvals", ApprovalRow.requested_at, ApprovalRow.id)  # newest first


async def listing(
    session: AsyncSession, *, status: Sequence[str], tenant_id: uuid.UUID | None, limit: int, cursor: str | None
) -> tuple[list[ApprovalRow], str | None]:
    stmt = select(ApprovalRow)
    if status:
        stmt = stmt.where(ApprovalRow.status.in_(status))
    if tenant_id is not None:
        stmt = stmt.where(ApprovalRow.tenant_id == tenant_id)
    return await KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)
