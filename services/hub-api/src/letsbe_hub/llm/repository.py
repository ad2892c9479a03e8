"""SQL of the llm context: relay keys and metered usage."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.llm.models import LlmKey, LlmUsage


async def expire_active_keys(session: AsyncSession, tenant_id: uuid.UUID, until: datetime) -> None:
    """The tenant's keys that are valid later than ``until`` (or open-ended) end at ``until``."""
    await session.execute(
        update(LlmKey)
        .where(
            LlmKey.tenant_id == tenant_id,
            LlmKey.revoked_at.is_(None),
            or_(LlmKey.valid_until.is_(None), LlmKey.valid_until > until),
        )
        .values(valid_until=until)
    )


async def add_key(session: AsyncSession, tenant_id: uuid.UUID, key_hash: str) -> None:
    session.add(LlmKey(tenant_id=tenant_id, key_hash=key_hash))
    await session.flush()


async def revoke_keys(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> int:
    result = await session.execute(
        update(LlmKey).where(LlmKey.tenant_id == tenant_id, LlmKey.revoked_at.is_(None)).values(revoked_at=now)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


async def tenant_of_key(session: AsyncSession, key_hash: str, now: datetime) -> uuid.UUID | None:
    return await session.scalar(
        select(LlmKey.tenant_id).where(
            LlmKey.key_hash == key_hash,
            LlmKey.revoked_at.is_(None),
            or_(LlmKey.valid_until.is_(None), LlmKey.valid_until > now),
        )
    )


async def add_usage(
    session: AsyncSession, tenant_id: uuid.UUID, hour: datetime, model: str, tokens_in: int, tokens_out: int
) -> None:
    stmt = insert(LlmUsage).values(
        tenant_id=tenant_id, hour=hour, model=model, tokens_in=tokens_in, tokens_out=tokens_out, requests=1
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[LlmUsage.tenant_id, LlmUsage.hour, LlmUsage.model],
            set_={
                "tokens_in": LlmUsage.tokens_in + stmt.excluded.tokens_in,
                "tokens_out": LlmUsage.tokens_out + stmt.excluded.tokens_out,
                "requests": LlmUsage.requests + 1,
            },
        )
    )


async def usage_of(session: AsyncSession, tenant_id: uuid.UUID, since: datetime) -> list[LlmUsage]:
    rows = await session.execute(
        select(LlmUsage)
        .where(and_(LlmUsage.tenant_id == tenant_id, LlmUsage.hour >= since))
        .order_by(LlmUsage.hour, LlmUsage.model)
    )
    return list(rows.scalars())


async def working_keys(session: AsyncSession, tenant_id: uuid.UUID, now: datetime) -> int:
    """How many of the tenant's keys work now."""
    return len(
        (
            await session.execute(
                select(LlmKey.id).where(
                    LlmKey.tenant_id == tenant_id,
                    LlmKey.revoked_at.is_(None),
                    or_(LlmKey.valid_until.is_(None), LlmKey.valid_until > now),
                )
            )
        ).all()
    )
