"""The engine's pool: a pooled connection that Postgres has closed (a restart, a terminated backend) is never handed
to a transaction; the next unit of work gets a fresh one and succeeds. A DATABASE_URL as libpq and managed Postgres
services write it (``?sslmode=...``) works for the engine, asyncpg and the command-line tools alike."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from letsbe_platform.db import make_engine, make_session_factory, plain_url, unit_of_work
from letsbe_platform.testing import eventually


async def _backends(database_url: str, app: str) -> list[int]:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


async def test_a_transaction_after_postgres_closed_every_pooled_connection_succeeds(database_url: str) -> None:
    engine = make_engine(database_url, pool_size=3, application_name="test-pool-lost")
    sessions = make_session_factory(engine)

    async def pid() -> int:
        async with unit_of_work(sessions) as s:
            return (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()

    try:
        async with unit_of_work(sessions) as a, unit_of_work(sessions) as b:  # two connections in the pool
            first = {(await a.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
                     (await b.execute(text("SELECT pg_backend_pid()"))).scalar_one()}  # fmt: skip
        assert sorted(first) == sorted(await _backends(database_url, "test-pool-lost"))
        conn = await asyncpg.connect(plain_url(database_url))
        try:  # as a Postgres restart does to them
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                               "test-pool-lost")  # fmt: skip
        finally:
            await conn.close()
        await eventually(lambda: _none(database_url), "the pooled connections' backends gone")

        again = [await pid(), await pid()]  # neither sees the dead connections
        assert not set(again) & first
    finally:
        await engine.dispose()


async def _none(database_url: str) -> bool:
    return await _backends(database_url, "test-pool-lost") == []


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
async def test_a_url_with_libpqs_sslmode_is_honoured_by_the_engine_and_by_asyncpg(database_url: str, scheme: str):
    # The test's Postgres listens without TLS: sslmode=disable connects; require is refused for the lack of TLS (not
    # for a parameter the driver does not know), so the mode did reach the connection.
    base = scheme + "://" + plain_url(database_url).removeprefix("postgresql://")
    for mode, works in (("disable", True), ("prefer", True), ("require", False)):
        engine = make_engine(f"{base}?sslmode={mode}", pool_size=1, application_name="test-sslmode")
        try:
            if works:
                async with unit_of_work(make_session_factory(engine)) as s:
                    assert (await s.execute(text("SELECT 1"))).scalar_one() == 1
            else:
                with pytest.raises(ConnectionError, match="SSL"):
                    async with engine.connect():
                        pass
        finally:
            await engine.dispose()
        assert plain_url(f"{base}?sslmode={mode}").endswith(f"?sslmode={mode}")
    conn = await asyncpg.connect(plain_url(f"{base}?sslmode=disable"))
    await conn.close()
