"""etl.runs: one row per DAG run with the report of every step (CONTRACT section 5)."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

START = """
INSERT INTO etl.runs (run_id, dry_run, status) VALUES (%(run_id)s, %(dry_run)s, 'running')
ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL, dry_run = EXCLUDED.dry_run
"""
RECORD = """
UPDATE etl.runs SET report = jsonb_set(report, ARRAY[%(step)s], %(report)s) WHERE run_id = %(run_id)s
"""
FINISH = """
INSERT INTO etl.runs AS r (run_id, status, finished_at, report)
VALUES (%(run_id)s, %(status)s, now(), %(extra)s)
ON CONFLICT (run_id) DO UPDATE
SET status = EXCLUDED.status, finished_at = now(), report = r.report || EXCLUDED.report
"""


def start_run(conn: psycopg.Connection, run_id: str, dry_run: bool) -> None:
    with conn.transaction():
        conn.execute(START, {"run_id": run_id, "dry_run": dry_run})


def record_step(conn: psycopg.Connection, run_id: str, step: str, report: dict) -> None:
    """Keep a step's report; a retried step replaces its own entry, never appends."""
    with conn.transaction():
        conn.execute(RECORD, {"run_id": run_id, "step": step, "report": Jsonb(report)})


def finish_run(conn: psycopg.Connection, run_id: str, status: str, error: str | None = None) -> None:
    """Close the run; a failure keeps its error text in the report, for operators and alerts."""
    extra = {"error": error} if error else {}
    with conn.transaction():
        conn.execute(FINISH, {"run_id": run_id, "status": status, "extra": Jsonb(extra)})
