"""The run lease names its holder: the DAG, and the host and process of the task that holds it.

Revision ID: 0004_run_lease_holder
Revises: 0003_stage_and_sources
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004_run_lease_holder"
down_revision = "0003_stage_and_sources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        "ALTER TABLE etl.run_lock ADD COLUMN dag_id text, ADD COLUMN holder text;"
        "ALTER TABLE etl.runs ADD COLUMN dag_id text"
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql(
        "ALTER TABLE etl.run_lock DROP COLUMN dag_id, DROP COLUMN holder; ALTER TABLE etl.runs DROP COLUMN dag_id"
    )
