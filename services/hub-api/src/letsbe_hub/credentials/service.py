"""The tools' admin logins: stored encrypted when the provisioner hands them over, shown to the customer once.

The link (``/api/v1/public/credentials/<token>``) is minted when the welcome email is sent; only the token's hash
is stored.
Revealing drops the ciphertext in the same transaction, so a second look (or a leaked, replayed link) gets 404."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.config import HubSettings
from letsbe_hub.credentials.models import CredentialReveal as R
from letsbe_hub.credentials.schemas import CredentialsIn, ToolCredential
from letsbe_platform.errors import NotFound, ServiceUnavailable

TOKEN_BYTES = 32  # 256 bits: the link is the only authentication


def _fernet(settings: HubSettings) -> Fernet:
    if settings.credentials_key is None:
        raise ServiceUnavailable("The hub has no LETSBE_HUB_CREDENTIALS_KEY: it cannot keep tool credentials.")
    return Fernet(settings.credentials_key.get_secret_value().encode())


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def store(session: AsyncSession, order_id: uuid.UUID, body: CredentialsIn, settings: HubSettings) -> None:
    """Keep them (encrypted) until revealed; once revealed, a re-sent copy changes nothing."""
    sealed = _fernet(settings).encrypt(json.dumps(body.model_dump(mode="json")["credentials"]).encode())
    stmt = insert(R).values(order_id=order_id, ciphertext=sealed)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[R.order_id],
            set_={"ciphertext": stmt.excluded.ciphertext, "updated_at": func.now()},
            where=R.revealed_at.is_(None),
        )
    )


async def mint_link(session: AsyncSession, order_id: uuid.UUID, settings: HubSettings) -> str | None:
    """A fresh one-time link for this order's credentials (any earlier link stops working), or None if there is
    nothing to reveal."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires = datetime.now(UTC) + timedelta(seconds=settings.credential_link_ttl_seconds)
    done = await session.execute(
        update(R)
        .where(R.order_id == order_id, R.revealed_at.is_(None), R.ciphertext.is_not(None))
        .values(token_hash=token_hash(token), expires_at=expires, updated_at=func.now())
        .returning(R.order_id)
    )
    if done.scalar_one_or_none() is None:
        return None
    return f"{settings.public_url.rstrip('/')}/api/v1/public/credentials/{token}"


async def _live(session: AsyncSession, token: str, *, lock: bool) -> R:
    stmt = select(R).where(
        R.token_hash == token_hash(token), R.revealed_at.is_(None), R.ciphertext.is_not(None), R.expires_at > func.now()
    )
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound("This link is unknown, expired or already used.")
    return row


async def check(session: AsyncSession, token: str) -> None:
    await _live(session, token, lock=False)


async def waiting(session: AsyncSession, order_id: uuid.UUID) -> bool:
    """Whether this order's logins are still waiting to be seen."""
    stmt = select(R.order_id).where(R.order_id == order_id, R.revealed_at.is_(None), R.ciphertext.is_not(None))
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def reveal_for_order(session: AsyncSession, order_id: uuid.UUID, settings: HubSettings) -> list[ToolCredential]:
    """The signed-in customer's reveal (the portal): the same once-only rule as the link, keyed by their order."""
    stmt = select(R).where(R.order_id == order_id, R.revealed_at.is_(None), R.ciphertext.is_not(None))
    row = (await session.execute(stmt.with_for_update())).scalar_one_or_none()
    if row is None:
        raise NotFound("These logins were already shown once, or are not ready yet.")
    return _open(row, settings)


def _open(row: R, settings: HubSettings) -> list[ToolCredential]:
    """Decrypt and drop the ciphertext in this transaction: whoever commits first is the only one to see them."""
    assert row.ciphertext is not None
    creds = json.loads(_fernet(settings).decrypt(row.ciphertext))
    row.ciphertext, row.revealed_at = None, datetime.now(UTC)
    return [ToolCredential.model_validate(c) for c in creds]


async def reveal(session: AsyncSession, token: str, settings: HubSettings) -> tuple[uuid.UUID, list[ToolCredential]]:
    """(order id, logins), once: the row is locked, then its ciphertext dropped in this transaction."""
    row = await _live(session, token, lock=True)
    return row.order_id, _open(row, settings)
