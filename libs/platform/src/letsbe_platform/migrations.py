"""Alembic, one tree per service, each in its own schema with its own version table.

Services declare their tree with an entry point in the ``letsbe.migrations`` group (name: the schema, value: the
package), so ``letsbe-migrate`` and the test fixtures find every tree without a list to keep in sync.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

# SQLAlchemy and Alembic are imported where used: `letsbe-migrate --help` (and `letsbe-run`, which imports this
# module) start at once.
if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config
    from sqlalchemy import MetaData

GROUP = "letsbe.migrations"


def trees() -> dict[str, Path]:
    """schema -> migrations folder, for every installed service that owns a schema."""
    found: dict[str, Path] = {}
    for ep in entry_points(group=GROUP):
        module = import_module(ep.value)
        pkg_dir = Path(module.__file__).resolve().parent  # type: ignore[arg-type]
        for candidate in (pkg_dir / "migrations", pkg_dir.parent.parent / "migrations"):
            if (candidate / "env.py").exists():
                found[ep.name] = candidate
                break
        else:
            raise RuntimeError(f"no migrations folder for {ep.value}")
    return dict(sorted(found.items()))


def alembic_config(schema: str, database_url: str) -> Config:
    from alembic.config import Config

    from letsbe_platform.db import async_url

    cfg = Config()
    cfg.set_main_option("script_location", str(trees()[schema]))
    cfg.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    cfg.set_main_option("version_path_separator", "os")
    cfg.attributes["schema"] = schema
    return cfg


def upgrade(database_url: str, schemas: list[str] | None = None, revision: str = "heads") -> None:
    from alembic import command

    for schema in schemas or list(trees()):
        command.upgrade(alembic_config(schema, database_url), revision)


async def upgrade_async(database_url: str, schemas: list[str] | None = None) -> None:
    await asyncio.to_thread(upgrade, database_url, schemas)


# --- used by every service's env.py ----------------------------------------------------------------------------


def run_env(schema: str, target_metadata: MetaData) -> None:
    """The body of a service's ``env.py``: online migrations over asyncpg, confined to ``schema``."""
    import sqlalchemy as sa
    from alembic import context

    from letsbe_platform.db import async_url, make_engine

    url = context.config.get_main_option("sqlalchemy.url") or async_url(os.environ["DATABASE_URL"])

    def include_object(obj, name, type_, reflected, compare_to):
        return getattr(obj, "schema", schema) in (schema, None) if type_ == "table" else True

    def do_run(connection: sa.Connection) -> None:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_object=include_object,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = make_engine(url, pool_size=1, max_overflow=0, application_name="letsbe-migrations")
        async with engine.begin() as conn:
            await conn.run_sync(do_run)
        await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, version_table_schema=schema, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_async())


def create_event_tables(schema: str) -> None:
    """For a service's first migration: its outbox and inbox tables (the shapes live in letsbe_platform.outbox)."""
    from alembic import op

    from letsbe_platform.db import make_metadata
    from letsbe_platform.outbox import inbox_table, outbox_table

    md = make_metadata(schema)
    for table in (outbox_table(md), inbox_table(md)):
        table.create(op.get_bind(), checkfirst=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="letsbe-migrate", description="Apply every service's migrations")
    parser.add_argument("schemas", nargs="*", help="only these schemas (default: all)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("DATABASE_URL is not set")
    known = trees()
    unknown = [s for s in args.schemas if s not in known]
    if unknown:
        parser.error(f"unknown schema(s) {unknown}; known: {sorted(known)}")
    for schema in args.schemas or list(known):
        print(f"migrating {schema}", file=sys.stderr)
        upgrade(args.database_url, [schema])
