"""hub: the tools' admin logins, encrypted until the customer's one-time reveal

Revision ID: hub_credentials_0001
Revises: hub0001
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_credentials_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "credential_reveals",
        sa.Column("order_id", sa.Uuid(), primary_key=True),
        sa.Column("ciphertext", sa.LargeBinary()),
        sa.Column("token_hash", sa.String(64)),
        sa.Column("expires_at", TS),
        sa.Column("revealed_at", TS),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_credential_reveals_token_hash"),
        schema="hub",
    )


def downgrade() -> None:
    op.drop_table("credential_reveals", schema="hub")
