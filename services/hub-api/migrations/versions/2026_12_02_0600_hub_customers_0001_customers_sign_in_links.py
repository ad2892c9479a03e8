"""hub: customer accounts and their one-time sign-in links

Revision ID: hub_customers_0001
Revises: hub_web_0001
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_customers_0001"
down_revision: str | Sequence[str] | None = "hub_web_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("last_sign_in_at", TS),
        sa.UniqueConstraint("email", name="uq_customers_email"),
        schema="hub",
    )
    op.create_table(
        "sign_in_links",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
        sa.UniqueConstraint("token_hash", name="uq_sign_in_links_token_hash"),
        schema="hub",
    )
    op.create_index(
        "ix_sign_in_links_customer_created", "sign_in_links", ["customer_id", "created_at"], schema="hub"
    )


def downgrade() -> None:
    op.drop_table("sign_in_links", schema="hub")
    op.drop_table("customers", schema="hub")
