"""Async SQLAlchemy plumbing: engines, sessions, the declarative base and the FastAPI session dependency.

One session per unit of work (a request or a message); only the boundary commits (CONVENTIONS §2).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData, event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.util import await_

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata(schema: str) -> MetaData:
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def make_base(schema: str) -> type[DeclarativeBase]:
    """A declarative base bound to one service's schema."""

    class Base(DeclarativeBase):
        metadata = make_metadata(schema)

    return Base


def async_url(url: str) -> str:
    """Accept the usual ``postgresql://`` form (what ops paste) and name asyncpg as SQLAlchemy's driver. The engine
    connects with the libpq form (:func:`make_engine`), so every parameter libpq users write is honoured."""
    return "postgresql+asyncpg://" + _without_scheme(url)


def plain_url(url: str) -> str:
    """The libpq form, for asyncpg.connect and command-line tools (asyncpg's ``ssl`` named libpq's ``sslmode``)."""
    return "postgresql://" + _renamed(_without_scheme(url), "ssl", "sslmode")


def _without_scheme(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")


def _renamed(rest: str, name: str, to: str) -> str:
    """``rest`` with its query parameter ``name`` called ``to``."""
    base, _, query = rest.partition("?")
    if not query:
        return rest
    return base + "?" + re.sub(rf"(^|&){name}=", rf"\g<1>{to}=", query)


class PostgresUnreachable(ConnectionError):
    """Connecting to Postgres failed at the socket (down, restarting, not yet listening). asyncpg raises a bare
    ``OSError`` there, which says nothing about what was being reached; this one does."""


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, application_name: str = "letsbe"
) -> AsyncEngine:
    """An engine whose connections asyncpg opens from the libpq form of ``url``: a managed Postgres's
    ``?sslmode=verify-full&sslrootcert=...`` (and ``sslcert``, ``sslkey``, ``sslcrl``, ``sslpassword``, ``passfile``,
    ``target_session_attrs``, several hosts) means what it means to libpq. SQLAlchemy would instead pass each query
    parameter to ``asyncpg.connect`` as a keyword argument, which has none of those names."""
    dsn = plain_url(url)

    async def connect() -> asyncpg.Connection:
        try:
            return await asyncpg.connect(dsn, server_settings={"application_name": application_name})
        except OSError as exc:
            raise PostgresUnreachable(f"Postgres is unreachable: {exc}") from exc

    engine = create_async_engine(
        async_url(url), async_creator=connect, pool_size=pool_size, max_overflow=max_overflow
    )

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(dbapi_connection, connection_record, connection_proxy):  # type: ignore[no-untyped-def]
        # A pooled connection may be dead (Postgres restarted, its backend terminated): ask before the transaction
        # uses it, and on failure start over with fresh connections, as pool_pre_ping does. In one round trip: the
        # pre-ping takes three on asyncpg (BEGIN, a query, ROLLBACK, for pgbouncer's transaction mode, which we do not
        # use) and is the first thing of every transaction.
        try:
            await_(connection_record.driver_connection.execute("SELECT 1"))  # simple protocol: one round trip
        except Exception as exc:
            raise InvalidatePoolError(f"pooled connection lost: {exc!r}") from exc

    return engine


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commits when the block ends normally, rolls back on any exception."""
    async with factory() as session, session.begin():
        yield session


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions = request.app.state.runtime.sessions
    async with sessions() as session, session.begin():
        yield session  # commits here, before the response is sent (scope="function"); rolls back on error


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
