"""dns.records: every Cloudflare record the service wrote (for decommission)

Revision ID: dns0002
Revises: dns0001
Create Date: 2026-11-27 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = "dns0002"
down_revision: str | Sequence[str] | None = "dns0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("zone_id", sa.String(32), nullable=False),
        sa.Column("zone_name", sa.String(253), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer()),
        sa.Column("purpose", sa.String(60), nullable=False),
        sa.Column("created", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("zone_id", "record_id", name="uq_records_zone_id_record_id"),
        schema="dns",
    )
    op.create_index(
        "ix_records_tenant_live", "records", ["tenant_id"], schema="dns", postgresql_where=sa.text("deleted_at IS NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_records_tenant_live", table_name="records", schema="dns")
    op.drop_table("records", schema="dns")
