"""hub: lifecycle job kinds restore, recover (a lost server) and migrate (Hetzner -> Netcup)

Revision ID: hub_lifecycle_0002
Revises: hub_lifecycle_0001
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "hub_lifecycle_0002"
down_revision: str | Sequence[str] | None = "hub_lifecycle_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("ck_lifecycle_jobs_kind", "lifecycle_jobs", schema="hub", type_="check")
    op.create_check_constraint(
        "ck_lifecycle_jobs_kind",
        "lifecycle_jobs",
        "kind IN ('decommission', 'snapshot', 'restore', 'recover', 'migrate')",
        schema="hub",
    )


def downgrade() -> None:
    op.drop_constraint("ck_lifecycle_jobs_kind", "lifecycle_jobs", schema="hub", type_="check")
    op.create_check_constraint(
        "ck_lifecycle_jobs_kind", "lifecycle_jobs", "kind IN ('decommission', 'snapshot')", schema="hub"
    )
