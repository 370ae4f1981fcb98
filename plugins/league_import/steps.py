"""The pipeline's steps as plain functions: what each operator runs, testable without Airflow.

Each takes an open connection, the run id and its inputs, does its work in its own
transactions and returns its report (kept in etl.runs under the task id by the caller).
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from league_import import stage
from league_import.config import Thresholds
from league_import.errors import HealthCheckError, TerminalError
from league_import.target import current


def validate(
    conn: psycopg.Connection,
    run_id: str,
    *,
    source_dir: str,
    leagues: list[str],
    dry_run: bool,
    dag_id: str | None = None,
) -> dict:
    """Open the run, read and check every file once (staging the rows), check the constraints.

    On an app's database the target is checked first (the mapping against the database, every
    change of `target check` applied), and each league's files against the target's constraints
    before it is staged (targetplan.data_conflicts)."""
    from league_import.constraints import check_constraints, summarize
    from league_import.runs import start_run
    from league_import.sources import Problems, SourceError, read_leagues
    from league_import.targetplan import data_conflicts, ready

    start_run(conn, run_id, dry_run, dag_id)
    facts = ready(conn, current())
    conflicts = Problems()

    def sink(league) -> None:
        if facts is not None:
            conflicts.items.extend(data_conflicts([league], facts)[0])
        stage.add_league(conn, run_id, league)

    stage.open_stage(conn, run_id)
    try:
        read = read_leagues(source_dir, leagues, sink=sink)
        if conflicts:
            raise conflicts.error("conflicts between the files and the target's constraints")
    except SourceError:  # a later league was bad: the leagues staged before it go too
        with conn.transaction(), conn.cursor() as cur:
            stage.discard(cur, run_id)
        raise
    with conn.transaction(), conn.cursor() as cur:
        stage.close_stage(cur, run_id)
        implied = stage.implied_counts(cur, run_id)
    findings = check_constraints(conn, apply=not dry_run)
    return {
        "source_dir": str(Path(source_dir)),
        "leagues": [lg.code for lg in read],
        "teams_in_sources": {code: counts["teams"] for code, counts in implied.items()},
        "implied": implied,
        "files": {
            lg.code: [
                {"name": f.name, "bytes": f.size, "sha256": f.sha256[:16], "records": f.records} for f in lg.files
            ]
            for lg in read
        },
        "counts": {lg.code: lg.counts for lg in read},
        "constraints": summarize(findings),
    }


def _staged(conn: psycopg.Connection, run_id: str) -> list[str]:
    with conn.transaction(), conn.cursor() as cur:
        leagues = stage.staged_leagues(cur, run_id)
    if leagues is None:
        raise TerminalError(
            f"run {run_id} has no stage: validate_constraints did not read its files (clear the whole run to retry)"
        )
    return leagues


def upsert(conn: psycopg.Connection, run_id: str, *, max_ratio: float, dry_run: bool) -> dict:
    from league_import.upsert import upsert_teams

    _staged(conn, run_id)
    return upsert_teams(conn, run_id, max_ratio=max_ratio, dry_run=dry_run)


def health(
    conn: psycopg.Connection,
    run_id: str,
    *,
    limits: Thresholds,
    dry_run: bool,
    report_dir: Path | None = None,
) -> tuple[dict, list]:
    """Every check, recorded; the HTML report written; the run's stage dropped.

    Returns (report, the warnings that need a person). Raises HealthCheckError on errors, unless
    the run is a dry run (it changed nothing to check).
    """
    from league_import.health import ask_growth, decisions_needed, failure_message, record, report, run_checks
    from league_import.report import write_report
    from league_import.runs import run_report

    with conn.transaction(), conn.cursor() as cur:
        implied = stage.implied_counts(cur, run_id) if stage.staged_leagues(cur, run_id) is not None else None
    checks = run_checks(conn, run_id, limits, implied=None if dry_run else implied)
    if not dry_run:
        ask_growth(conn, run_id, checks)
    record(conn, run_id, checks)
    path = write_report(conn, run_id, checks, run_report(conn, run_id), dry_run=dry_run, folder=report_dir)
    result = {**report(checks), "report_path": str(path)}
    with conn.transaction(), conn.cursor() as cur:
        stage.drop_stage(cur, run_id)
    if result["status"] == "error" and not dry_run:
        raise HealthCheckError(failure_message(checks), result)
    return result, decisions_needed(checks)
