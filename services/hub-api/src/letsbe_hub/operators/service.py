"""Operator accounts: created on the hub host (``letsbe-hub operators create``), signed in with a password (argon2)
and a TOTP code, both checked in one step.

Sign-in is rate-limited twice, and every hub replica sees both: each account locks for :data:`LOCK_SECONDS` after
:data:`MAX_FAILURES` failures in a row (kept in its row), and each client address may fail
:data:`MAX_FAILURES_PER_CLIENT` times per :data:`CLIENT_WINDOW_SECONDS` (guessing across many names from one place;
counted by letsbe_hub.web.limits).
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from letsbe_hub.auth.scopes import Scope
from letsbe_hub.operators.models import Operator
from letsbe_hub.web import limits
from letsbe_platform.errors import Conflict, DomainError, ServiceUnavailable
from letsbe_platform.logging import get_logger

log = get_logger(__name__)

NAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes anything, but a megabyte "password" is only a way to burn CPU
MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
MAX_FAILURES_PER_CLIENT = 20
CLIENT_WINDOW_SECONDS = 15 * 60
ISSUER = "LetsBe Hub"

_hasher = PasswordHasher()


# Checked when the name is unknown, so an unknown name costs as long as a wrong password (no name probing by time).
# Made at first use, not at import: hashing takes a tenth of a second and more, paid by every process and CLI.
@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("not a password of anyone")


class InvalidOperator(DomainError):
    status_code, type, title = 400, "invalid-operator", "Invalid operator account"


@dataclass(frozen=True)
class Created:
    operator: Operator
    provisioning_uri: str  # otpauth://…: shown once, for the authenticator app


@dataclass(frozen=True)
class SignedIn:
    id: uuid.UUID
    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """What history records as the one who acted (orders' transitions, rollouts, approvals, alerts)."""
        return f"operator:{self.name}"


@dataclass(frozen=True)
class Refused:
    status_code: int  # 401 wrong credentials, 429 too many failures
    message: str


def _fernet(key: SecretStr | None) -> Fernet:
    if key is None:
        raise ServiceUnavailable("The hub has no LETSBE_HUB_OPERATOR_TOTP_KEY: operator accounts cannot be used.")
    return Fernet(key.get_secret_value().encode())


def validate_new(name: str, password: str) -> None:
    if not NAME.match(name):
        raise InvalidOperator("A name is 2 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter.")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidOperator(f"A password has {MIN_PASSWORD} to {MAX_PASSWORD} characters.")


async def create(
    session: AsyncSession, name: str, password: str, scopes: Iterable[Scope | str], *, key: SecretStr | None
) -> Created:
    validate_new(name, password)
    fernet = _fernet(key)
    if await session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
        raise Conflict(f"An operator named {name!r} exists.")
    secret = pyotp.random_base32()
    row = Operator(
        name=name,
        password_hash=await asyncio.to_thread(_hasher.hash, password),
        totp_secret=fernet.encrypt(secret.encode()),
        scopes=sorted({Scope(s).value for s in scopes}),
    )
    session.add(row)
    await session.flush()
    log.info("operator created", operator=name, scopes=row.scopes)
    return Created(row, pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER))


def _verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def sign_in(
    session: AsyncSession,
    name: str,
    password: str,
    code: str,
    *,
    key: SecretStr | None,
    client: str,
    client_limit: int = MAX_FAILURES_PER_CLIENT,
    now: datetime | None = None,
) -> SignedIn | Refused:
    """Check name, password and TOTP code together; a failure says only that one of them is wrong. ``client``: the
    address failures are counted for (its count is committed with the refusal)."""
    now = now or datetime.now(UTC)
    fernet = _fernet(key)
    if await limits.hits(session, _failures(client), window_seconds=CLIENT_WINDOW_SECONDS, now=now) >= client_limit:
        return Refused(429, "Too many failed sign-ins from here. Wait a few minutes.")
    password = password[:MAX_PASSWORD + 1]
    row = (
        await session.execute(select(Operator).where(Operator.name == name).with_for_update())
    ).scalar_one_or_none()
    if row is None or row.disabled_at is not None:
        await asyncio.to_thread(lambda: _verify_password(_dummy_hash(), password))
        return await _failed(session, None, client, name, now)
    if row.locked_until is not None and row.locked_until > now:
        minutes = max(1, round((row.locked_until - now).total_seconds() / 60))
        return Refused(429, f"Too many failed sign-ins for this account. Try again in {minutes} minute(s).")
    ok = await asyncio.to_thread(_verify_password, row.password_hash, password)
    step = _totp_step(fernet, row, code, now) if ok else None
    if step is None:
        return await _failed(session, row, client, name, now)
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = await asyncio.to_thread(_hasher.hash, password)
    row.totp_last_step, row.failed_sign_ins, row.locked_until, row.last_sign_in_at = step, 0, None, now
    log.info("operator signed in", operator=name)
    return SignedIn(id=row.id, name=row.name, scopes=frozenset(row.scopes))


def _totp_step(fernet: Fernet, row: Operator, code: str, now: datetime) -> int | None:
    """The time step ``code`` is valid for (this one or the one before, for clock drift), unless already used."""
    if not re.fullmatch(r"\d{6}", code or ""):
        return None
    try:
        totp = pyotp.TOTP(fernet.decrypt(row.totp_secret).decode())
    except InvalidToken:
        log.error("operator TOTP secret does not decrypt with the configured key", operator=row.name)
        return None
    current = int(now.timestamp()) // totp.interval
    for step in (current, current - 1):
        if totp.verify(code, for_time=datetime.fromtimestamp(step * totp.interval, UTC)):
            return step if row.totp_last_step is None or step > row.totp_last_step else None
    return None


def _failures(client: str) -> str:
    return f"operator-sign-in-failures:{client}"


async def _failed(session: AsyncSession, row: Operator | None, client: str, name: str, now: datetime) -> Refused:
    await limits.note(session, _failures(client), window_seconds=CLIENT_WINDOW_SECONDS, now=now)
    if row is not None:
        row.failed_sign_ins += 1
        if row.failed_sign_ins >= MAX_FAILURES:
            row.failed_sign_ins, row.locked_until = 0, now + timedelta(seconds=LOCK_SECONDS)
            log.warning("operator account locked after failed sign-ins", operator=name)
    log.info("operator sign-in refused", operator=name[:64], client=client)
    return Refused(401, "Wrong name, password or code.")


async def current(session: AsyncSession, operator_id: uuid.UUID) -> SignedIn | None:
    """The account behind a console session, as it is now (a disabled account or changed scopes count at once)."""
    row = await session.get(Operator, operator_id)
    if row is None or row.disabled_at is not None:
        return None
    return SignedIn(id=row.id, name=row.name, scopes=frozenset(row.scopes))
