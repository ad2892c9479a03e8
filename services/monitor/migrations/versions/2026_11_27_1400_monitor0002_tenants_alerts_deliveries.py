"""monitor: tenants (liveness sweep), alerts, silences, deliveries, token usage, sweep state

Revision ID: monitor0002
Revises: monitor0001
Create Date: 2026-11-27 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "monitor0002"
down_revision: str | Sequence[str] | None = "monitor0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("rule", sa.String(length=80), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("clear_streak", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("emitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=120), nullable=True),
        sa.Column("auto_resolve_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_summary", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        schema="monitor",
    )
    op.create_index(
        "ix_alerts_auto_resolve",
        "alerts",
        ["auto_resolve_at"],
        unique=False,
        schema="monitor",
        postgresql_where=sa.text("resolved_at IS NULL AND auto_resolve_at IS NOT NULL"),
    )
    op.create_index(
        "uq_alerts_open",
        "alerts",
        ["tenant_id", "rule"],
        unique=True,
        schema="monitor",
        postgresql_nulls_not_distinct=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("rule", sa.String(length=80), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("alert_id", "channel", "kind", name="uq_deliveries_alert_channel_kind"),
        schema="monitor",
    )
    op.create_index("ix_deliveries_alert", "deliveries", ["alert_id"], unique=False, schema="monitor")
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        unique=False,
        schema="monitor",
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )
    op.create_table(
        "silences",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("rule", sa.String(length=80), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("silenced_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
        schema="monitor",
    )
    op.create_index(
        "uq_silences_key",
        "silences",
        ["tenant_id", "rule"],
        unique=True,
        schema="monitor",
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "sweep_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grace_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ingest_stalled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("last_sweep_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweep_state")),
        schema="monitor",
    )
    op.execute("INSERT INTO monitor.sweep_state (id) VALUES (1)")
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=True),
        sa.Column("tier", sa.String(length=20), nullable=True),
        sa.Column("tools", postgresql.ARRAY(sa.String(length=60)), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("watched", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("watched_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("billing_anchor", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("interval_seconds", sa.Integer(), server_default=sa.text("60"), nullable=False),
        sa.Column("offline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("liveness", sa.String(length=10), server_default=sa.text("'online'"), nullable=False),
        sa.Column("offline_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("offline_alerted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("details_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "container_restarts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("backup_last_run", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tls_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tls_not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tls_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenants")),
        schema="monitor",
    )
    op.create_index(
        "ix_tenants_backup_last_run",
        "tenants",
        ["backup_last_run"],
        unique=False,
        schema="monitor",
        postgresql_where=sa.text("watched"),
    )
    op.create_index(
        "ix_tenants_last_seen",
        "tenants",
        ["last_seen"],
        unique=False,
        schema="monitor",
        postgresql_where=sa.text("watched"),
    )
    op.create_index(
        "ix_tenants_offline_at",
        "tenants",
        ["offline_at"],
        unique=False,
        schema="monitor",
        postgresql_where=sa.text("watched AND liveness = 'online'"),
    )
    op.create_index(
        "ix_tenants_offline_pending",
        "tenants",
        ["offline_since"],
        unique=False,
        schema="monitor",
        postgresql_where=sa.text("watched AND liveness = 'offline' AND NOT offline_alerted"),
    )
    op.create_index(
        "ix_tenants_tls_checked_at",
        "tenants",
        ["tls_checked_at"],
        unique=False,
        schema="monitor",
        postgresql_where=sa.text("watched"),
    )
    op.create_table(
        "token_pool_fired",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule", sa.String(length=80), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "period_start", "rule", name=op.f("pk_token_pool_fired")),
        schema="monitor",
    )
    op.create_table(
        "usage_reports",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "hour", "sequence", name=op.f("pk_usage_reports")),
        schema="monitor",
    )


def downgrade() -> None:
    for table in ("usage_reports", "token_pool_fired", "tenants", "sweep_state", "silences", "deliveries", "alerts"):
        op.drop_table(table, schema="monitor")
