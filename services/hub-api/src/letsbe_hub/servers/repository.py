"""Every SQL statement of the servers context. Callers own the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.servers.models import (
    HELD_STATUSES,
    HOLD,
    SERVER,
    AllocationHold,
    HoldStatus,
    InventoryStatus,
    MigrationProposal,
    OverflowServer,
    PoolPolicy,
    Server,
)
from letsbe_platform import state
from letsbe_platform.pagination import Keyset

# --- inventory -----------------------------------------------------------------------------------------------------


async def lock_available_server(session: AsyncSession, tier: str, region: str) -> Server | None:
    """Take one AVAILABLE server of the pool, locked for this transaction.

    ``SKIP LOCKED``: concurrent allocators each get a different row instead of queueing behind one another, and a
    row another transaction just reserved is re-checked against ``status = AVAILABLE`` before it is returned.
    Oldest first, so pool servers (and their contracts) are used in the order they were bought.
    """
    stmt = (
        select(Server)
        .where(Server.status == InventoryStatus.AVAILABLE, Server.tier == tier, Server.region == region)
        .order_by(Server.created_at, Server.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def lock_server(session: AsyncSession, server_id: uuid.UUID) -> Server | None:
    return (await session.execute(select(Server).where(Server.id == server_id).with_for_update())).scalar_one_or_none()


async def get_server(session: AsyncSession, server_id: uuid.UUID) -> Server | None:
    return await session.get(Server, server_id)


async def server_for_order(session: AsyncSession, order_id: uuid.UUID) -> Server | None:
    stmt = select(Server).where(Server.order_id == order_id, Server.status.in_([s.value for s in HELD_STATUSES]))
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_server(session: AsyncSession, provider: str, provider_ref: str) -> Server | None:
    stmt = select(Server).where(Server.provider == provider, Server.provider_ref == provider_ref)
    return (await session.execute(stmt)).scalar_one_or_none()


async def named_in_inventory(session: AsyncSession, provider: str, name: str) -> bool:
    stmt = select(Server.id).where(Server.provider == provider, Server.name == name).limit(1)
    return (await session.scalar(stmt)) is not None


async def add_server(session: AsyncSession, **values: Any) -> Server:
    server = Server(**values)
    session.add(server)
    await session.flush()
    return server


SERVERS_KEYSET = Keyset("servers", Server.created_at, Server.id, descending=False)  # oldest first
HOLDS_KEYSET = Keyset("holds", AllocationHold.held_at, AllocationHold.order_id, descending=False)  # longest waiting
PROPOSALS_KEYSET = Keyset("migrations", MigrationProposal.created_at, MigrationProposal.id)  # newest first


async def list_servers(
    session: AsyncSession,
    *,
    status: Sequence[str] = (),
    tier: str | None = None,
    region: str | None = None,
    provider: str | None = None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Server], str | None]:
    stmt = select(Server)
    if status:
        stmt = stmt.where(Server.status.in_(status))
    for column, value in ((Server.tier, tier), (Server.region, region), (Server.provider, provider)):
        if value is not None:
            stmt = stmt.where(column == value)
    return await SERVERS_KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


async def counts_by_pool(session: AsyncSession) -> dict[tuple[str, str], dict[str, int]]:
    """{(tier, region): {status: count}} over the whole inventory."""
    rows = await session.execute(
        select(Server.tier, Server.region, Server.status, func.count()).group_by(
            Server.tier, Server.region, Server.status
        )
    )
    out: dict[tuple[str, str], dict[str, int]] = {}
    for tier, region, status, n in rows:
        out.setdefault((tier, region), {})[status] = n
    return out


async def mark_in_use(session: AsyncSession, server_id: uuid.UUID, tenant_id: uuid.UUID) -> bool:
    moved = await state.try_transition(
        session, SERVER, server_id, InventoryStatus.RESERVED, InventoryStatus.IN_USE, actor="hub", tenant_id=tenant_id
    )
    return moved is not None


async def servers_by(session: AsyncSession, provider: str, statuses: Sequence[InventoryStatus]) -> Sequence[Server]:
    rows = await session.execute(
        select(Server)
        .where(Server.provider == provider, Server.status.in_([s.value for s in statuses]))
        .order_by(Server.reserved_at.nulls_last(), Server.created_at, Server.id)
    )
    return rows.scalars().all()


async def cost_rows(session: AsyncSession) -> Sequence[Any]:
    """(provider, tier, region, status, count) of every server not retired."""
    rows = await session.execute(
        select(Server.provider, Server.tier, Server.region, Server.status, func.count())
        .where(Server.status != InventoryStatus.RETIRED)
        .group_by(Server.provider, Server.tier, Server.region, Server.status)
        .order_by(Server.provider, Server.tier, Server.region, Server.status)
    )
    return rows.all()


# --- holds (MANUAL orders waiting for an operator) -----------------------------------------------------------------


async def hold(
    session: AsyncSession, order_id: uuid.UUID, tier: str, region: str, spec: dict[str, Any], reason: str
) -> None:
    stmt = insert(AllocationHold).values(
        order_id=order_id, tier=tier, region=region, order_spec=spec, status=HoldStatus.HELD.value, reason=reason
    )
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["order_id"]))


async def lock_hold(session: AsyncSession, order_id: uuid.UUID) -> AllocationHold | None:
    stmt = select(AllocationHold).where(AllocationHold.order_id == order_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def resolve_hold(session: AsyncSession, order_id: uuid.UUID, server_id: uuid.UUID, by: str) -> None:
    """HELD → ASSIGNED; nothing when the order was never held."""
    await state.try_transition(
        session,
        HOLD,
        order_id,
        HoldStatus.HELD,
        HoldStatus.ASSIGNED,
        actor=by,
        server_id=server_id,
        assigned_at=func.now(),
        assigned_by=by,
    )


async def list_holds(
    session: AsyncSession, status: str | None, *, limit: int, cursor: str | None
) -> tuple[list[AllocationHold], str | None]:
    stmt = select(AllocationHold)
    if status is not None:
        stmt = stmt.where(AllocationHold.status == status)
    return await HOLDS_KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


# --- overflow intents ------------------------------------------------------------------------------------------------


async def lock_overflow(session: AsyncSession, order_id: uuid.UUID) -> OverflowServer | None:
    stmt = select(OverflowServer).where(OverflowServer.order_id == order_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def add_overflow(session: AsyncSession, **values: Any) -> OverflowServer:
    row = OverflowServer(**values)
    session.add(row)
    await session.flush()
    return row


async def set_overflow(
    session: AsyncSession, order_id: uuid.UUID, name: str, expected: Sequence[str], **values: Any
) -> bool:
    """Columns other than the status, compare-and-set on (order, attempt name, status): False if another worker
    moved the attempt on."""
    result = await session.execute(
        update(OverflowServer)
        .where(OverflowServer.order_id == order_id, OverflowServer.name == name, OverflowServer.status.in_(expected))
        .values(**values)
        .returning(OverflowServer.order_id)
    )
    return result.first() is not None


async def stale_overflows(
    session: AsyncSession, statuses: Sequence[str], older_than: datetime, limit: int = 50
) -> Sequence[OverflowServer]:
    stmt = (
        select(OverflowServer)
        .where(OverflowServer.status.in_(statuses), OverflowServer.updated_at < older_than)
        .order_by(OverflowServer.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalars().all()


# --- pools -----------------------------------------------------------------------------------------------------------


async def list_pools(session: AsyncSession, *, lock: bool = False) -> Sequence[PoolPolicy]:
    stmt = select(PoolPolicy).order_by(PoolPolicy.region, PoolPolicy.tier)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalars().all()


async def upsert_pool(
    session: AsyncSession, tier: str, region: str, min_available: int, target_available: int, by: str | None = None
) -> PoolPolicy:
    sizes = {"min_available": min_available, "target_available": target_available, "updated_by": by}
    stmt = insert(PoolPolicy).values(tier=tier, region=region, **sizes)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tier", "region"], set_={**sizes, "updated_at": func.now()}
    ).returning(PoolPolicy)
    row = (await session.execute(stmt)).scalar_one()
    await session.refresh(row)
    return row


# --- migration proposals ---------------------------------------------------------------------------------------------


async def proposals_for(session: AsyncSession, period: str) -> Sequence[MigrationProposal]:
    rows = await session.execute(select(MigrationProposal).where(MigrationProposal.period == period))
    return rows.scalars().all()


async def add_proposal(session: AsyncSession, **values: Any) -> bool:
    stmt = (
        insert(MigrationProposal)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["from_server_id", "period"])
        .returning(MigrationProposal.id)
    )
    return (await session.execute(stmt)).first() is not None


async def list_proposals(
    session: AsyncSession, period: str | None, *, limit: int, cursor: str | None
) -> tuple[list[MigrationProposal], str | None]:
    stmt = select(MigrationProposal)
    if period:
        stmt = stmt.where(MigrationProposal.period == period)
    return await PROPOSALS_KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)
