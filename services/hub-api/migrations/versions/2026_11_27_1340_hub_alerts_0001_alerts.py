"""hub: alerts as the monitor (and other producers) announce them, with operator acknowledge / silence

Revision ID: hub_alerts_0001
Revises: hub0001
Create Date: 2026-11-27 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_alerts_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid()),  # no foreign key across contexts; None for platform alerts
        sa.Column("rule", sa.String(80), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("value", sa.Double()),
        sa.Column("threshold", sa.Double()),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("resolved_at", TS),
        sa.Column("resolved_summary", sa.Text()),
        sa.Column("acknowledged_at", TS),
        sa.Column("acknowledged_by", sa.String(120)),
        sa.Column("ack_note", sa.String(2000)),
        sa.Column("silenced_until", TS),
        sa.Column("silenced_by", sa.String(120)),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("status IN ('open', 'resolved')", name="ck_alerts_status"),
        sa.CheckConstraint("severity IN ('soft', 'medium', 'hard')", name="ck_alerts_severity"),
        schema="hub",
    )
    op.create_index("ix_alerts_status_last_seen", "alerts", ["status", "last_seen", "alert_id"], schema="hub")
    op.create_index("ix_alerts_tenant_id", "alerts", ["tenant_id"], schema="hub")


def downgrade() -> None:
    op.drop_table("alerts", schema="hub")
