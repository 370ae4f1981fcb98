"""Airflow operators for the pipeline's steps: every input a constructor argument in
template_fields (as BaseSQLOperator does), execute() thin over league_import.steps.

Heavy modules (psycopg, msgspec, the domain modules) are imported inside execute(), so parsing a
DAG stays cheap. Errors are decided on the two bases of league_import.errors alone: terminal
fails the task at once (no retry), transient is raised for Airflow to retry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink, Context
from airflow.sdk.exceptions import AirflowFailException

CONN_ID = "league_db"


def retry_defaults() -> dict[str, Any]:
    """The default_args both DAGs share, read from the environment when a DAG file is parsed:
    retries with exponential backoff (LEAGUE_IMPORT_RETRY_DELAY seconds at first)."""
    return {
        "owner": "league-import",
        "retries": 3,
        "retry_delay": timedelta(seconds=int(os.environ.get("LEAGUE_IMPORT_RETRY_DELAY", "30"))),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }


@contextmanager
def task_scope() -> Iterator[None]:
    """What every task of both DAGs works in: the target of this deployment made active (the
    Airflow Variable league_import_target, else LEAGUE_IMPORT_TARGET, else CONTRACT section 4's
    own schema: league_import.target), and the one error policy in Airflow's terms: database
    errors sorted into terminal and transient (errors.sorted_database_errors), a terminal error
    failing the task at once, with no retry."""
    from league_import import config, target
    from league_import.errors import TerminalError, sorted_database_errors

    try:
        with sorted_database_errors():
            chosen = target.configured(config.airflow_variable(target.TARGET_VARIABLE))
            with target.active(chosen):
                yield
    except TerminalError as exc:
        raise AirflowFailException(str(exc)) from exc


def task_timeout() -> timedelta:
    """How long a working task may run (LEAGUE_IMPORT_TASK_TIMEOUT_MINUTES, default 60)."""
    return timedelta(minutes=int(os.environ.get("LEAGUE_IMPORT_TASK_TIMEOUT_MINUTES", "60")))


BASE_FIELDS = ("conn_id", "dry_run")


def connect(conn_id: str = CONN_ID):
    """A psycopg 3 connection from the Airflow connection (PostgresHook uses psycopg 3 when
    installed), set up so that the server frees its locks soon after the task's process dies."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from league_import.db import guard_session

    return guard_session(PostgresHook(postgres_conn_id=conn_id).get_conn())


def _flag(name: str, value: Any) -> bool:
    """A boolean input, rendered natively or as text ("True", "false")."""
    from league_import.errors import ConfigError

    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def airflow_run_state(dag_id: str, run_id: str) -> str | None:
    """Another run's state, asked of Airflow from inside a task; None when it cannot be asked."""
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        return RuntimeTaskInstance.get_dagrun_state(dag_id, run_id)
    except Exception:  # noqa: BLE001 (outside a task, or a run Airflow no longer knows: decide by etl.runs)
        return None


def mark_run_failed(context: Context) -> None:
    """on_failure_callback: the run's row in etl.runs says it failed (and frees its lease)."""
    from league_import.runs import finish_run

    error = context.get("exception")
    task = context.get("task")
    with connect(getattr(task, "conn_id", CONN_ID)) as conn:
        finish_run(conn, context["run_id"], "failed", f"{context['task_instance'].task_id}: {error}")


class LineageMethods:
    """The OpenLineage provider's methods: what the step read and wrote (league_import.lineage,
    from the report the step kept in `lineage_report`). The provider calls them only when it is
    configured (its transport); otherwise they cost nothing."""

    lineage_step: str = ""  # a key of league_import.lineage.STEPS
    lineage_report: Any = None
    lineage_target: Any = None

    def keep_for_lineage(self, report: Any) -> None:
        """The step's report and the target it ran on, for the lineage methods (called after it)."""
        from league_import.target import current

        self.lineage_report, self.lineage_target = report, current()

    def get_openlineage_facets_on_start(self):
        return self._operator_lineage(None)

    def get_openlineage_facets_on_complete(self, task_instance):
        return self._operator_lineage(self.lineage_report)

    def get_openlineage_facets_on_failure(self, task_instance):
        return self._operator_lineage(self.lineage_report, failed=True)

    def _operator_lineage(self, report: Any, *, failed: bool = False):
        from airflow.providers.openlineage.extractors import OperatorLineage

        from league_import import lineage

        try:
            dry_run = _flag("dry_run", getattr(self, "dry_run", False))
        except Exception:  # noqa: BLE001 (a dry_run that did not render: the step failed on it)
            dry_run = False
        place = lineage_place(getattr(self, "conn_id", CONN_ID)) if report is not None else None
        target = self.lineage_target
        if target is None and report is not None:
            from league_import.target import configured

            target = configured()
        found = lineage.of_step(self.lineage_step, report, place, target, dry_run=dry_run, failed=failed)
        return OperatorLineage(inputs=found.inputs, outputs=found.outputs, run_facets=found.run_facets)


def lineage_place(conn_id: str):
    """Where the target database is, named as the postgres provider names its datasets."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from league_import.lineage import Place

    hook = PostgresHook(postgres_conn_id=conn_id)
    info = hook.get_openlineage_database_info(hook.get_connection(conn_id))
    return Place(f"{info.scheme}://{info.authority}", info.database)


class LeagueStepOperator(LineageMethods, BaseOperator):
    """A pipeline step on one connection: task lock, schema, run lease, heartbeat, report.

    The report is kept in etl.runs.report under the task id. A run is refused at once while
    another live run holds the lease; otherwise the task waits a bounded time for the task lock
    (someone holds it a moment). `finishes_run` closes the run (the last task).
    """

    template_fields: Sequence[str] = BASE_FIELDS
    ui_color = "#e8f0fb"

    def __init__(
        self, *, conn_id: str = CONN_ID, dry_run: bool | str = False, finishes_run: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.dry_run = dry_run
        self.finishes_run = finishes_run

    def execute(self, context: Context) -> dict:
        from league_import.errors import HealthCheckError

        with task_scope():
            try:
                report = self._execute(context)
            except HealthCheckError as exc:  # the checks' report is kept before the run fails
                self._record(context, exc.report)
                self.keep_for_lineage(exc.report)
                raise
            self.keep_for_lineage(report)
            return report

    def _execute(self, context: Context) -> dict:
        from league_import.runs import Heartbeat, check_lease, claim_run, finish_run, lock_task, record_step
        from league_import.schema import ensure_schema

        run_id, dag_id = context["run_id"], context["dag"].dag_id
        with connect(self.conn_id) as conn:
            # Another live run: refused at once. Otherwise whatever holds the task lock holds it a
            # moment (a decision applied by league_review or the CLI): wait for it, bounded.
            takeover = check_lease(conn, run_id, airflow_run_state)
            lock_task(conn, wait=True)
            ensure_schema(conn)
            takeover = claim_run(conn, run_id, dag_id, airflow_run_state) or takeover
            if takeover:
                self.log.warning("%s", takeover)
            with Heartbeat(conn, run_id):
                report = self.run_step(conn, context)
            if takeover:
                report["lease_takeover"] = takeover
            record_step(conn, run_id, self.task_id, report)
            if self.finishes_run:
                finish_run(conn, run_id, "success")
        return report

    def _record(self, context: Context, report: dict) -> None:
        from league_import.runs import record_step

        with connect(self.conn_id) as conn:
            record_step(conn, context["run_id"], self.task_id, report)

    @property
    def is_dry_run(self) -> bool:
        return _flag("dry_run", self.dry_run)

    def run_step(self, conn, context: Context) -> dict:
        raise NotImplementedError


class ValidateConstraintsOperator(LeagueStepOperator):
    """Open the run's etl.runs row; read, check and stage every source file once; check every
    declared constraint and add the safe ones. Every input problem is reported here, before the
    first write. Configuration (thresholds, notifications) is checked here too."""

    lineage_step = "validate_constraints"

    template_fields: Sequence[str] = (*BASE_FIELDS, "source_dir", "leagues")

    def __init__(self, *, source_dir: str | None = None, leagues: list[str] | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_dir = source_dir
        self.leagues = leagues

    def run_step(self, conn, context: Context) -> dict:
        from league_import import config
        from league_import.errors import ConfigError
        from league_import.steps import validate

        config.thresholds(config.airflow_variable(config.THRESHOLDS_VARIABLE))
        config.notify_settings()
        folder = config.source_dir(self.source_dir, config.airflow_variable(config.SOURCE_DIR_VARIABLE))
        leagues = self.leagues if self.leagues not in (None, "", "None") else []
        if not isinstance(leagues, list):
            raise ConfigError(f"param leagues: expected an array of league codes, got {leagues!r}")
        report = validate(
            conn,
            context["run_id"],
            source_dir=folder,
            leagues=leagues,
            dry_run=self.is_dry_run,
            dag_id=context["dag"].dag_id,
        )
        self.log.info("staged %s from %s", report["teams_in_sources"], folder)
        return report


class DeduplicateOperator(LeagueStepOperator):
    """Deduplicate tables on their natural keys, in the given order, one transaction per table.

    Generic: `keys` is a list of {"table": ..., "columns": [...], "keep_order": [[column, "ASC"|"DESC"], ...]};
    by default every natural key of league_import.catalog, referenced tables first.
    """

    lineage_step = "deduplicate"

    template_fields: Sequence[str] = (*BASE_FIELDS, "keys")

    def __init__(self, *, keys: list[dict] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keys = keys

    def run_step(self, conn, context: Context) -> dict:
        from league_import.catalog import NaturalKey, natural_keys
        from league_import.dedup import deduplicate

        keys = natural_keys()
        if self.keys is not None:
            keys = tuple(
                NaturalKey(k["table"], tuple(k["columns"]), tuple(map(tuple, k.get("keep_order", ()))))
                for k in self.keys
            )
        report = {"dry_run": self.is_dry_run, "tables": {}}
        for key in keys:
            result = deduplicate(conn, key, context["run_id"], dry_run=self.is_dry_run)
            report["tables"][key.table] = result
            if result["duplicates"] or result["unique_added"]:
                self.log.info("%s: %s duplicates removed (%s)", key.table, result["duplicates"], result["plan"])
        return report


class BackupOperator(LeagueStepOperator):
    """Snapshot teams and every user row's team id for this run; record new and re-used ids."""

    lineage_step = "backup"

    def run_step(self, conn, context: Context) -> dict:
        from league_import.backup import backup

        return backup(conn, context["run_id"], dry_run=self.is_dry_run)


class UpsertTeamsOperator(LeagueStepOperator):
    """Load every staged league in one transaction: guard first, ids kept, only changes written."""

    lineage_step = "upsert_teams"

    template_fields: Sequence[str] = (*BASE_FIELDS, "max_deactivation_ratio")

    def __init__(self, *, max_deactivation_ratio: float | str = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_deactivation_ratio = max_deactivation_ratio

    def run_step(self, conn, context: Context) -> dict:
        from league_import.errors import ConfigError
        from league_import.steps import upsert

        try:
            ratio = float(self.max_deactivation_ratio)
        except (TypeError, ValueError):
            raise ConfigError(
                f"param max_deactivation_ratio: {self.max_deactivation_ratio!r} is not a number"
            ) from None
        report = upsert(conn, context["run_id"], max_ratio=ratio, dry_run=self.is_dry_run)
        for code, counts in report["leagues"].items():
            self.log.info("league %s: %s", code, counts)
        if report["suspected_renames"]:
            self.log.warning("%s suspected renames recorded for review", len(report["suspected_renames"]))
        return report


class RestoreMappingOperator(LeagueStepOperator):
    """Orphan repair: every user row whose team id does not exist, or was re-used, is put back or quarantined."""

    lineage_step = "restore_mapping"

    def run_step(self, conn, context: Context) -> dict:
        from league_import.repair import restore_mapping

        report = restore_mapping(conn, context["run_id"], dry_run=self.is_dry_run)
        self.log.info("rows repaired: %s, by strategy: %s", report["orphans"], report["by_strategy"])
        return report


class HealthReportLink(BaseOperatorLink):
    """The run's HTML health report, served by Airflow's API server behind its login (the plugin's
    /league-import/reports/), or under LEAGUE_IMPORT_REPORT_URL when the folder is served elsewhere.
    Always http(s) or a path on the UI's own server: Airflow's UI shows no other link."""

    name = "Health report"

    def get_link(self, operator: BaseOperator, *, ti_key) -> str:
        return getattr(operator, "report_url", "") or ""


class HealthCheckOperator(LeagueStepOperator):
    """The last task: every check with its figure; errors fail the run, warnings that need a
    person are sent to the notifier; writes the HTML report; publishes the Asset's counts.

    Thresholds: the Airflow Variable `league_import_health_thresholds` (JSON), over the defaults
    of league_import.config.Thresholds. A dry run reports its checks and does not fail on them,
    and announces nothing: no notification of decisions, no `league_teams` Asset event (which
    would tell the DAGs scheduled on it of data that was never written)."""

    lineage_step = "health_check"

    template_fields: Sequence[str] = (*BASE_FIELDS, "report_dir")
    operator_extra_links = (HealthReportLink(),)

    def __init__(self, *, report_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.report_dir = report_dir
        self.report_url = ""

    def run_step(self, conn, context: Context) -> dict:
        from pathlib import Path

        from league_import import config
        from league_import.notifications import notify_decisions
        from league_import.report import report_url
        from league_import.steps import health

        limits = config.thresholds(config.airflow_variable(config.THRESHOLDS_VARIABLE))
        folder = Path(self.report_dir) if self.report_dir not in (None, "", "None") else None
        result, decisions = health(conn, context["run_id"], limits=limits, dry_run=self.is_dry_run, report_dir=folder)
        self.report_url = report_url(Path(result["report_path"]))
        self.log.info("health: %s; report: %s", result["counts"], self.report_url)
        if self.is_dry_run:
            # The Task SDK publishes an event for each outlet of the task instance's own copy of
            # the operator (prepare_for_execution) when it succeeds: a dry run's copy has none.
            self.outlets = []
            return result
        if decisions:
            notify_decisions(context, decisions)
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {
                "run_id": context["run_id"],
                "status": result["status"],
                **{k: int(v) for k, v in result["figures"].items() if k.startswith("reconcile:teams ")},
                "decisions_pending": len(decisions),
            }
        return result


class AnnounceQuestionsOperator(LineageMethods, BaseOperator):
    """The import run's teardown: whatever became of the run (a growth alarm fails it), questions
    waiting for a person are announced on the `league_questions` Asset, which schedules
    league_review. Nothing is announced by a dry run or when nothing waits (the task is skipped)."""

    template_fields: Sequence[str] = ("conn_id", "dry_run")
    ui_color = "#e8f0fb"
    lineage_step = "announce_questions"

    def __init__(self, *, conn_id: str = CONN_ID, dry_run: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.dry_run = dry_run

    def execute(self, context: Context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from league_import.review import open_questions

        if _flag("dry_run", self.dry_run):
            raise AirflowSkipException("a dry run announces nothing")
        with task_scope(), connect(self.conn_id) as conn:
            waiting = open_questions(conn)
            self.keep_for_lineage(waiting)
        if not waiting:
            raise AirflowSkipException("no question waits for a person")
        self.log.info("questions waiting for a person: %s", waiting)
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {"run_id": context["run_id"], **waiting}
        return waiting
