"""hub: self-serve subscriptions, their dunning state, billing emails and the public route's rate counters

Revision ID: hub_billing_0001
Revises: hub0001
Create Date: 2026-12-02 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_billing_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
STATES = ("ACTIVE", "PAST_DUE", "SUSPENDED", "CANCELLED", "DECOMMISSIONED")


def upgrade() -> None:
    op.create_table(
        "billing_subscriptions",
        sa.Column("order_id", sa.Uuid(), primary_key=True),
        sa.Column("stripe_subscription_id", sa.String(255), nullable=False),
        sa.Column("stripe_customer_id", sa.String(255)),
        sa.Column("customer_email", sa.String(320), nullable=False),
        sa.Column("price_id", sa.String(255)),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("state", sa.String(20), server_default="ACTIVE", nullable=False),
        sa.Column("paid_through", TS),
        sa.Column("past_due_since", TS),
        sa.Column("grace_until", TS),
        sa.Column("suspensions", sa.Integer(), server_default="0", nullable=False),
        sa.Column("suspended_at", TS),
        sa.Column("cancelled_at", TS),
        sa.Column("decommission_at", TS),
        sa.Column("decommissioned_at", TS),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("stripe_subscription_id", name="uq_billing_subscriptions_stripe_subscription_id"),
        sa.CheckConstraint(f"state IN ({', '.join(repr(s) for s in STATES)})", name="ck_billing_subscriptions_state"),
        schema="hub",
    )
    op.create_index(
        "ix_hub_billing_subscriptions_stripe_customer_id", "billing_subscriptions", ["stripe_customer_id"], schema="hub"
    )
    op.create_index(
        "ix_billing_subscriptions_due",
        "billing_subscriptions",
        ["state", "grace_until", "decommission_at"],
        schema="hub",
    )
    op.create_table(
        "billing_emails",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(10), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("next_attempt_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("claimed_at", TS),
        sa.Column("sent_at", TS),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("message_id", name="uq_billing_emails_message_id"),
        schema="hub",
    )
    op.create_index("ix_hub_billing_emails_order_id", "billing_emails", ["order_id"], schema="hub")
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("window_start", TS, primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        schema="hub",
    )


def downgrade() -> None:
    op.drop_table("rate_counters", schema="hub")
    op.drop_table("billing_emails", schema="hub")
    op.drop_table("billing_subscriptions", schema="hub")
