"""monitor: when a tenant's backup last reached its off-site copy (rule backup.offsite)

Revision ID: monitor0003
Revises: monitor0002
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "monitor0003"
down_revision: str | Sequence[str] | None = "monitor0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("backup_offsite_at", sa.DateTime(timezone=True)), schema="monitor")


def downgrade() -> None:
    op.drop_column("tenants", "backup_offsite_at", schema="monitor")
