"""provisioner: jobs, job steps, tenant secrets

Revision ID: provisioner0002
Revises: provisioner0001
Create Date: 2026-11-27 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "provisioner0002"
down_revision: str | Sequence[str] | None = "provisioner0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "provisioner"


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("order_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("spec", postgresql.JSONB, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("failed_step", sa.Integer),
        sa.Column("log_seq", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("steps_done_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("order_id", name="uq_jobs_order_id"),
        schema=S,
    )
    op.create_table(
        "job_steps",
        sa.Column("job_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("output_tail", sa.Text),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("job_id", "number", name="pk_job_steps"),
        sa.ForeignKeyConstraint(["job_id"], [f"{S}.jobs.id"], name="fk_job_steps_job_id_jobs"),
        schema=S,
    )
    op.create_table(
        "tenant_secrets",
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_tenant_secrets"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("tenant_secrets", schema=S)
    op.drop_table("job_steps", schema=S)
    op.drop_table("jobs", schema=S)
