"""hub: orders, transition history, provisioning progress, Stripe events, welcome emails

Revision ID: hub_orders_0001
Revises: hub0001
Create Date: 2026-11-27 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "hub_orders_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "hub"
TS = sa.DateTime(timezone=True)
STATUSES = (
    "PENDING_PAYMENT",
    "PAYMENT_CONFIRMED",
    "AWAITING_SERVER",
    "SERVER_READY",
    "DNS_PENDING",
    "DNS_READY",
    "PROVISIONING",
    "FULFILLED",
    "FAILED",
    "CANCELLED",
)


def _now() -> sa.sql.elements.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    # One id space for an order's stream (transitions + progress): the SSE Last-Event-ID.
    op.execute(sa.schema.CreateSequence(sa.Sequence("order_stream_seq", schema=S)))
    next_id = sa.text("nextval('hub.order_stream_seq')")

    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_name", sa.String(200), nullable=False),
        sa.Column("customer_email", sa.String(320), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("tools", postgresql.ARRAY(sa.String(41)), nullable=False),
        sa.Column("automation_mode", sa.String(10), nullable=False),
        sa.Column("cloudflare_zone_id", sa.String(32)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("failed_stage", sa.String(20)),
        sa.Column("failure_reason", sa.Text()),
        sa.Column("failure_retryable", sa.Boolean()),
        sa.Column("retry_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("checkout_session_id", sa.String(255)),
        sa.Column("checkout_url", sa.Text()),
        sa.Column("payment_intent_id", sa.String(255)),
        sa.Column("paid_at", TS),
        sa.Column("amount_refunded_cents", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("payment_failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_payment_error", sa.Text()),
        sa.Column("attention", sa.Text()),
        sa.Column("server_target", postgresql.JSONB()),
        sa.Column("dns_records", postgresql.JSONB()),
        sa.Column("tenant_id", sa.Uuid()),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("checkout_session_id", name="uq_orders_checkout_session_id"),
        sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="ck_orders_status"),
        schema=S,
    )
    op.create_index(
        "uq_orders_domain_live",
        "orders",
        ["domain"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status <> 'CANCELLED'"),
    )
    op.create_index("ix_orders_created_at_id", "orders", ["created_at", "id"], schema=S)
    op.create_index("ix_orders_status", "orders", ["status"], schema=S)
    op.create_index("ix_hub_orders_payment_intent_id", "orders", ["payment_intent_id"], schema=S)

    op.create_table(
        "order_transitions",
        sa.Column("id", sa.BigInteger(), nullable=False, server_default=next_id),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(30)),
        sa.Column("to_status", sa.String(30), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("failed_stage", sa.String(20)),
        sa.Column("at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_order_transitions"),
        schema=S,
    )
    op.create_index("ix_hub_order_transitions_order_id", "order_transitions", ["order_id"], schema=S)

    op.create_table(
        "provisioning_progress",
        sa.Column("id", sa.BigInteger(), nullable=False, server_default=next_id),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(4), nullable=False),
        sa.Column("step", sa.SmallInteger(), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("id", name="pk_provisioning_progress"),
        sa.UniqueConstraint("dedup_key", name="uq_provisioning_progress_dedup_key"),
        schema=S,
    )
    op.create_index("ix_provisioning_progress_order_id_id", "provisioning_progress", ["order_id", "id"], schema=S)

    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("stripe_created_at", TS, nullable=False),
        sa.Column("order_id", sa.Uuid()),
        sa.Column("outcome", sa.String(200)),
        sa.Column("received_at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("event_id", name="pk_stripe_events"),
        schema=S,
    )
    op.create_index("ix_hub_stripe_events_order_id", "stripe_events", ["order_id"], schema=S)

    op.create_table(
        "welcome_emails",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("customer_name", sa.String(200), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("tools", postgresql.ARRAY(sa.String(41)), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("state", sa.String(10), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("next_attempt_at", TS, nullable=False, server_default=_now()),
        sa.Column("claimed_at", TS),
        sa.Column("sent_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.PrimaryKeyConstraint("order_id", name="pk_welcome_emails"),
        sa.UniqueConstraint("message_id", name="uq_welcome_emails_message_id"),
        schema=S,
    )


def downgrade() -> None:
    for table in ("welcome_emails", "stripe_events", "provisioning_progress", "order_transitions", "orders"):
        op.drop_table(table, schema=S)
    op.execute(sa.schema.DropSequence(sa.Sequence("order_stream_seq", schema=S)))
