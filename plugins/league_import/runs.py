"""etl.runs, and the locks that keep two runs, or two tasks, from interleaving on one database.

- The task lock: a session advisory lock a task holds while it works. A task of the run that
  holds the lease waits for it, a bounded time (TASK_LOCK_WAIT), when something else holds it a
  moment (a person's decision applied from the CLI); past the bound the try fails as transient
  and Airflow retries it.
- The run lease (etl.run_lock): one run at a time, from its first task to its end. Another run
  is refused at once, naming the holder. A lease whose holder is dead is taken over, and the
  takeover reported: its run is no longer running (in Airflow, when the task can ask; in
  etl.runs otherwise), or its heartbeat is older than STALE_LEASE, a bound above the longest
  retry delay (a task refreshes the heartbeat every HEARTBEAT_SECONDS while it works).
  `league-import unlock` frees a lease by hand after showing its holder.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import psycopg
from psycopg.types.json import Jsonb

from league_import.errors import ConcurrentRunError, LockBusyError
from league_import.pgcatalog import advisory_lock_holder, table_exists
from league_import.sql import run

TASK_LOCK = 7_412_002  # session advisory lock held by a running task
TASK_LOCK_WAIT = "60s"  # how long a task of the lease's run waits for the task lock
STALE_LEASE = "15 minutes"  # above max_retry_delay (10 min): a healthy run refreshes sooner
HEARTBEAT_SECONDS = 60

_run = partial(run, "runs")


def start_run(conn: psycopg.Connection, run_id: str, dry_run: bool, dag_id: str | None = None) -> None:
    with conn.transaction():
        _run(conn.cursor(), "start", {"run_id": run_id, "dry_run": dry_run, "dag_id": dag_id})


def record_step(conn: psycopg.Connection, run_id: str, step: str, report: dict) -> None:
    """Keep a step's report under its task id; a retried step replaces its own entry, never appends."""
    with conn.transaction():
        _run(conn.cursor(), "record", {"run_id": run_id, "step": step, "report": Jsonb(report)})


def run_report(conn: psycopg.Connection, run_id: str) -> dict:
    with conn.transaction():
        found = _run(conn.cursor(), "report", {"run_id": run_id}).fetchone()
    return found[0] if found else {}


def finish_run(conn: psycopg.Connection, run_id: str, status: str, error: str | None = None) -> None:
    """Close the run and free its lease; a failure keeps its error text in the report."""
    extra = {"error": error} if error else {}
    with conn.transaction(), conn.cursor() as cur:
        _run(cur, "finish", {"run_id": run_id, "status": status, "extra": Jsonb(extra)})
        _run(cur, "release", {"run_id": run_id})


@dataclass(frozen=True)
class Lease:
    run_id: str | None
    dag_id: str | None
    holder: str | None
    acquired_at: datetime | None
    heartbeat_at: datetime | None
    running: bool
    stale: bool

    def describe(self) -> str:
        return (
            f"run {self.run_id}{f' of {self.dag_id}' if self.dag_id else ''} (since {self.acquired_at:%Y-%m-%d %H:%M}, "
            f"last heartbeat {self.heartbeat_at:%Y-%m-%d %H:%M:%S}{f', held by {self.holder}' if self.holder else ''})"
        )


def lease(conn: psycopg.Connection) -> Lease | None:
    """The current lease, or None when no run holds one (or the table does not exist yet)."""
    with conn.transaction(), conn.cursor() as cur:
        if not table_exists(cur, "run_lock", "etl"):
            return None
        found = _run(cur, "lease", {"stale": STALE_LEASE}).fetchone()
    if found is None or found[0].get("run_id") is None:
        return None
    row, running, stale = found
    when = {k: datetime.fromisoformat(row[k]) if row.get(k) else None for k in ("acquired_at", "heartbeat_at")}
    return Lease(
        row["run_id"], row.get("dag_id"), row.get("holder"), when["acquired_at"], when["heartbeat_at"], running, stale
    )


def dead_reason(held: Lease, run_state: Callable[[str, str], str | None] | None) -> str | None:
    """Why the lease's holder is dead, or None while it may be alive."""
    if run_state is not None and held.dag_id:
        state = run_state(held.dag_id, held.run_id)
        if state is not None and state not in ("running", "queued"):
            return f"its Airflow run is {state}"
    if not held.running:
        return "its run has ended"
    if held.stale:
        return f"no heartbeat for more than {STALE_LEASE}"
    return None


def _refuse(held: Lease, run_id: str) -> ConcurrentRunError:
    return ConcurrentRunError(
        f"{held.describe()} is in progress on this database; runs never interleave, so run {run_id} "
        f"stops without changing anything. A lease is taken over once its run has ended or its heartbeat is "
        f"older than {STALE_LEASE}; `league-import unlock` frees it by hand."
    )


def check_lease(
    conn: psycopg.Connection, run_id: str, run_state: Callable[[str, str], str | None] | None = None
) -> str | None:
    """Refuse at once while another live run holds the lease; returns why a dead holder's lease
    may be taken over (None when it is free or ours). Read-only: the claim comes later."""
    held = lease(conn)
    if held is None or held.run_id == run_id:
        return None
    reason = dead_reason(held, run_state)
    if reason is None:
        raise _refuse(held, run_id)
    return f"took over the lease of {held.describe()}: {reason}"


def lock_task(conn: psycopg.Connection, *, wait: bool) -> None:
    """Hold the task lock for this connection's life.

    With `wait`, wait up to TASK_LOCK_WAIT (this run holds the lease: whatever holds the lock
    now holds it a moment), then fail as transient; without, fail at once naming the holder.
    """
    with conn.transaction(), conn.cursor() as cur:
        if _run(cur, "try_task_lock", {"key": TASK_LOCK}).fetchone()[0]:
            return
        holder = advisory_lock_holder(cur, TASK_LOCK)
    who = (
        f"backend pid {holder[0]} ({holder[1] or 'no application name'}, since {holder[2]:%Y-%m-%d %H:%M})"
        if holder
        else "another session"
    )
    if not wait:
        raise ConcurrentRunError(
            f"another league_import task is working on this database ({who}); "
            "tasks never interleave, so this one stops without changing anything"
        )
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{TASK_LOCK_WAIT}'")
            _run(cur, "task_lock", {"key": TASK_LOCK})
    except psycopg.errors.LockNotAvailable:
        raise LockBusyError(
            f"the task lock was held by {who} for more than {TASK_LOCK_WAIT}; this try stops and is retried"
        ) from None


def claim_run(
    conn: psycopg.Connection,
    run_id: str,
    dag_id: str | None = None,
    run_state: Callable[[str, str], str | None] | None = None,
) -> str | None:
    """Take or refresh the run lease under the task lock; returns a takeover message, if any."""
    with conn.transaction(), conn.cursor() as cur:
        _run(cur, "lease_for_update")
        held = lease(conn)
        takeover = None
        if held is not None and held.run_id != run_id:
            reason = dead_reason(held, run_state)
            if reason is None:
                raise _refuse(held, run_id)
            takeover = f"took over the lease of {held.describe()}: {reason}"
            why = f"lease taken over by run {run_id}: {reason}"
            _run(cur, "taken_over", {"run_id": held.run_id, "why": why})
        holder = f"{socket.gethostname()} pid {os.getpid()}"
        _run(cur, "claim", {"run_id": run_id, "dag_id": dag_id, "holder": holder})
    return takeover


class Heartbeat:
    """Refreshes the lease's heartbeat every HEARTBEAT_SECONDS on a connection of its own, while a
    task works (a long step is never mistaken for a dead one). The connection is opened from the
    task's own connection's parameters, in the thread: no Airflow call from a second thread."""

    def __init__(self, conn: psycopg.Connection, run_id: str, every: float = HEARTBEAT_SECONDS):
        params = {**conn.info.get_parameters(), "password": conn.info.password}
        self._connect = lambda: psycopg.connect(**{k: v for k, v in params.items() if v})
        self._run_id, self._every = run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="league-import-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self._every):
            try:
                with self._connect() as conn:
                    _run(conn.cursor(), "heartbeat", {"run_id": self._run_id})
                    conn.commit()
            except psycopg.Error:
                pass  # a missed beat is harmless; the task itself reports a lost database


def free_lease(conn: psycopg.Connection, run_id: str, why: str) -> None:
    """Free a lease by hand (league-import unlock) and mark its run failed."""
    with conn.transaction(), conn.cursor() as cur:
        _run(cur, "free", {"run_id": run_id, "why": why})


def latest_run(conn: psycopg.Connection) -> dict | None:
    """The newest run (run_id, status, dry_run, report), or None; leaves no transaction open."""
    with conn.transaction(), conn.cursor() as cur:
        row = _run(cur, "latest").fetchone()
    return None if row is None else dict(zip(("run_id", "status", "dry_run", "report"), row))
