"""hub: the devices of the customers' apps that take push notifications

Revision ID: hub_customers_0002
Revises: hub_customers_0001
Create Date: 2026-12-02 06:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_customers_0002"
down_revision: str | Sequence[str] | None = "hub_customers_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_devices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("platform", sa.String(10), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(80)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["hub.customers.id"], name="fk_push_devices_customer_id_customers", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("token_hash", name="uq_push_devices_token_hash"),
        sa.CheckConstraint("platform IN ('apns', 'fcm', 'webpush')", name="ck_push_devices_platform"),
        schema="hub",
    )
    op.create_index("ix_push_devices_customer_created", "push_devices", ["customer_id", "created_at"], schema="hub")


def downgrade() -> None:
    op.drop_table("push_devices", schema="hub")
