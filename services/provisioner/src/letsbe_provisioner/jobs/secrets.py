"""Per-tenant secrets at rest: Fernet-encrypted with the key from settings; generated once, reused on re-runs."""

from __future__ import annotations

import uuid

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_provisioner.jobs.models import TenantSecret
from letsbe_provisioner.rendering.plan import generate_secret, secret_specs


class SecretBox:
    def __init__(self, key: str):
        self._fernet = Fernet(key.encode())

    def seal(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode())

    def open(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise RuntimeError("a tenant secret does not decrypt with LETSBE_PROVISIONER_SECRETS_KEY") from None


async def ensure_secrets(
    session: AsyncSession, box: SecretBox, tenant_id: uuid.UUID, tools: tuple[str, ...]
) -> dict[str, str]:
    """The tenant's secrets by name, creating the missing ones. Stored before any is used on a server, so a re-run
    (or a crash and resume) writes the same passwords the databases were initialised with."""
    specs = secret_specs(tools)
    existing = {
        row.name: box.open(row.ciphertext)
        for row in (await session.execute(select(TenantSecret).where(TenantSecret.tenant_id == tenant_id))).scalars()
    }
    missing = [name for name in specs if name not in existing]
    if missing:
        await session.execute(
            insert(TenantSecret)
            .values(
                [
                    {"tenant_id": tenant_id, "name": n, "ciphertext": box.seal(generate_secret(specs[n]))}
                    for n in missing
                ]
            )
            .on_conflict_do_nothing()
        )
        rows = await session.execute(select(TenantSecret).where(TenantSecret.tenant_id == tenant_id))
        existing = {row.name: box.open(row.ciphertext) for row in rows.scalars()}
    return existing


async def load_secrets(session: AsyncSession, box: SecretBox, tenant_id: uuid.UUID) -> dict[str, str]:
    rows = await session.execute(select(TenantSecret).where(TenantSecret.tenant_id == tenant_id))
    return {row.name: box.open(row.ciphertext) for row in rows.scalars()}


async def store_secrets(session: AsyncSession, box: SecretBox, tenant_id: uuid.UUID, values: dict[str, str]) -> None:
    """Set (insert or replace) secrets of the tenant: a rotation's new value, kept before any server sees it."""
    stmt = insert(TenantSecret).values(
        [{"tenant_id": tenant_id, "name": n, "ciphertext": box.seal(v)} for n, v in values.items()]
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[TenantSecret.tenant_id, TenantSecret.name],
            set_={"ciphertext": stmt.excluded.ciphertext, "created_at": func.now()},
        )
    )


async def drop_secret(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> None:
    await session.execute(delete(TenantSecret).where(TenantSecret.tenant_id == tenant_id, TenantSecret.name == name))
