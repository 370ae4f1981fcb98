"""etl.runs: one row per DAG run with the report of every step (CONTRACT section 5), and the
locks that keep two runs, or two tasks, from interleaving on one database."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

TASK_LOCK = 7_412_002  # session advisory lock held by a running task
STALE_LEASE = "6 hours"  # a lease not refreshed for this long is taken over


class ConcurrentRunError(RuntimeError):
    """Another run, or another task, is working on this database."""


START = """
INSERT INTO etl.runs (run_id, dry_run, status) VALUES (%(run_id)s, %(dry_run)s, 'running')
ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL, dry_run = EXCLUDED.dry_run
"""
RECORD = """
UPDATE etl.runs SET report = jsonb_set(report, ARRAY[%(step)s], %(report)s) WHERE run_id = %(run_id)s
"""
TRY_TASK_LOCK = "SELECT pg_try_advisory_lock(%(key)s)"
LOCK_HOLDER = """
SELECT a.pid, a.application_name, a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objid = %(key)s AND l.granted
"""
CLAIM_LEASE = """
INSERT INTO etl.run_lock AS l (id, run_id, acquired_at, heartbeat_at) VALUES (1, %(run_id)s, now(), now())
ON CONFLICT (id) DO UPDATE
SET run_id = EXCLUDED.run_id,
    acquired_at = CASE WHEN l.run_id = EXCLUDED.run_id THEN l.acquired_at ELSE now() END,
    heartbeat_at = now()
WHERE l.run_id IS NULL
   OR l.run_id = EXCLUDED.run_id
   OR l.heartbeat_at < now() - %(stale)s::interval
   OR NOT EXISTS (SELECT 1 FROM etl.runs r WHERE r.run_id = l.run_id AND r.status = 'running')
RETURNING run_id
"""
LEASE_HOLDER = "SELECT run_id, acquired_at, heartbeat_at FROM etl.run_lock WHERE id = 1"
RELEASE_LEASE = "UPDATE etl.run_lock SET run_id = NULL WHERE id = 1 AND run_id = %(run_id)s"
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
        conn.execute(RELEASE_LEASE, {"run_id": run_id})


def lock_task(conn: psycopg.Connection) -> None:
    """Hold the task lock for this connection's life; fail at once if another task holds it."""
    with conn.transaction():
        if conn.execute(TRY_TASK_LOCK, {"key": TASK_LOCK}).fetchone()[0]:
            return
        holder = conn.execute(LOCK_HOLDER, {"key": TASK_LOCK}).fetchone()
    who = (
        f"backend pid {holder[0]} ({holder[1] or 'no application name'}, since {holder[2]:%Y-%m-%d %H:%M})"
        if holder
        else "another session"
    )
    raise ConcurrentRunError(
        f"another league_import task is working on this database ({who}); "
        "tasks never interleave, so this one stops without changing anything"
    )


def claim_run(conn: psycopg.Connection, run_id: str) -> None:
    """Take or refresh the run lease; fail at once while another run holds it."""
    with conn.transaction():
        if conn.execute(CLAIM_LEASE, {"run_id": run_id, "stale": STALE_LEASE}).fetchone():
            return
        holder, since, beat = conn.execute(LEASE_HOLDER).fetchone()
    raise ConcurrentRunError(
        f"run {holder} is in progress on this database (since {since:%Y-%m-%d %H:%M}, last seen "
        f"{beat:%H:%M}); runs never interleave, so run {run_id} stops without changing anything. "
        f"A lease not refreshed for {STALE_LEASE} is taken over."
    )
