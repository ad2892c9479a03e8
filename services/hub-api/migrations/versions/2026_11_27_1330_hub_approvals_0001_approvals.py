"""hub: approval requests of the tenants' Safety Wrappers

Revision ID: hub_approvals_0001
Revises: hub0001
Create Date: 2026-11-27 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "hub_approvals_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("tool", sa.String(41), nullable=False),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("risk_class", sa.String(20), nullable=False),
        sa.Column("args_hash", sa.String(64), nullable=False),
        sa.Column("args_preview", postgresql.JSONB(), nullable=False),
        sa.Column("reasons", postgresql.ARRAY(sa.String(200)), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("requested_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("decided_at", TS),
        sa.Column("decided_by", sa.String(120)),
        sa.Column("decision_note", sa.String(1000)),
        sa.Column("consumed_at", TS),
        sa.CheckConstraint("status IN ('PENDING','APPROVED','REJECTED','EXPIRED','CONSUMED')", name="status"),
        schema="hub",
    )
    op.create_index("ix_approvals_tenant_id", "approvals", ["tenant_id"], schema="hub")
    op.create_index("ix_approvals_status_requested", "approvals", ["status", "requested_at"], schema="hub")
    op.create_index("uq_approvals_pending_call", "approvals", ["tenant_id", "args_hash"], unique=True,
                    postgresql_where=sa.text("status = 'PENDING'"), schema="hub")


def downgrade() -> None:
    op.drop_table("approvals", schema="hub")
