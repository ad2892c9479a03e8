"""dns schema: outbox and inbox

Revision ID: dns0001
Revises:
Create Date: 2026-11-27 12:00:00
"""

from collections.abc import Sequence

from alembic import op

from letsbe_platform.migrations import create_event_tables

revision: str = "dns0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_event_tables("dns")


def downgrade() -> None:
    op.drop_table("inbox", schema="dns")
    op.drop_table("outbox", schema="dns")
