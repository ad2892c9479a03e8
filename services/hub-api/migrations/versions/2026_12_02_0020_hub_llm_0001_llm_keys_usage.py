"""hub: per-tenant LLM relay keys (hashed) and the usage the relay metered

Revision ID: hub_llm_0001
Revises: hub0001
Create Date: 2026-12-02 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_llm_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "llm_keys",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),  # no foreign key across contexts
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("valid_until", TS),
        sa.Column("revoked_at", TS),
        sa.UniqueConstraint("key_hash", name="uq_llm_keys_key_hash"),
        schema="hub",
    )
    op.create_index("ix_llm_keys_tenant_id", "llm_keys", ["tenant_id"], schema="hub")
    op.create_table(
        "llm_usage",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("hour", TS, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("tokens_out", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("requests", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tenant_id", "hour", "model", name="pk_llm_usage"),
        schema="hub",
    )


def downgrade() -> None:
    op.drop_table("llm_usage", schema="hub")
    op.drop_index("ix_llm_keys_tenant_id", "llm_keys", schema="hub")
    op.drop_table("llm_keys", schema="hub")
