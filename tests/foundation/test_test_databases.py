"""The per-test databases (root conftest.py): a used one comes back with exactly the template's content under a
name nobody knows, or is dropped when a test changed its schema; either way the old name reaches nothing."""

from __future__ import annotations

import asyncpg

from letsbe_platform.testing import eventually

CONTENT = """
    SELECT json_build_object(
        'tenants', (SELECT count(*) FROM monitor.tenants),
        'sweep_state', (SELECT json_agg(s) FROM monitor.sweep_state s),
        'pools', (SELECT count(*) FROM hub.server_pools),
        'order_stream_seq', (SELECT last_value FROM pg_sequences WHERE sequencename = 'order_stream_seq')
    )::text
"""


def url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def content(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(url(admin_url, name))
    try:
        return await conn.fetchval(CONTENT)
    finally:
        await conn.close()


async def exists(admin_url: str, name: str) -> bool:
    conn = await asyncpg.connect(admin_url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


async def use(database_pool, admin_url: str, sql: str) -> tuple[str | None, str]:  # type: ignore[no-untyped-def]
    """Take a database, run ``sql`` in it with a connection left open (as a process a test forgot would), give it
    back; the name it came back under (None: dropped) and its content when it was fresh."""
    name = await database_pool.take()
    clean = await content(admin_url, name)
    left_open = await asyncpg.connect(url(admin_url, name))
    try:
        await left_open.execute(sql)
        database_pool.give_back(name)
        await eventually(lambda: name in database_pool.reused, "the used database was handled")
        assert not await exists(admin_url, name), "the name a test used reaches nothing afterwards"
    finally:
        left_open.terminate()
    return database_pool.reused[name], clean


async def test_a_used_database_is_emptied_back_to_the_template_under_a_new_name(database_pool, pg_admin_url):
    written = """
        INSERT INTO monitor.tenants (tenant_id) VALUES (gen_random_uuid());
        UPDATE monitor.sweep_state SET ingest_stalled = true;
        DELETE FROM hub.server_pools;
        SELECT nextval('hub.order_stream_seq');
    """
    fresh, clean = await use(database_pool, pg_admin_url, written)
    assert fresh is not None, "a database whose schema is unchanged is reused"
    assert await content(pg_admin_url, fresh) == clean


async def test_a_database_whose_schema_a_test_changed_is_dropped(database_pool, pg_admin_url):
    fresh, _ = await use(database_pool, pg_admin_url, "ALTER TABLE monitor.tenants ADD COLUMN extra int")
    assert fresh is None
