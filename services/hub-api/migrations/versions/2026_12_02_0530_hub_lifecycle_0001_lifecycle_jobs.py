"""hub: lifecycle jobs (decommission, daily snapshots) and their transition history

Revision ID: hub_lifecycle_0001
Revises: hub0001
Create Date: 2026-12-02 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "hub_lifecycle_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lifecycle_jobs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("server_id", sa.Uuid()),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("failed_from", sa.String(30)),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("lease_owner", sa.String(120)),
        sa.Column("lease_until", TS),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("data", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("requested_by", sa.String(120), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", TS),
        sa.UniqueConstraint("key", name="uq_lifecycle_jobs_key"),
        sa.CheckConstraint("kind IN ('decommission', 'snapshot')", name="ck_lifecycle_jobs_kind"),
        schema="hub",
    )
    op.create_index(
        "ix_lifecycle_jobs_runnable",
        "lifecycle_jobs",
        ["due_at"],
        schema="hub",
        postgresql_where=sa.text("finished_at IS NULL"),
    )
    op.create_index("ix_lifecycle_jobs_tenant", "lifecycle_jobs", ["tenant_id", "kind", "created_at"], schema="hub")
    op.create_table(
        "lifecycle_job_transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(30)),
        sa.Column("to_status", sa.String(30), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("at", TS, server_default=sa.func.now(), nullable=False),
        schema="hub",
    )
    op.create_index("ix_lifecycle_job_transitions_job_id", "lifecycle_job_transitions", ["job_id"], schema="hub")


def downgrade() -> None:
    op.drop_table("lifecycle_job_transitions", schema="hub")
    op.drop_table("lifecycle_jobs", schema="hub")
