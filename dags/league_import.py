"""league_import: nightly league files into PostgreSQL, team ids preserved.

Reads the folder named by the run's `source_dir`, else the Airflow Variable
`league_import_source_dir`, else the environment variable `LEAGUE_IMPORT_SOURCE_DIR` (a scheduled
run has no conf); writes the Airflow connection `league_db`. Each task's report is kept in
`etl.runs.report` under its task id; the HTML health report is linked from `health_check`.
See README.md.

Wiring only: schedule, params, defaults and the order of tasks. The work lives in the
league_import package (plugins/).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag

from league_import.assets import QUESTIONS, TEAMS
from league_import.notifications import failure_notifier
from league_import.operators import (
    AnnounceQuestionsOperator,
    BackupOperator,
    DeduplicateOperator,
    HealthCheckOperator,
    RestoreMappingOperator,
    UpsertTeamsOperator,
    ValidateConstraintsOperator,
    mark_run_failed,
    retry_defaults,
    task_timeout,
)

CONN_ID = "league_db"
DRY_RUN = "{{ params.dry_run }}"
RECOVER = (
    "Recover: read the error in the task log (also in etl.runs.report->>'error'). Transient errors "
    "(a lost connection, a lock) are retried by Airflow; a terminal one (bad input, a guard, a "
    "configuration typo) fails at once and changed nothing: fix the cause and clear the task."
)


@dag(
    dag_id="league_import",
    description="Nightly league files into PostgreSQL: team ids kept, user rows repaired, health checked",
    # Nightly at 02:30 Chicago time, after the scraper (LEAGUE_IMPORT_SCHEDULE: another cron).
    schedule=CronTriggerTimetable(os.environ.get("LEAGUE_IMPORT_SCHEDULE", "30 2 * * *"), timezone="America/Chicago"),
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Chicago"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["league", "etl"],
    doc_md=__doc__,
    default_args={
        # Connection losses and lock conflicts are retried (terminal errors fail at once).
        **retry_defaults(),
        "execution_timeout": task_timeout(),
        "on_failure_callback": [mark_run_failed, failure_notifier()],
    },
    params={
        "source_dir": Param(
            None,
            type=["null", "string"],
            title="Source folder",
            description="Folder with one subfolder per league (series_stats.json and/or schedules.json). "
            "Empty: the Airflow Variable league_import_source_dir, else LEAGUE_IMPORT_SOURCE_DIR.",
        ),
        "leagues": Param(
            [],
            type=["null", "array"],
            items={"type": "string"},
            title="Leagues",
            description="League codes to import; empty means every subfolder of the source folder.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Compute and report everything, change nothing (all writes rolled back).",
        ),
        "max_deactivation_ratio": Param(
            0.2,
            type="number",
            minimum=0,
            maximum=1,
            title="Max deactivation ratio",
            description="Fail before writing if a league would deactivate more than this share of its "
            "active teams. A new season needs 1.0.",
        ),
    },
)
def league_import():
    validate = ValidateConstraintsOperator(
        task_id="validate_constraints",
        conn_id=CONN_ID,
        dry_run=DRY_RUN,
        source_dir="{{ params.source_dir }}",
        leagues="{{ params.leagues }}",
        doc_md="Reads: the league files, once, and the schema. Changes: opens the run's row in etl.runs, "
        "upgrades the schema (migrations), stages the parsed rows, adds the safe constraints. Every "
        "input problem (file, record, field) and every configuration typo is refused here, before the "
        f"first write of data. {RECOVER}",
    )
    deduplicate = DeduplicateOperator(
        task_id="deduplicate",
        conn_id=CONN_ID,
        dry_run=DRY_RUN,
        doc_md="Reads: the tables whose natural key is not enforced. Changes: keeps one row per key, "
        "archives the rest to etl_archive, adds the UNIQUE key; one transaction per table. Tables "
        f"already keyed are not touched. {RECOVER}",
    )
    backup = BackupOperator(
        task_id="backup",
        conn_id=CONN_ID,
        dry_run=DRY_RUN,
        doc_md="Reads: teams and every user row's team id, on one snapshot (no lock). Changes: "
        "etl.backup_* for this run, the key map (new and re-used ids); prunes older backups. A retry "
        f"replaces its own rows. {RECOVER}",
    )
    upsert = UpsertTeamsOperator(
        task_id="upsert_teams",
        conn_id=CONN_ID,
        dry_run=DRY_RUN,
        max_deactivation_ratio="{{ params.max_deactivation_ratio }}",
        doc_md="Reads: the run's stage. Changes: in one transaction for all leagues, leagues, clubs, "
        "series, teams (ids kept; left teams deactivated), schedule and stats (only what changed; "
        "removed rows archived); records suspected renames. The deactivation guard fails it before "
        f"any write: raise max_deactivation_ratio for a new season. {RECOVER}",
    )
    restore = RestoreMappingOperator(
        task_id="restore_mapping",
        conn_id=CONN_ID,
        dry_run=DRY_RUN,
        doc_md="Reads: user rows whose team id is gone or was re-used, the key map, the last backup. "
        "Changes: moves each to its real team or quarantines it (archived first), in short batches; "
        f"etl.repairs and etl.quarantine; validates the foreign keys. {RECOVER}",
    )
    health = HealthCheckOperator(
        task_id="health_check",
        conn_id=CONN_ID,
        dry_run=DRY_RUN,
        finishes_run=True,
        outlets=[TEAMS],
        doc_md="Reads: everything, read-only. Changes: etl.health_checks, the HTML report (link above), "
        "drops the run's stage, closes the run. Errors fail the run; warnings that need a person "
        "(quarantine, suspected renames, stale sources) are notified, and each growth warning or error "
        "is asked in league_review ('expected' makes tonight's count the table's baseline). "
        "Recover: the steps before it committed their work; a failed check names what is wrong in "
        "the data (`make health` shows it again): mend that, then clear this task or wait for the next night.",
    )
    announce = AnnounceQuestionsOperator(
        task_id="announce_questions",
        conn_id=CONN_ID,
        dry_run=DRY_RUN,
        outlets=[QUESTIONS],
        retries=1,
        on_failure_callback=None,  # the run's outcome is its steps'; this one only announces
        doc_md="Runs last whatever became of the run (a teardown: it never changes the run's state). Reads: "
        "how many questions wait (quarantined rows, suspected renames, growth alarms). Changes: nothing; "
        "publishes the league_questions Asset, which starts league_review. Skipped by a dry run and when "
        "nothing waits. Recover: nothing to do; `league-import review list` shows the questions.",
    )
    validate >> deduplicate >> backup >> upsert >> restore >> health >> announce.as_teardown()


league_import()
