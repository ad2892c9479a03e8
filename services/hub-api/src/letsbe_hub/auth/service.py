"""Admin/ops API tokens: random, prefixed so they are recognisable in a leak scan, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.auth.models import ApiToken
from letsbe_hub.auth.scopes import Scope
from letsbe_platform.pagination import Keyset

TOKEN_PREFIX = "lbh_"  # noqa: S105 - a prefix, not a secret
LAST_USED_RESOLUTION = timedelta(minutes=5)  # how exactly a token's last_used_at is kept


def hash_token(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    token_id: uuid.UUID
    name: str
    scopes: frozenset[str]


async def create_token(session: AsyncSession, name: str, scopes: Iterable[Scope | str]) -> tuple[ApiToken, str]:
    """Returns the row and the plaintext; the plaintext is never stored nor retrievable again."""
    wanted = sorted({Scope(s).value for s in scopes})
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=hash_token(plaintext), scopes=wanted)
    session.add(row)
    await session.flush()
    return row, plaintext


async def ensure_token(session: AsyncSession, name: str, plaintext: str, scopes: Iterable[Scope | str]) -> None:
    """Idempotent bootstrap from configuration: the same plaintext maps to the same single row."""
    # INSERT … ON CONFLICT: replicas starting at the same moment all succeed, and one row is written.
    values = {"id": uuid.uuid4(), "name": name, "token_hash": hash_token(plaintext)}
    stmt = insert(ApiToken).values(**values, scopes=sorted({Scope(s).value for s in scopes}))
    await session.execute(stmt.on_conflict_do_nothing(index_elements=[ApiToken.token_hash]))


async def authenticate(session: AsyncSession, plaintext: str) -> Principal | None:
    row = (
        await session.execute(
            select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext), ApiToken.revoked_at.is_(None))
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    now = datetime.now(UTC)
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_RESOLUTION:
        # Coarse on purpose: one write per token per few minutes, not one per request.
        await session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return Principal(token_id=row.id, name=row.name, scopes=frozenset(row.scopes))


KEYSET = Keyset("tokens", ApiToken.created_at, ApiToken.id)


async def list_tokens(
    session: AsyncSession, *, revoked: bool | None, limit: int, cursor: str | None
) -> tuple[list[ApiToken], str | None]:
    """Newest first; ``revoked`` True/False keeps only revoked/active ones."""
    stmt = select(ApiToken)
    if revoked is not None:
        stmt = stmt.where(ApiToken.revoked_at.is_not(None) if revoked else ApiToken.revoked_at.is_(None))
    return await KEYSET.fetch(session, stmt, limit=limit, cursor=cursor)


async def get_token(session: AsyncSession, token_id: uuid.UUID) -> ApiToken | None:
    return await session.get(ApiToken, token_id)


async def revoke_token(session: AsyncSession, token_id: uuid.UUID) -> bool:
    result = await session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiToken.id)
    )
    return result.first() is not None


async def has_active_admin_token(session: AsyncSession) -> bool:
    """Whether some unrevoked token can already mint others (``letsbe-hub bootstrap-token`` then refuses)."""
    stmt = select(func.count()).where(ApiToken.revoked_at.is_(None), ApiToken.scopes.any(Scope.TOKENS_ADMIN.value))
    return bool(await session.scalar(stmt))
