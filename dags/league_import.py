"""league_import: nightly league files into PostgreSQL, team ids preserved.

Wiring only: schedule, params, defaults and the order of tasks. The work lives in the
league_import package (plugins/); see README.md.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, Param, dag

from league_import.notifications import failure_notifier
from league_import.operators import (
    BackupOperator,
    DeduplicateOperator,
    HealthCheckOperator,
    RestoreMappingOperator,
    UpsertTeamsOperator,
    ValidateConstraintsOperator,
    mark_run_failed,
)

DEMO_DATA = str(Path(__file__).resolve().parents[1] / "include" / "demo_data")
# Updated when a run succeeds (its health check passed): downstream DAGs can schedule on it.
TEAMS = Asset(name="league_teams", uri="league-import://league_db/public/teams")


@dag(
    dag_id="league_import",
    schedule=CronTriggerTimetable("30 2 * * *", timezone="America/Chicago"),  # nightly, after the scraper
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Chicago"),
    catchup=False,
    max_active_runs=1,
    tags=["league", "etl"],
    doc_md=__doc__,
    default_args={
        "retries": 3,
        # Connection losses and lock conflicts are retried (data errors fail at once).
        "retry_delay": timedelta(seconds=int(os.environ.get("LEAGUE_IMPORT_RETRY_DELAY", "30"))),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "on_failure_callback": [mark_run_failed, failure_notifier()],
    },
    params={
        "source_dir": Param(
            DEMO_DATA,
            type="string",
            minLength=1,
            description="Folder with one subfolder per league (series_stats.json and/or schedules.json).",
        ),
        "leagues": Param(
            [],
            type="array",
            items={"type": "string"},
            description="League codes to import; empty means every subfolder of source_dir.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            description="Compute and report everything, change nothing (all writes rolled back).",
        ),
        "max_deactivation_ratio": Param(
            0.2,
            type="number",
            minimum=0,
            maximum=1,
            description="Fail before writing if a league would deactivate more than this share of its "
            "active teams. A new season needs 1.0.",
        ),
    },
)
def league_import():
    validate = ValidateConstraintsOperator(task_id="validate_constraints")
    deduplicate = DeduplicateOperator(task_id="deduplicate")
    backup = BackupOperator(task_id="backup")
    upsert = UpsertTeamsOperator(task_id="upsert_teams")
    restore = RestoreMappingOperator(task_id="restore_mapping")
    health = HealthCheckOperator(task_id="health_check", finishes_run=True, outlets=[TEAMS])
    validate >> deduplicate >> backup >> upsert >> restore >> health


league_import()
