"""The llm context's migration creates exactly what its ORM models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from letsbe_hub import models  # noqa: F401 - every table on the metadata
from letsbe_hub.db import Base

TABLES = {"llm_keys", "llm_usage"}


async def test_migration_matches_the_models(engine):
    def diff(conn):
        def include(obj, name, type_, reflected, compare_to):
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return table is None or table.name in TABLES

        ctx = MigrationContext.configure(
            conn, opts={"include_schemas": True, "include_object": include, "compare_type": True}
        )
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == []
