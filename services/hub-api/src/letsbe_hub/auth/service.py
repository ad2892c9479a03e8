"""Admin/ops API tokens: random, prefixed so they are recognisable in a leak scan, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.auth.models import ApiToken
from letsbe_hub.auth.scopes import Scope

TOKEN_PREFIX = "lbh_"  # noqa: S105 - a prefix, not a secret


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
    digest = hash_token(plaintext)
    if (await session.execute(select(ApiToken.id).where(ApiToken.token_hash == digest))).first() is None:
        session.add(ApiToken(name=name, token_hash=digest, scopes=sorted({Scope(s).value for s in scopes})))


async def authenticate(session: AsyncSession, plaintext: str) -> Principal | None:
    row = (
        await session.execute(
            select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext), ApiToken.revoked_at.is_(None))
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return Principal(token_id=row.id, name=row.name, scopes=frozenset(row.scopes))


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
