"""hub: lifecycle jobs of kind tool-change (a tool added to or removed from a live tenant)

Revision ID: hub_lifecycle_0003
Revises: hub_lifecycle_0002
Create Date: 2026-12-02 09:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "hub_lifecycle_0003"
down_revision: str | Sequence[str] | None = "hub_lifecycle_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("ck_lifecycle_jobs_kind", "lifecycle_jobs", schema="hub", type_="check")
    op.create_check_constraint(
        "ck_lifecycle_jobs_kind",
        "lifecycle_jobs",
        "kind IN ('decommission', 'snapshot', 'restore', 'recover', 'migrate', 'tool-change')",
        schema="hub",
    )


def downgrade() -> None:
    op.execute("DELETE FROM hub.lifecycle_jobs WHERE kind = 'tool-change'")
    op.drop_constraint("ck_lifecycle_jobs_kind", "lifecycle_jobs", schema="hub", type_="check")
    op.create_check_constraint(
        "ck_lifecycle_jobs_kind",
        "lifecycle_jobs",
        "kind IN ('decommission', 'snapshot', 'restore', 'recover', 'migrate')",
        schema="hub",
    )
