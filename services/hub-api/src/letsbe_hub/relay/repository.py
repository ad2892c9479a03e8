"""SQL of the relay context: customer app tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.relay.models import CustomerAppToken


async def add_token(session: AsyncSession, tenant_id: uuid.UUID, token_hash: str, label: str) -> CustomerAppToken:
    row = CustomerAppToken(tenant_id=tenant_id, token_hash=token_hash, label=label)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


async def revoke_token(session: AsyncSession, tenant_id: uuid.UUID, token_id: uuid.UUID, now: datetime) -> bool:
    result = await session.execute(
        update(CustomerAppToken)
        .where(CustomerAppToken.id == token_id, CustomerAppToken.tenant_id == tenant_id,
               CustomerAppToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def find_token(session: AsyncSession, token_hash: str) -> CustomerAppToken | None:
    return await session.scalar(
        select(CustomerAppToken).where(CustomerAppToken.token_hash == token_hash,
                                       CustomerAppToken.revoked_at.is_(None))
    )
