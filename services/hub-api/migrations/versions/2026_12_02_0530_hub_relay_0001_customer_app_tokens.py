"""hub: customer app tokens for the chat relay (hashed)

Revision ID: hub_relay_0001
Revises: hub0001
Create Date: 2026-12-02 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_relay_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customer_app_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),  # no foreign key across contexts
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", TS),
        sa.UniqueConstraint("token_hash", name="uq_customer_app_tokens_token_hash"),
        schema="hub",
    )
    op.create_index("ix_customer_app_tokens_tenant_id", "customer_app_tokens", ["tenant_id"], schema="hub")


def downgrade() -> None:
    op.drop_index("ix_customer_app_tokens_tenant_id", "customer_app_tokens", schema="hub")
    op.drop_table("customer_app_tokens", schema="hub")
