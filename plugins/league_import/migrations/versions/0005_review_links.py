"""Where each pending decision is asked in the Airflow UI (the league_review DAG's tasks).

Revision ID: 0005_review_links
Revises: 0004_run_lease_holder
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0005_review_links"
down_revision = "0004_run_lease_holder"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(
        """
        CREATE TABLE etl.review_links (
            item       text PRIMARY KEY,
            dag_run_id text NOT NULL,
            task_id    text NOT NULL,
            map_index  integer NOT NULL,
            url_path   text NOT NULL,
            asked_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.get_bind().exec_driver_sql("DROP TABLE etl.review_links")
