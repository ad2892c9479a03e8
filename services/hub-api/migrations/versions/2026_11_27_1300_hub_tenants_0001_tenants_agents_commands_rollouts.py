"""hub: tenants, agents, credentials, registration tokens, reports, commands, rollouts

Revision ID: hub_tenants_0001
Revises: hub0001
Create Date: 2026-11-27 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "hub_tenants_0001"
down_revision: str | Sequence[str] | None = "hub0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "hub"
TS = sa.DateTime(timezone=True)


def _now() -> sa.sql.elements.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("region", sa.String(10), nullable=False),
        sa.Column("server_id", sa.Uuid()),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("staging", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
        schema=S,
    )
    op.create_index("ix_tenants_created_at", "tenants", ["created_at"], schema=S)
    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("hostname", sa.String(253), nullable=False),
        sa.Column("registered_at", TS, nullable=False, server_default=_now()),
        sa.Column("revoked_at", TS),
        sa.Column("last_heartbeat_at", TS),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("details_hash", sa.String(64)),
        sa.Column("details_at", TS),
        schema=S,
        postgresql_with={"fillfactor": 70},
    )
    op.create_index("ix_agents_tenant_id", "agents", ["tenant_id"], schema=S)
    op.create_index(
        "uq_agents_active_kind",
        "agents",
        ["tenant_id", "kind"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        "agent_credentials",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("expires_at", TS),
        sa.Column("revoked_at", TS),
        schema=S,
    )
    op.create_index("ix_agent_credentials_agent_id", "agent_credentials", ["agent_id"], schema=S)
    op.create_table(
        "registration_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
        sa.Column("used_by_agent_id", sa.Uuid()),
        schema=S,
    )
    op.create_index("ix_registration_tokens_tenant_id", "registration_tokens", ["tenant_id"], schema=S)
    op.create_table(
        "agent_details",
        sa.Column("agent_id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
        schema=S,
    )
    op.create_index("ix_agent_details_tenant_id", "agent_details", ["tenant_id"], schema=S)
    op.create_table(
        "tenant_components",
        sa.Column("tenant_id", sa.Uuid(), primary_key=True),
        sa.Column("component", sa.String(60), primary_key=True),
        sa.Column("version", sa.String(64)),
        sa.Column("digest", sa.String(80)),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
        schema=S,
    )
    op.create_table(
        "backup_reports",
        sa.Column("tenant_id", sa.Uuid(), primary_key=True),
        sa.Column("report_date", sa.Date(), primary_key=True),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("checked_at", TS, nullable=False),
        sa.Column("status", postgresql.JSONB()),
        sa.Column("problem", sa.Text()),
        sa.Column("received_at", TS, nullable=False, server_default=_now()),
        schema=S,
    )
    op.create_table(
        "usage_reports",
        sa.Column("tenant_id", sa.Uuid(), primary_key=True),
        sa.Column("hour", TS, primary_key=True),
        sa.Column("sequence", sa.Integer(), primary_key=True),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("lines", postgresql.JSONB(), nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), nullable=False),
        sa.Column("tokens_out", sa.BigInteger(), nullable=False),
        sa.Column("received_at", TS, nullable=False, server_default=_now()),
        schema=S,
    )
    op.create_table(
        "commands",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("agent_kind", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("deadline_seconds", sa.Integer(), nullable=False),
        sa.Column("deadline_at", TS),
        sa.Column("delivered_at", TS),
        sa.Column("deliveries", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("result", postgresql.JSONB()),
        sa.Column("error", sa.Text()),
        sa.Column("rollout_id", sa.Uuid()),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_commands_tenant_id_idempotency_key"),
        schema=S,
    )
    op.create_index(
        "ix_commands_open",
        "commands",
        ["tenant_id", "agent_kind", "created_at"],
        schema=S,
        postgresql_where=sa.text("status IN ('QUEUED', 'DELIVERED')"),
    )
    op.create_index(
        "ix_commands_running_deadline",
        "commands",
        ["deadline_at"],
        schema=S,
        postgresql_where=sa.text("status = 'RUNNING'"),
    )
    op.create_index("ix_commands_rollout_id", "commands", ["rollout_id"], schema=S)
    op.create_table(
        "command_transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("command_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("at", TS, nullable=False, server_default=_now()),
        schema=S,
    )
    op.create_index("ix_command_transitions_command_id", "command_transitions", ["command_id"], schema=S)
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("component", sa.String(60), nullable=False),
        sa.Column("agent_kind", sa.String(40), nullable=False),
        sa.Column("image", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("stages", postgresql.JSONB(), nullable=False),
        sa.Column("stage_index", sa.Integer(), nullable=False),
        sa.Column("stage_started_at", TS),
        sa.Column("soak_started_at", TS),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("rollback_on_abort", sa.Boolean(), nullable=False),
        sa.Column("min_healthy_seconds", sa.Float(), nullable=False),
        sa.Column("deadline_seconds", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("approved_by", sa.String(120)),
        sa.Column("created_at", TS, nullable=False, server_default=_now()),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
        sa.Column("finished_at", TS),
        schema=S,
    )
    op.create_index(
        "uq_rollouts_active_component",
        "rollouts",
        ["component"],
        unique=True,
        schema=S,
        postgresql_where=sa.text("status IN ('RUNNING', 'PAUSED', 'AWAITING_APPROVAL')"),
    )
    op.create_table(
        "rollout_targets",
        sa.Column("rollout_id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), primary_key=True),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("command_id", sa.Uuid()),
        sa.Column("previous_digest", sa.String(80)),
        sa.Column("previous_version", sa.String(64)),
        sa.Column("detail", sa.Text()),
        sa.Column("updated_at", TS, nullable=False, server_default=_now()),
        schema=S,
    )
    op.create_index("ix_rollout_targets_stage", "rollout_targets", ["rollout_id", "stage", "status"], schema=S)
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("rollout_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB()),
        sa.Column("at", TS, nullable=False, server_default=_now()),
        schema=S,
    )
    op.create_index("ix_rollout_events_rollout_id", "rollout_events", ["rollout_id"], schema=S)


def downgrade() -> None:
    for table in (
        "rollout_events",
        "rollout_targets",
        "rollouts",
        "command_transitions",
        "commands",
        "usage_reports",
        "backup_reports",
        "tenant_components",
        "agent_details",
        "registration_tokens",
        "agent_credentials",
        "agents",
        "tenants",
    ):
        op.drop_table(table, schema=S)
