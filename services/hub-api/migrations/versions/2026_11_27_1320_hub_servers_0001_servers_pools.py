"""hub: server inventory, pool policies (seeded per seed §3.2), holds, overflow intents, migration proposals

Revision ID: hub_servers_0001
Revises: hub0001
Create Date: 2026-11-27 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "hub_servers_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "hub"
TS = sa.DateTime(timezone=True)


def _now() -> sa.sql.elements.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("provider_ref", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("ipv4", sa.String(15), nullable=False),
        sa.Column("ipv6", sa.String(45)),
        sa.Column("ssh_port", sa.Integer(), nullable=False),
        sa.Column("ssh_user", sa.String(32), nullable=False),
        sa.Column("host_key_fingerprint", sa.String(60), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("order_id", sa.Uuid()),
        sa.Column("tenant_id", sa.Uuid()),
        sa.Column("contract_end", sa.Date()),
        sa.Column("created_at", TS, server_default=_now(), nullable=False),
        sa.Column("updated_at", TS, server_default=_now(), nullable=False),
        sa.Column("reserved_at", TS),
        sa.Column("retired_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_servers"),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_servers_provider_provider_ref"),
        sa.CheckConstraint(
            "status IN ('AVAILABLE', 'RESERVED', 'IN_USE', 'DRAINING', 'RETIRED')", name="ck_servers_status"
        ),
        sa.CheckConstraint("provider IN ('netcup', 'hetzner')", name="ck_servers_provider"),
        sa.CheckConstraint("tier IN ('lite', 'build', 'scale', 'enterprise')", name="ck_servers_tier"),
        sa.CheckConstraint("region IN ('eu', 'us')", name="ck_servers_region"),
        schema=S,
    )
    op.create_index("ix_servers_pool", "servers", ["tier", "region", "status"], schema=S)
    # One server per order at a time: the database itself refuses a double booking.
    op.create_index(
        "uq_servers_order_held",
        "servers",
        ["order_id"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("order_id IS NOT NULL AND status IN ('RESERVED', 'IN_USE', 'DRAINING')"),
    )

    pools = op.create_table(
        "server_pools",
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("min_available", sa.Integer(), nullable=False),
        sa.Column("target_available", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Uuid()),
        sa.Column("below_minimum_since", TS),
        sa.Column("updated_at", TS, server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("tier", "region", name="pk_server_pools"),
        sa.CheckConstraint("min_available >= 0 AND target_available >= min_available", name="ck_server_pools_sizes"),
        schema=S,
    )
    # Seed §3.2: EU 3-5 and US 2-3 Build servers; other pools start empty (min 0) until an operator sets them.
    op.bulk_insert(
        pools,
        [
            {"tier": "build", "region": "eu", "min_available": 3, "target_available": 5},
            {"tier": "build", "region": "us", "min_available": 2, "target_available": 3},
        ],
    )

    op.create_table(
        "allocation_holds",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("order_spec", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("held_at", TS, server_default=_now(), nullable=False),
        sa.Column("server_id", sa.Uuid()),
        sa.Column("assigned_at", TS),
        sa.Column("assigned_by", sa.String(120)),
        sa.PrimaryKeyConstraint("order_id", name="pk_allocation_holds"),
        schema=S,
    )

    op.create_table(
        "overflow_servers",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("hetzner_id", sa.BigInteger()),
        sa.Column("server_id", sa.Uuid()),
        sa.Column("error", sa.Text()),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, server_default=_now(), nullable=False),
        sa.Column("updated_at", TS, server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_overflow_servers"),
        sa.UniqueConstraint("name", name="uq_overflow_servers_name"),
        schema=S,
    )

    op.create_table(
        "migration_proposals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("from_server_id", sa.Uuid(), nullable=False),
        sa.Column("to_server_id", sa.Uuid(), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("monthly_saving_eur", sa.Numeric(10, 2), nullable=False),
        sa.Column("created_at", TS, server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_migration_proposals"),
        sa.UniqueConstraint("from_server_id", "period", name="uq_migration_proposals_from_server_id_period"),
        schema=S,
    )


def downgrade() -> None:
    for table in ("migration_proposals", "overflow_servers", "allocation_holds", "server_pools"):
        op.drop_table(table, schema=S)
    op.drop_index("uq_servers_order_held", table_name="servers", schema=S)
    op.drop_index("ix_servers_pool", table_name="servers", schema=S)
    op.drop_table("servers", schema=S)
