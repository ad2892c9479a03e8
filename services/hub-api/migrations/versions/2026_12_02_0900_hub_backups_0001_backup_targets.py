"""hub: each tenant's off-site backup target (bucket prefix, sealed credentials and encryption key)

Revision ID: hub_backups_0001
Revises: hub_customers_0002
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_backups_0001"
down_revision: str | Sequence[str] | None = "hub_customers_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backup_targets",
        sa.Column("tenant_id", sa.Uuid(), primary_key=True),
        sa.Column("endpoint", sa.String(300), nullable=False),
        sa.Column("region", sa.String(40), nullable=False),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("prefix", sa.String(200), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema="hub",
    )


def downgrade() -> None:
    op.drop_table("backup_targets", schema="hub")
