"""The orders migration creates exactly what the ORM models of this context declare (no drift either way)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from letsbe_hub import models  # noqa: F401 - every table on the metadata
from letsbe_hub.db import Base

MINE = {"orders", "order_transitions", "provisioning_progress", "stripe_events", "welcome_emails"}


def _mine(obj, name, type_, reflected, compare_to) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in MINE


async def test_the_orders_tables_match_their_models(engine):
    def diff(conn):
        ctx = MigrationContext.configure(
            conn, opts={"include_schemas": True, "compare_type": True, "include_object": _mine}
        )
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == [], "\n".join(map(repr, differences))
