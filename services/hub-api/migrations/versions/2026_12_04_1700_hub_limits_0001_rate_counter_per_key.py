"""hub: one attempt counter per key, its window opened by the key's first attempt (was one row per clock window)

Revision ID: hub_limits_0001
Revises: hub_billing_0001
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "hub_limits_0001"
down_revision: str | Sequence[str] | None = "hub_billing_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The counters hold the last window's attempts only: starting them again costs a client nothing it had earned.
_DROP_PRIMARY_KEY = """
DO $$
DECLARE name text;
BEGIN
    SELECT conname INTO name FROM pg_constraint WHERE conrelid = 'hub.rate_counters'::regclass AND contype = 'p';
    EXECUTE format('ALTER TABLE hub.rate_counters DROP CONSTRAINT %I', name);
END $$
"""


def upgrade() -> None:
    op.execute("DELETE FROM hub.rate_counters")
    op.execute(_DROP_PRIMARY_KEY)
    op.create_primary_key("pk_rate_counters", "rate_counters", ["key"], schema="hub")


def downgrade() -> None:
    op.execute("DELETE FROM hub.rate_counters")
    op.execute(_DROP_PRIMARY_KEY)
    op.create_primary_key("pk_rate_counters", "rate_counters", ["key", "window_start"], schema="hub")
