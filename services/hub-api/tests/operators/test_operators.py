"""Operator accounts: made by ``letsbe-hub operators create`` on the hub host, signed in with password + TOTP."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from hub_testing.console import light_password_hashing  # noqa: F401 - fixture (autouse)
from letsbe_hub import models  # noqa: F401 - every table on the metadata
from letsbe_hub.auth.scopes import Scope
from letsbe_hub.db import Base
from letsbe_hub.operators import service
from letsbe_hub.operators.models import Operator
from letsbe_hub.operators.service import Refused, SignedIn
from letsbe_platform.db import unit_of_work

LETSBE_HUB = str(Path(sys.executable).parent / "letsbe-hub")
KEY = Fernet.generate_key().decode()
PASSWORD = "correct horse battery"


async def run_cli(*args: str, env: dict[str, str], stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        LETSBE_HUB, *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    return proc.returncode or 0, out.decode(), err.decode()


async def test_migration_matches_the_model(engine):
    def diff(conn):
        def include(obj, name, type_, reflected, compare_to):
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return table is None or table.name == "operators"

        ctx = MigrationContext.configure(
            conn, opts={"include_schemas": True, "include_object": include, "compare_type": True}
        )
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_cli_creates_an_account_and_prints_the_totp_uri_once(database_url, sessions):
    env = {**os.environ, "DATABASE_URL": database_url, "LETSBE_HUB_OPERATOR_TOTP_KEY": KEY}
    code, out, err = await run_cli(
        "operators", "create", "jane", "--scope", "orders:read", "--scope", "alerts:write",
        "--password-file", "-", env=env, stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    uri = out.strip()
    assert uri.startswith("otpauth://totp/") and "jane" in uri and "shown once" in err
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]

    async with unit_of_work(sessions) as session:
        row = (await session.execute(select(Operator).where(Operator.name == "jane"))).scalar_one()
    assert row.scopes == ["alerts:write", "orders:read"]
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    assert secret.encode() not in row.totp_secret  # kept encrypted

    async with unit_of_work(sessions) as session:
        result = await service.sign_in(
            session, "jane", PASSWORD, pyotp.TOTP(secret).now(), key=SecretStr(KEY), client="127.0.0.1",
        )
    assert isinstance(result, SignedIn) and result.actor == "operator:jane"

    # the same name again, a short password, no key: one line each, nothing created
    again = await run_cli("operators", "create", "jane", "--password-file", "-", env=env, stdin=PASSWORD)
    assert again[0] == 3 and "exists" in again[2] and "Traceback" not in again[2]
    short = await run_cli("operators", "create", "joe", "--password-file", "-", env=env, stdin="short")
    assert short[0] == 3 and "12 to" in short[2]
    keyless = {k: v for k, v in env.items() if k != "LETSBE_HUB_OPERATOR_TOTP_KEY"}
    nokey = await run_cli("operators", "create", "joe", "--password-file", "-", env=keyless, stdin=PASSWORD)
    assert nokey[0] == 3 and "LETSBE_HUB_OPERATOR_TOTP_KEY" in nokey[2]
    async with unit_of_work(sessions) as session:
        assert await session.scalar(select(Operator.id).where(Operator.name == "joe")) is None


@pytest.fixture
async def jane(sessions) -> str:
    async with unit_of_work(sessions) as session:
        created = await service.create(session, "jane", PASSWORD, [Scope.ORDERS_READ], key=SecretStr(KEY))
    return urllib.parse.parse_qs(urllib.parse.urlparse(created.provisioning_uri).query)["secret"][0]


async def attempt(sessions, password: str, code: str, *, client_limit=20, client="10.0.0.1", now=None, name="jane"):
    async with unit_of_work(sessions) as session:
        return await service.sign_in(
            session, name, password, code, key=SecretStr(KEY), client=client, client_limit=client_limit, now=now
        )


async def test_sign_in_needs_the_password_and_a_fresh_code(sessions, jane):
    totp = pyotp.TOTP(jane)
    now = datetime.now(UTC)
    code = totp.at(now)
    for password, given in [("wrong password!!", code), (PASSWORD, "000000" if code != "000000" else "111111"),
                            (PASSWORD, ""), (PASSWORD, "12345x")]:
        refused = await attempt(sessions, password, given, now=now)
        assert refused == Refused(401, "Wrong name, password or code.")
    assert await attempt(sessions, PASSWORD, code, name="nobody") == Refused(401, "Wrong name, password or code.")

    assert isinstance(await attempt(sessions, PASSWORD, code, now=now), SignedIn)
    # the same code a second time (someone who watched it typed) is refused
    assert (await attempt(sessions, PASSWORD, code, now=now)).status_code == 401
    # the next step's code works; the one before a drifted clock's too, but not one already passed
    later = now + timedelta(seconds=30)
    assert isinstance(await attempt(sessions, PASSWORD, totp.at(later), now=later), SignedIn)


async def test_five_failures_lock_the_account_and_many_lock_the_client(sessions, jane):
    now = datetime.now(UTC)
    for _ in range(service.MAX_FAILURES):
        assert (await attempt(sessions, "wrong password!!", "123456", now=now)).status_code == 401
    locked = await attempt(sessions, PASSWORD, pyotp.TOTP(jane).at(now), now=now)
    assert locked.status_code == 429 and "15 minute" in locked.message
    after = now + timedelta(seconds=service.LOCK_SECONDS + 1)
    assert isinstance(await attempt(sessions, PASSWORD, pyotp.TOTP(jane).at(after), now=after), SignedIn)

    # Guessing across names from one address: its failures are counted in Postgres, so every replica holds it back.
    guesser = {"client": "10.0.0.7", "client_limit": 3}
    for i in range(3):
        assert (await attempt(sessions, PASSWORD, "000000", name=f"guess{i}", **guesser)).status_code == 401
    blocked = await attempt(sessions, PASSWORD, pyotp.TOTP(jane).now(), **guesser)
    assert blocked.status_code == 429
    # another address is not held back by this one
    assert (await attempt(sessions, PASSWORD, "000000", client="10.0.0.2", client_limit=3)).status_code == 401
