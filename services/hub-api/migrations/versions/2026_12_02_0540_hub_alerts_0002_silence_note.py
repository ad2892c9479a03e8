"""hub: why an alert was silenced (the operator's note)

Revision ID: hub_alerts_0002
Revises: hub_alerts_0001
Create Date: 2026-12-02 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_alerts_0002"
down_revision: str | Sequence[str] | None = "hub_alerts_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("silence_note", sa.String(2000)), schema="hub")


def downgrade() -> None:
    op.drop_column("alerts", "silence_note", schema="hub")
