"""Pytest fixtures for real Postgres and NATS (never mocks), for every test in the repository.

Here at the root, not in ``letsbe_platform``, so that no installed package imports pytest.

``make test`` exports DATABASE_URL / NATS_URL from ``letsbe-devstack run``; a bare ``pytest`` starts its own
throwaway servers instead. Every test gets its own database (a copy of a template migrated once per session, emptied
again after each test) and its own bus namespace (stream + subjects), so tests never see each other's rows or
messages.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import gc
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from _pytest.nodeid import NodeId
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from letsbe_platform import devstack, migrations
from letsbe_platform.bus import Bus
from letsbe_platform.db import make_engine, make_session_factory, plain_url
from letsbe_platform.testing.processes import ServiceProcess

TEMPLATE_DB = "letsbe_template"


def _parse_without_reentry(parse):  # type: ignore[no-untyped-def]
    """``ast.parse`` that no garbage-collector finalizer and no other thread can enter while it runs.

    CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state. When a collection during one
    parse runs a finalizer that parses too (an unretrieved asyncio task's ``__del__`` logs its traceback, and 3.11's
    traceback module parses source lines for its ``^^^`` markers), the outer parse ends with ``SystemError: AST
    constructor recursion depth mismatch``. pytest parses source to show a failure, so one failed test then crashed
    the whole run (an xdist worker, or the one process) instead of being reported.
    """
    lock = threading.RLock()

    @functools.wraps(parse)
    def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
        with lock:
            collecting = gc.isenabled()
            gc.disable()
            try:
                return parse(*args, **kwargs)
            finally:
                if collecting:
                    gc.enable()

    return guarded


ast.parse = _parse_without_reentry(ast.parse)
gc.disable()  # until the tests are collected: see pytest_collection_finish


# Fixtures that start a whole stack (the control plane, `make run`, Chromium, OpenClaw's gateway): a module using
# one takes tens of seconds whatever its number of tests.
STACK_FIXTURES = frozenset({"plane", "stack", "cluster", "embedded", "browser", "openclaw", "gateway"})


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n N``; ``--dist loadgroup --no-loadscope-reorder`` are in the pytest options): a
    module's tests stay on one worker, so a module fixture starts once. The groups go out longest first, so that the
    last ones are short and both workers finish together: the tests that boot the Debian test VPS (one group: it
    mostly waits on the VPS, so the other worker runs everything else beside it), then the modules that start a
    whole stack, then the others by their number of tests (what xdist itself would order by)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    vps = {id(i) for i in items if "test_vps" in getattr(i, "fixturenames", ()) or i.get_closest_marker("vps")}
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        group = "vps" if id(item) in vps else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
        _name_group(item, group)
        groups.setdefault(group, []).append(item)

    def longest_first(group: str) -> tuple[bool, bool, int]:
        members = groups[group]
        stack = any(STACK_FIXTURES & set(getattr(i, "fixturenames", ())) for i in members)
        return group != "vps", not stack, -len(members)

    items[:] = [item for group in sorted(groups, key=longest_first) for item in groups[group]]  # a stable sort


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.pluginmanager.hasplugin("dsession"):  # pytest-xdist's controller: it collects no tests
        gc.enable()


def pytest_collection_finish(session: pytest.Session) -> None:
    """The collected tests, the test modules and their libraries live as long as the run: built with the collector
    off (from this file's import; a test process's collection took 11–13 s of CPU with it, 7–9 s without), then
    moved out of its sight (``gc.freeze``), and with the youngest and oldest generations collected a tenth as often as
    CPython's defaults (700, 10, 10), a test process spends about 2 s less of every 40 s of CPU collecting garbage
    (5.2 s → 3.0 s measured over 131 hub tests)."""
    gc.collect()  # what collecting left behind in cycles, once
    gc.freeze()
    gc.set_threshold(7000, 20, 100)
    gc.enable()


def _name_group(item: pytest.Item, group: str) -> None:
    """What pytest-xdist 3's loadgroup does itself on older pytest: the group ends the test's id (``…@group``), the
    one thing its scheduler reads. Since pytest 9.2 an item's id is ``item._id`` (xdist still sets the old
    ``_nodeid``, which nothing reads any more): without this every test was a group of its own, a module's tests
    ran on both workers (each starting the module's stack) and so did the VPS tests."""
    if not item.nodeid.endswith("@" + group):
        item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, str]]:
    """URLs of the real servers for this session: from the environment, or started here."""
    if os.environ.get("DATABASE_URL") and os.environ.get("NATS_URL"):
        yield {
            "database_url": os.environ["DATABASE_URL"],
            "nats_url": os.environ["NATS_URL"],
            "admin_url": os.environ.get("LETSBE_PG_ADMIN_URL") or _admin(os.environ["DATABASE_URL"]),
        }
        return
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="letsbe-pytest-"))
        stack.callback(shutil.rmtree, root, True)
        s = stack.enter_context(devstack.running(root, fast=True))
        yield {"database_url": s.postgres.url, "nats_url": s.nats.url, "admin_url": s.postgres.admin_url}


def _admin(url: str) -> str:
    return plain_url(url).rsplit("/", 1)[0] + "/postgres"


def _with_db(url: str, name: str) -> str:
    return plain_url(url).rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def pg_admin_url(servers: dict[str, str]) -> str:
    """A superuser URL to the ``postgres`` database of the session's server."""
    return servers["admin_url"]


@pytest.fixture(scope="session")
def pg_bin_dir() -> Path:
    """pg_dump, pg_restore, psql … of the same Postgres 16 the tests run against."""
    return devstack.pg_bin_dir()


@pytest.fixture(scope="session")
def nats_url(servers: dict[str, str]) -> str:
    return servers["nats_url"]


# Every table of the migrated schemas, the foreign keys between them, and a fingerprint of the catalog: a test that
# created, dropped or altered anything changes it, and its database is dropped, not reused.
_TABLES = """
    SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1
"""
_REFERENCES = """
    SELECT format('%I.%I', fn.nspname, f.relname), format('%I.%I', rn.nspname, r.relname) FROM pg_constraint k
    JOIN pg_class r ON r.oid = k.conrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
    JOIN pg_class f ON f.oid = k.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace WHERE k.contype = 'f'
"""
_CATALOG = """
    SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
        SELECT concat_ws(' ', c.oid, c.relname, c.relkind::text, c.relnatts) AS x FROM pg_class c
        UNION ALL SELECT 'attribute ' || count(*) FROM pg_attribute
        UNION ALL SELECT 'proc ' || count(*) || ' ' || max(oid) FROM pg_proc
        UNION ALL SELECT 'constraint ' || count(*) FROM pg_constraint
        UNION ALL SELECT 'trigger ' || count(*) FROM pg_trigger
        UNION ALL SELECT 'enum ' || count(*) FROM pg_enum
        UNION ALL SELECT 'namespace ' || count(*) || ' ' || max(oid) FROM pg_namespace
        UNION ALL SELECT 'settings ' || count(*) FROM pg_db_role_setting
            WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    ) catalog
"""
_SEQUENCES = (
    "SELECT setval(format('%I.%I', schemaname, sequencename), start_value, false) FROM pg_sequences"
    " WHERE last_value IS NOT NULL"
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Template:
    """What a database cloned from the template holds before a test touches it: no rows but the ones the migrations
    seed (kept here as JSON), every sequence at its start."""

    def __init__(self, tables: list[str], seeds: dict[str, str], references: list[tuple[str, str]], catalog: str):
        self.seeds, self.catalog = seeds, catalog
        self.referenced_by: dict[str, set[str]] = {}
        for table, referencing in references:
            self.referenced_by.setdefault(table, set()).add(referencing)
        # One round trip: the catalog's fingerprint and every table that differs from the template (any row where
        # none was, other rows where the migrations seeded some).
        changed = " UNION ALL ".join(
            f"SELECT '{t}' WHERE "  # noqa: S608 - names read from the catalog
            + (
                f"(SELECT json_agg(r ORDER BY r::text)::text FROM {t} r) IS DISTINCT FROM {_literal(seeds[t])}"  # noqa: S608
                if t in seeds
                else f"EXISTS (SELECT FROM {t})"
            )
            for t in tables
        )
        self.check = f"SELECT ({_CATALOG}) AS catalog, ARRAY({changed}) AS changed"

    @classmethod
    async def read(cls, conn: asyncpg.Connection) -> _Template:
        tables = [r[0] for r in await conn.fetch(_TABLES)]
        seeds = {}
        for t in tables:
            rows = await conn.fetchval(f"SELECT json_agg(r ORDER BY r::text)::text FROM {t} r")  # noqa: S608
            if rows is not None:
                seeds[t] = rows
        references = [(r[0], r[1]) for r in await conn.fetch(_REFERENCES)]
        return cls(tables, seeds, references, await conn.fetchval(_CATALOG))

    async def reset(self, conn: asyncpg.Connection) -> bool:
        """Bring a used copy back to the template's content; False when its schema changed (drop it instead)."""
        found = await conn.fetchrow(self.check)
        if found["catalog"] != self.catalog:
            return False
        emptied = self._with_referencing(set(found["changed"]))
        script = [f"TRUNCATE {', '.join(sorted(emptied))}"] if emptied else []
        script += [
            f"INSERT INTO {t} OVERRIDING SYSTEM VALUE SELECT * FROM json_populate_recordset(NULL::{t}, "  # noqa: S608
            f"{_literal(self.seeds[t])})"
            for t in sorted(emptied & self.seeds.keys())
        ]
        await conn.execute(";\n".join([*script, _SEQUENCES]))  # one round trip, one transaction
        return True

    def _with_referencing(self, tables: set[str]) -> set[str]:
        """``tables`` and every table whose foreign keys reach them: what TRUNCATE empties (or refuses without)."""
        todo, out = list(tables), set()
        while todo:
            t = todo.pop()
            if t not in out:
                out.add(t)
                todo += self.referenced_by.get(t, ())
        return out


class DatabasePool:
    """Databases with the template's content, made ahead of the tests and reset behind them by one background task.

    Each test gets a database under a name nobody used before. A used one is renamed (which fails while anything
    is still connected), then emptied back to the template's content: only the tables the test wrote to are
    truncated, so that costs a few milliseconds where a clone costs about 150 ms of Postgres work and a drop 25 ms;
    under the new name no process a test left behind can reach it. A database whose schema a test changed (a
    migration test), or that something still held, is dropped and replaced by a fresh clone.
    """

    READY = 2  # databases kept ready: enough to cover a test's set-up, few enough to waste nothing at the end

    def __init__(self, admin_url: str, template: str, content: _Template):
        self.admin_url, self.template, self.content = admin_url, template, content
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._used: list[str] = []
        self._to_drop: list[str] = []
        self.reused: dict[str, str | None] = {}  # a used name → the name it came back under, None if dropped
        self._wake = asyncio.Event()
        self._closing = False
        self._failure: BaseException | None = None
        self._task = asyncio.create_task(self._run(), name="test-database-pool")

    async def take(self) -> str:
        self._wake.set()
        while True:
            if self._failure is not None:
                raise RuntimeError("could not prepare a test database") from self._failure
            try:
                return await asyncio.wait_for(self._ready.get(), timeout=1)
            except TimeoutError:
                continue

    def give_back(self, name: str) -> None:
        self._used.append(name)
        self._wake.set()

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            while True:
                self._wake.clear()
                if self._used and not self._closing:
                    name = self._used.pop(0)
                    fresh = self.reused[name] = await self._reuse(conn, name)
                    if fresh is None:
                        self._to_drop.append(name)
                    else:
                        self._ready.put_nowait(fresh)
                elif self._used or self._to_drop:
                    name = (self._used or self._to_drop).pop(0)
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                elif not self._closing and self._ready.qsize() < self.READY:
                    name = _database_name()
                    await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
                    self._ready.put_nowait(name)
                elif self._closing:
                    return
                else:
                    await self._wake.wait()
        except BaseException as e:
            self._failure = e
            raise
        finally:
            await conn.close()

    async def _reuse(self, admin: asyncpg.Connection, name: str) -> str | None:
        """The used database ``name`` reset under a new name, or None when it must be dropped."""
        fresh = _database_name()
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        try:
            await admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{fresh}"')
        except asyncpg.ObjectInUseError:  # a terminated session not gone yet, or one that came back
            return None
        conn = await asyncpg.connect(_with_db(self.admin_url, fresh))
        try:
            if await self.content.reset(conn):
                return fresh
        except asyncpg.PostgresError:  # whatever a test left that a reset cannot undo: a clone replaces it
            pass
        finally:
            await conn.close()
        self._to_drop.append(fresh)
        return None

    async def close(self) -> None:
        while not self._ready.empty():
            self._to_drop.append(self._ready.get_nowait())
        self._closing = True
        self._wake.set()
        await self._task


def _database_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


def _template_name() -> str:
    # One template per pytest-xdist worker: CREATE DATABASE … TEMPLATE refuses while another session uses it.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{TEMPLATE_DB}_{worker}" if worker else TEMPLATE_DB


@pytest_asyncio.fixture(scope="session")
async def template_database(servers: dict[str, str]) -> str:
    """A database with every service's migrations applied; each test's database is a copy of it."""
    name = _template_name()
    conn = await asyncpg.connect(servers["admin_url"])
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = _with_db(servers["admin_url"], name)
    await migrations.upgrade_async(url)
    return url


@pytest_asyncio.fixture(scope="session")
async def database_pool(servers: dict[str, str], template_database: str) -> AsyncIterator[DatabasePool]:
    conn = await asyncpg.connect(template_database)
    try:
        content = await _Template.read(conn)
    finally:
        await conn.close()
    pool = DatabasePool(servers["admin_url"], template_database.rsplit("/", 1)[1], content)
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def database_url(servers: dict[str, str], database_pool: DatabasePool) -> AsyncIterator[str]:
    """A fully migrated database with nothing in it but what the migrations seed, for this test only (reset or
    dropped afterwards, and never again reachable under this name)."""
    name = await database_pool.take()
    yield _with_db(servers["admin_url"], name)
    database_pool.give_back(name)


@pytest_asyncio.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=5, max_overflow=20)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_session_factory(engine)


@pytest.fixture
def bus_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def bus(nats_url: str, bus_namespace: str) -> AsyncIterator[Bus]:
    """A connected bus on this test's own stream (deleted afterwards)."""
    b = await Bus.connect(nats_url, namespace=bus_namespace, name="pytest")
    yield b
    try:
        await asyncio.wait_for(b.delete_stream(), timeout=5)
    finally:
        await b.close()


@pytest.fixture
def service_env(database_url: str, nats_url: str, bus_namespace: str) -> dict[str, str]:
    """Environment for a service started as a real process against this test's database and bus."""
    return {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "LETSBE_BUS_NAMESPACE": bus_namespace,
    }


@pytest_asyncio.fixture
async def processes() -> AsyncIterator[list[ServiceProcess]]:
    """Collects service processes a test starts; all are killed at the end whatever happened."""
    started: list[ServiceProcess] = []
    yield started
    for p in started:
        p.kill()
