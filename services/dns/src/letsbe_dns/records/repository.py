"""SQL for the records context (the only place that writes dns.records)."""

from __future__ import annotations

import uuid

from sqlalchemy import case, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_dns.records.models import ManagedRecord


async def track(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    domain: str,
    zone_id: str,
    zone_name: str,
    record_id: str,
    type: str,
    name: str,
    content: str,
    priority: int | None,
    purpose: str,
    created: bool,
    previous_content: str | None = None,
    previous_priority: int | None = None,
) -> None:
    """Insert or refresh the row of one Cloudflare record. ``created`` only ever goes from False to True; the
    first ``previous_content`` recorded (the customer's own) is kept, never overwritten by our later content."""
    table = ManagedRecord.__table__
    stmt = insert(table).values(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        domain=domain,
        zone_id=zone_id,
        zone_name=zone_name,
        record_id=record_id,
        type=type,
        name=name,
        content=content,
        priority=priority,
        purpose=purpose,
        created=created,
        previous_content=previous_content,
        previous_priority=previous_priority,
    )
    first_previous = table.c.previous_content.is_(None)
    stmt = stmt.on_conflict_do_update(
        index_elements=["zone_id", "record_id"],
        set_={
            "content": stmt.excluded.content,
            "priority": stmt.excluded.priority,
            "name": stmt.excluded.name,
            "created": table.c.created | stmt.excluded.created,
            "previous_content": case((first_previous, stmt.excluded.previous_content), else_=table.c.previous_content),
            "previous_priority": case(
                (first_previous, stmt.excluded.previous_priority), else_=table.c.previous_priority
            ),
            "restored_at": None,
            "updated_at": func.now(),
            "deleted_at": None,
        },
    )
    await session.execute(stmt)


async def created_by_us(session: AsyncSession, zone_id: str, record_id: str) -> bool:
    row = await session.execute(
        select(ManagedRecord.created).where(ManagedRecord.zone_id == zone_id, ManagedRecord.record_id == record_id)
    )
    return bool(row.scalar_one_or_none())


async def live_created(session: AsyncSession, tenant_id: uuid.UUID) -> list[ManagedRecord]:
    """The records this service created for the tenant and has not deleted yet."""
    rows = await session.execute(
        select(ManagedRecord)
        .where(
            ManagedRecord.tenant_id == tenant_id,
            ManagedRecord.created.is_(True),
            ManagedRecord.deleted_at.is_(None),
        )
        .order_by(ManagedRecord.created_at, ManagedRecord.name)
    )
    return list(rows.scalars())


async def live_replaced(session: AsyncSession, tenant_id: uuid.UUID) -> list[ManagedRecord]:
    """The customer's records whose content we replaced for the tenant and have not put back yet."""
    rows = await session.execute(
        select(ManagedRecord)
        .where(
            ManagedRecord.tenant_id == tenant_id,
            ManagedRecord.created.is_(False),
            ManagedRecord.previous_content.is_not(None),
            ManagedRecord.restored_at.is_(None),
            ManagedRecord.deleted_at.is_(None),
        )
        .order_by(ManagedRecord.created_at, ManagedRecord.name)
    )
    return list(rows.scalars())


async def mark_restored(session: AsyncSession, row_id: uuid.UUID) -> None:
    await session.execute(
        update(ManagedRecord).where(ManagedRecord.id == row_id).values(restored_at=func.now(), updated_at=func.now())
    )


async def live_challenges(session: AsyncSession, tenant_id: uuid.UUID, name: str, content: str) -> list[ManagedRecord]:
    rows = await session.execute(
        select(ManagedRecord).where(
            ManagedRecord.tenant_id == tenant_id,
            ManagedRecord.purpose == "acme-challenge",
            ManagedRecord.name == name,
            ManagedRecord.content == content,
            ManagedRecord.deleted_at.is_(None),
        )
    )
    return list(rows.scalars())


async def mark_deleted(session: AsyncSession, row_id: uuid.UUID) -> None:
    await session.execute(
        update(ManagedRecord).where(ManagedRecord.id == row_id).values(deleted_at=func.now(), updated_at=func.now())
    )


async def lock_domain(session: AsyncSession, domain: str) -> None:
    """Serialise work on one domain across workers and replicas until the caller's transaction ends."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"letsbe-dns:{domain}"})


async def live_by_purpose(session: AsyncSession, tenant_id: uuid.UUID, purpose: str) -> list[ManagedRecord]:
    """The tenant's records of one purpose (``wildcard``, ``tool:<name>``, …) that are not deleted."""
    rows = await session.execute(
        select(ManagedRecord)
        .where(
            ManagedRecord.tenant_id == tenant_id,
            ManagedRecord.purpose == purpose,
            ManagedRecord.deleted_at.is_(None),
        )
        .order_by(ManagedRecord.created_at, ManagedRecord.name)
    )
    return list(rows.scalars())


async def live_for_tenant(session: AsyncSession, tenant_id: uuid.UUID, limit: int) -> list[ManagedRecord]:
    """What is in the tenant's zone on our account now: records we created, customer records we replaced."""
    rows = await session.execute(
        select(ManagedRecord)
        .where(
            ManagedRecord.tenant_id == tenant_id,
            ManagedRecord.deleted_at.is_(None),
            ManagedRecord.restored_at.is_(None),
        )
        .order_by(ManagedRecord.name, ManagedRecord.type, ManagedRecord.content)
        .limit(limit)
    )
    return list(rows.scalars())
