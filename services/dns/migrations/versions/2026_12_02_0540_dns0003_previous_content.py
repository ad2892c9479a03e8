"""dns.records: the customer's content we replaced (restored on decommission)

Revision ID: dns0003
Revises: dns0002
Create Date: 2026-12-02 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dns0003"
down_revision: str | Sequence[str] | None = "dns0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("records", sa.Column("previous_content", sa.Text()), schema="dns")
    op.add_column("records", sa.Column("previous_priority", sa.Integer()), schema="dns")
    op.add_column("records", sa.Column("restored_at", sa.DateTime(timezone=True)), schema="dns")


def downgrade() -> None:
    op.drop_column("records", "restored_at", schema="dns")
    op.drop_column("records", "previous_priority", schema="dns")
    op.drop_column("records", "previous_content", schema="dns")
