"""Thin Airflow operators: each opens the league_db connection and calls plain functions.

Heavy modules (pandas, psycopg) are imported inside execute(), so parsing the DAG stays cheap.
Retries are for what can heal: a lost connection, a lock or serialization conflict, a race with
the app. Data errors (bad input, a tripped guard, a constraint no step can add) and SQL errors
that would fail the same way again fail the task at once.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

CONN_ID = "league_db"


def connect(conn_id: str = CONN_ID):
    """A psycopg 3 connection from the Airflow connection (PostgresHook uses psycopg 3 when installed)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id).get_conn()


def mark_run_failed(context: Context) -> None:
    """on_failure_callback: the run's row in etl.runs says it failed."""
    from league_import.runs import finish_run

    error = context.get("exception")
    with connect(getattr(context.get("task"), "conn_id", CONN_ID)) as conn:
        finish_run(conn, context["run_id"], "failed", f"{context['task_instance'].task_id}: {error}")


class LeagueStepOperator(BaseOperator):
    """A pipeline step on the league_db connection; records its report in etl.runs."""

    step: str = ""

    def __init__(self, *, conn_id: str = CONN_ID, finishes_run: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.finishes_run = finishes_run

    def execute(self, context: Context) -> dict:
        import psycopg

        from league_import.backup import BackupCountError
        from league_import.constraints import ConstraintError
        from league_import.dedup import CopyMismatchError
        from league_import.health import HealthCheckError
        from league_import.runs import ConcurrentRunError, claim_run, finish_run, lock_task, record_step
        from league_import.schema import ensure_schema
        from league_import.sources import SourceError
        from league_import.upsert import DeactivationGuardError

        data_errors = (
            SourceError,
            DeactivationGuardError,
            ConstraintError,
            BackupCountError,
            CopyMismatchError,
            ConcurrentRunError,
        )
        transient = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.IntegrityError)
        params = context["params"]
        with connect(self.conn_id) as conn:
            try:
                lock_task(conn)
                ensure_schema(conn)
                claim_run(conn, context["run_id"])
                report = self.run_step(conn, params, context["run_id"])
            except HealthCheckError as exc:
                record_step(conn, context["run_id"], self.step, exc.report)
                raise AirflowFailException(str(exc)) from exc
            except data_errors as exc:
                raise AirflowFailException(str(exc)) from exc
            except psycopg.Error as exc:
                if isinstance(exc, transient):
                    raise
                raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
            record_step(conn, context["run_id"], self.step, report)
            if self.finishes_run:
                finish_run(conn, context["run_id"], "success")
        return report

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        raise NotImplementedError


class ValidateConstraintsOperator(LeagueStepOperator):
    """Open the run's etl.runs row, validate sources and params, then check every declared
    constraint and add the safe ones (league_import.constraints).

    Every task first creates missing tables (league_import.schema), even on a dry run: the
    run's report needs a place to live.
    """

    step = "validate_constraints"

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        from league_import.constraints import check_constraints, summarize
        from league_import.runs import start_run
        from league_import.sources import read_leagues

        start_run(conn, run_id, bool(params["dry_run"]))
        leagues = read_leagues(params["source_dir"], params["leagues"])
        findings = check_constraints(conn, apply=not params["dry_run"])
        for finding in findings:
            if finding.state != "present":
                self.log.info("%s on %s: %s %s", finding.constraint, finding.table, finding.state, finding.action)
        return {
            "leagues": [lg.code for lg in leagues],
            "teams_in_sources": {lg.code: len(lg.teams) for lg in leagues},
            "constraints": summarize(findings),
        }


class DeduplicateOperator(LeagueStepOperator):
    """Deduplicate tables on their natural keys, in the given order, one transaction per table.

    Generic: `keys` is a list of {"table": ..., "columns": [...], "keep_order": [[column, "ASC"|"DESC"], ...]};
    by default every natural key of league_import.catalog, referenced tables first.
    """

    step = "deduplicate"
    template_fields = ("keys",)

    def __init__(self, *, keys: list[dict] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keys = keys

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        from league_import.catalog import NATURAL_KEYS, NaturalKey
        from league_import.dedup import deduplicate

        keys = NATURAL_KEYS
        if self.keys is not None:
            keys = tuple(
                NaturalKey(k["table"], tuple(k["columns"]), tuple(map(tuple, k.get("keep_order", ()))))
                for k in self.keys
            )
        report = {"dry_run": bool(params["dry_run"]), "tables": {}}
        for key in keys:
            result = deduplicate(conn, key, run_id, dry_run=bool(params["dry_run"]))
            report["tables"][key.table] = result
            if result["duplicates"] or result["unique_added"]:
                self.log.info(
                    "%s: %s duplicates removed (%s), unique key added: %s",
                    key.table,
                    result["duplicates"],
                    result["plan"],
                    result["unique_added"],
                )
        return report


class BackupOperator(LeagueStepOperator):
    """Snapshot teams and every user row's team id for this run, and update the team key map."""

    step = "backup"

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        from league_import.backup import backup

        return backup(conn, run_id, dry_run=bool(params["dry_run"]))


class RestoreMappingOperator(LeagueStepOperator):
    """Orphan repair: every user row whose team id does not exist is mapped or quarantined."""

    step = "restore_mapping"

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        from league_import.repair import restore_mapping

        report = restore_mapping(conn, run_id, dry_run=bool(params["dry_run"]))
        self.log.info("orphans: %s, by strategy: %s", report["orphans"], report["by_strategy"])
        return report


class HealthCheckOperator(LeagueStepOperator):
    """The last task: every check with its figure; errors fail the run, warnings do not.

    Thresholds: the Airflow Variable `league_import_health_thresholds` (JSON), over the defaults
    in league_import.health. A run allowed to deactivate a larger share of teams
    (max_deactivation_ratio) is allowed as large a drop in the ETL-owned tables. A dry run
    reports its checks and does not fail on them: it changed nothing to check. The HTML report
    goes to LEAGUE_IMPORT_REPORT_DIR (else <AIRFLOW_HOME>/league_import_reports).
    """

    step = "health_check"

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        from airflow.sdk import Variable

        from league_import.health import (
            HealthCheckError,
            failure_message,
            format_table,
            record,
            report,
            run_checks,
            thresholds,
        )
        from league_import.report import write_report

        limits = thresholds(Variable.get("league_import_health_thresholds", default={}, deserialize_json=True))
        limits["drop_error"] = max(limits["drop_error"], float(params["max_deactivation_ratio"]))
        checks = run_checks(conn, run_id, limits)
        self.log.info("health checks:\n%s", format_table(checks))
        record(conn, run_id, checks)
        run_report = conn.execute("SELECT report FROM etl.runs WHERE run_id = %s", (run_id,)).fetchone()[0]
        conn.rollback()
        path = write_report(conn, run_id, checks, run_report, dry_run=bool(params["dry_run"]))
        self.log.info("health report: %s", path)
        result = {**report(checks), "report_path": str(path)}
        if result["status"] == "error" and params["dry_run"]:
            self.log.warning("dry run: not failing on these checks\n%s", failure_message(checks))
        elif result["status"] == "error":
            raise HealthCheckError(failure_message(checks), result)
        return result


class UpsertTeamsOperator(LeagueStepOperator):
    """Upsert every selected league: guard first (read-only), then one transaction per league."""

    step = "upsert_teams"

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        from league_import.sources import read_leagues
        from league_import.upsert import check_deactivation_guard, load_league

        leagues = read_leagues(params["source_dir"], params["leagues"])
        plans = check_deactivation_guard(conn, leagues, float(params["max_deactivation_ratio"]))
        report = {"dry_run": bool(params["dry_run"]), "leagues": {}}
        for league in leagues:
            counts = load_league(conn, league, dry_run=bool(params["dry_run"]))
            report["leagues"][league.code] = {**plans[league.code], **counts}
            self.log.info("league %s: %s", league.code, counts)
        return report
