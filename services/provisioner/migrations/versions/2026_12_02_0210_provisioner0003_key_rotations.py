"""provisioner: key rotations

Revision ID: provisioner0003
Revises: provisioner0002
Create Date: 2026-12-02 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "provisioner0003"
down_revision: str | Sequence[str] | None = "provisioner0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "provisioner"


def upgrade() -> None:
    op.create_table(
        "key_rotations",
        sa.Column("command_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("key", sa.String(40), nullable=False),
        sa.Column("requested_by", sa.String(120), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("output_tail", sa.Text),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("command_id", name="pk_key_rotations"),
        schema=S,
    )
    op.create_index("ix_key_rotations_tenant_id", "key_rotations", ["tenant_id"], schema=S)


def downgrade() -> None:
    op.drop_index("ix_key_rotations_tenant_id", table_name="key_rotations", schema=S)
    op.drop_table("key_rotations", schema=S)
