"""hub: who registered and who retired a server, who set a pool's sizes

Revision ID: hub_servers_actors_0001
Revises: hub_servers_0001
Create Date: 2026-12-02 08:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "hub_servers_actors_0001"
down_revision: str | Sequence[str] | None = "hub_servers_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("servers", sa.Column("registered_by", sa.String(200)), schema="hub")
    op.add_column("servers", sa.Column("retired_by", sa.String(200)), schema="hub")
    op.add_column("server_pools", sa.Column("updated_by", sa.String(200)), schema="hub")


def downgrade() -> None:
    op.drop_column("server_pools", "updated_by", schema="hub")
    op.drop_column("servers", "retired_by", schema="hub")
    op.drop_column("servers", "registered_by", schema="hub")
