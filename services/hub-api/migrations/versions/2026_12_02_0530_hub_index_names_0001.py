"""hub: the tenants' and approvals' indexes take the names their models give them (ix_hub_<table>_<column>)

Revision ID: hub_index_names_0001
Revises: hub_tenants_0001, hub_approvals_0001
Create Date: 2026-12-02 05:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "hub_index_names_0001"
down_revision: str | Sequence[str] | None = ("hub_tenants_0001", "hub_approvals_0001")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The first migrations named these by hand; the models' naming convention says otherwise, so a migration test
# comparing every table saw drift. Renaming is metadata only: no index is rebuilt.
RENAMED = [
    "agent_credentials_agent_id",
    "agent_details_tenant_id",
    "agents_tenant_id",
    "approvals_tenant_id",
    "command_transitions_command_id",
    "commands_rollout_id",
    "registration_tokens_tenant_id",
    "rollout_events_rollout_id",
    "tenants_created_at",
]


def upgrade() -> None:
    for name in RENAMED:
        op.execute(f"ALTER INDEX hub.ix_{name} RENAME TO ix_hub_{name}")


def downgrade() -> None:
    for name in RENAMED:
        op.execute(f"ALTER INDEX hub.ix_hub_{name} RENAME TO ix_{name}")
