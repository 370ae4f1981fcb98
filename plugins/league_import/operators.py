"""Thin Airflow operators: each opens the league_db connection and calls plain functions.

Heavy modules (pandas, psycopg) are imported inside execute(), so parsing the DAG stays cheap.
Data errors (bad input, a tripped guard) fail the task at once; retrying them cannot help.
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
    with connect() as conn:
        finish_run(conn, context["run_id"], "failed", f"{context['task_instance'].task_id}: {error}")


class LeagueStepOperator(BaseOperator):
    """A pipeline step on the league_db connection; records its report in etl.runs."""

    step: str = ""

    def __init__(self, *, conn_id: str = CONN_ID, finishes_run: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.finishes_run = finishes_run

    def execute(self, context: Context) -> dict:
        from league_import.runs import finish_run, record_step
        from league_import.sources import SourceError
        from league_import.upsert import DeactivationGuardError

        params = context["params"]
        with connect(self.conn_id) as conn:
            try:
                report = self.run_step(conn, params, context["run_id"])
            except (SourceError, DeactivationGuardError) as exc:
                raise AirflowFailException(str(exc)) from exc
            record_step(conn, context["run_id"], self.step, report)
            if self.finishes_run:
                finish_run(conn, context["run_id"], "success")
        return report

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        raise NotImplementedError


class ValidateConstraintsOperator(LeagueStepOperator):
    """Create the schema and the run's etl.runs row, then validate the sources and params.

    The (empty) schema is created even on a dry run: the run's report needs a place to live.
    """

    step = "validate_constraints"

    def run_step(self, conn, params: dict, run_id: str) -> dict:
        from league_import.runs import start_run
        from league_import.schema import ensure_schema
        from league_import.sources import read_leagues

        ensure_schema(conn)
        start_run(conn, run_id, bool(params["dry_run"]))
        leagues = read_leagues(params["source_dir"], params["leagues"])
        return {
            "leagues": [lg.code for lg in leagues],
            "teams_in_sources": {lg.code: len(lg.teams) for lg in leagues},
        }


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
