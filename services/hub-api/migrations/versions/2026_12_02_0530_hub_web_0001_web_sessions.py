"""hub: server-side browser sessions of customers and operators

Revision ID: hub_web_0001
Revises: hub0001
Create Date: 2026-12-02 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_web_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("principal_kind", sa.String(20), nullable=False),
        sa.Column("principal_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("csrf_secret", sa.String(64), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("last_seen_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        sa.UniqueConstraint("token_hash", name="uq_web_sessions_token_hash"),
        schema="hub",
    )
    op.create_index("ix_web_sessions_principal", "web_sessions", ["principal_kind", "principal_id"], schema="hub")


def downgrade() -> None:
    op.drop_table("web_sessions", schema="hub")
