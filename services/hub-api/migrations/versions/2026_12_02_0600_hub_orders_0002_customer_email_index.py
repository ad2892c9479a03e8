"""hub: index orders by lower(customer_email), for the search by email (a sequential scan before)

Revision ID: hub_orders_0002
Revises: hub_orders_0001
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_orders_0002"
down_revision: str | Sequence[str] | None = "hub_orders_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_customer_email_lower", "orders", [sa.text("lower(customer_email)")], schema="hub")


def downgrade() -> None:
    op.drop_index("ix_orders_customer_email_lower", table_name="orders", schema="hub")
