"""The engine's pool: a pooled connection that Postgres has closed (a restart, a terminated backend) is never handed
to a transaction; the next unit of work gets a fresh one and succeeds. A DATABASE_URL as libpq and managed Postgres
services write it (``?sslmode=...``, ``sslrootcert``, a client certificate) works for the engine, asyncpg and the
command-line tools alike."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from letsbe_fakes.tls_endpoint import self_signed
from letsbe_platform.db import make_engine, make_session_factory, plain_url, unit_of_work
from letsbe_platform.devstack import PG_USER, Postgres
from letsbe_platform.migrations import upgrade_async
from letsbe_platform.testing import eventually, free_port


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


OVER_TLS = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
# Debian's PostgreSQL server (scripts/ensure-system-tools.sh): the pgserver wheel's is built without TLS.
DEBIAN_POSTGRES = Path("/usr/lib/postgresql/15/bin")


async def test_a_url_with_libpqs_certificate_parameters_connects_over_verified_tls(tmp_path: Path):
    """A managed Postgres's URL: ``sslmode=verify-full`` with its CA (``sslrootcert``) and a client certificate
    (``sslcert``, ``sslkey``). Here a Postgres of its own with TLS on, which lets in only clients with a certificate
    it trusts; the engine, asyncpg and psql connect with the URL alone, a wrong CA is refused, and so is a client
    without its certificate."""
    server_cert, server_key = self_signed("127.0.0.1", _in_a_year())
    client_cert, client_key = self_signed(PG_USER, _in_a_year())
    pg = Postgres(tmp_path / "pg", free_port(), fast=True, bin_dir=DEBIAN_POSTGRES)
    await asyncio.to_thread(pg.start)
    try:
        pgdata = pg.data_dir / "pgdata"
        for name, data in (("server.crt", server_cert), ("server.key", server_key), ("clients.crt", client_cert)):
            (pgdata / name).write_bytes(data)
            (pgdata / name).chmod(0o600)
            shutil.chown(pgdata / name, *_owner_of(pgdata))
        (pgdata / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust clientcert=verify-ca\n")
        admin = await asyncpg.connect(pg.url, ssl=False)
        try:
            for setting, value in (("ssl_cert_file", "server.crt"), ("ssl_key_file", "server.key"),
                                   ("ssl_ca_file", "clients.crt"), ("ssl", "on")):  # fmt: skip
                await admin.execute(f"ALTER SYSTEM SET {setting} = '{value}'")
            await admin.execute("SELECT pg_reload_conf()")

            async def reloaded() -> bool:  # the postmaster reloads first, then tells the backends (this one too)
                return await admin.fetchval("SHOW ssl") == "on"

            await eventually(reloaded, "Postgres to reload with TLS on")
        finally:
            await admin.close()
        files = {}
        for name, data in (("ca.crt", server_cert), ("client.crt", client_cert), ("client.key", client_key),
                           ("other-ca.crt", self_signed("127.0.0.1", _in_a_year())[0])):  # fmt: skip
            files[name] = tmp_path / name
            files[name].write_bytes(data)
            files[name].chmod(0o600)
        client = f"&sslcert={files['client.crt']}&sslkey={files['client.key']}"
        url = f"{pg.url}?sslmode=verify-full&sslrootcert={files['ca.crt']}{client}"

        async def over_tls(u: str, query: str = OVER_TLS) -> Any:
            engine = make_engine(u, pool_size=1, application_name="test-tls")
            try:
                async with unit_of_work(make_session_factory(engine)) as s:
                    return (await s.execute(text(query))).scalar_one()
            finally:
                await engine.dispose()

        assert await over_tls(url)
        await upgrade_async(url, ["dns"])  # the migrations connect with the URL too
        assert await over_tls(url, "SELECT count(*) FROM dns.alembic_version") == 1
        conn = await asyncpg.connect(plain_url(url))
        await conn.close()
        psql = await asyncio.create_subprocess_exec(
            str(pg.bins / "psql"), plain_url(url), "-tAc", OVER_TLS,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={},
        )  # fmt: skip
        out, err = await psql.communicate()
        assert out.strip() == b"t", err
        with pytest.raises(ConnectionError, match="certificate verify failed"):
            await over_tls(url.replace(str(files["ca.crt"]), str(files["other-ca.crt"])))
        with pytest.raises(DBAPIError, match="requires a valid client certificate"):
            await over_tls(url.replace(client, ""))  # Postgres wants the client's certificate
    finally:
        await asyncio.to_thread(pg.stop)


def _in_a_year() -> datetime:
    return datetime.now(UTC) + timedelta(days=365)


def _owner_of(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid
