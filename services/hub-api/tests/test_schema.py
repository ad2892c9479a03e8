"""The hub's migrations create exactly what its ORM models declare: every table of the ``hub`` schema, no drift
either way (a column, type, index or table added on one side only fails here)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from letsbe_hub import models  # noqa: F401 - every table on the metadata
from letsbe_hub.db import Base

SCHEMA = "hub"


def _in_hub_schema(obj, name, type_, reflected, compare_to) -> bool:
    table = obj if type_ == "table" else getattr(obj, "table", None)
    if table is None:  # a schema-level object: judged by its own schema
        return getattr(obj, "schema", SCHEMA) == SCHEMA
    return table.schema == SCHEMA and table.name != "alembic_version"


async def test_the_hub_tables_match_their_models(engine):
    def diff(conn):
        ctx = MigrationContext.configure(
            conn, opts={"include_schemas": True, "compare_type": True, "include_object": _in_hub_schema}
        )
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == [], "\n".join(map(repr, differences))
