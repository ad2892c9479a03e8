"""The lifecycle migration creates exactly what the ORM models declare (no drift either way)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from letsbe_hub import models  # noqa: F401 - every table on the metadata
from letsbe_hub.db import Base

MINE = {"lifecycle_jobs", "lifecycle_job_transitions"}


def _mine(obj, name, type_, reflected, compare_to) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in MINE


async def test_the_lifecycle_tables_match_their_models(engine):
    def diff(conn):
        opts = {"include_schemas": True, "compare_type": True, "include_object": _mine}
        return compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == [], "\n".join(map(repr, differences))
