"""The DAG's tasks as the operators run them, for the benchmarks: one night, task by task.

Each task gets a connection of its own (league_import.db.connect, as the operator's), the task
lock, the schema check and the run lease, untimed, as LeagueStepOperator does around its step;
then the step itself (the same league_import.steps / dedup / backup / repair calls the operators
make) is timed, with the WAL it wrote and the peak memory of the process while it ran, and its
report is recorded in etl.runs under the task id. Nothing of a step is copied here, so the
benchmarks cannot drift from what the DAG runs.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import psycopg

TASKS = ("validate_constraints", "deduplicate", "backup", "upsert_teams", "restore_mapping", "health_check")
DEFAULT_RATIO = 0.2  # the DAG's max_deactivation_ratio param


def _status(field: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Start a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM to VmRSS)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident memory of this process since the last reset_peak_rss (else since it started)."""
    hwm = _status("VmHWM")
    if hwm is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return hwm / 1024


def wal_lsn(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


def step(conn: psycopg.Connection, task: str, run_id: str, source_dir: str, ratio: float, report_dir: Path) -> dict:
    """What the operator's run_step calls for `task` (league_import.operators)."""
    from league_import import steps
    from league_import.backup import backup
    from league_import.catalog import natural_keys
    from league_import.config import Thresholds
    from league_import.dedup import deduplicate
    from league_import.errors import HealthCheckError
    from league_import.repair import restore_mapping

    if task == "validate_constraints":
        return steps.validate(conn, run_id, source_dir=source_dir, leagues=[], dry_run=False, dag_id="league_import")
    if task == "deduplicate":
        return {"tables": {key.table: deduplicate(conn, key, run_id) for key in natural_keys()}}
    if task == "backup":
        return backup(conn, run_id)
    if task == "upsert_teams":
        return steps.upsert(conn, run_id, max_ratio=ratio, dry_run=False)
    if task == "restore_mapping":
        return restore_mapping(conn, run_id)
    if task == "health_check":
        try:
            result, _ = steps.health(conn, run_id, limits=Thresholds(), dry_run=False, report_dir=report_dir)
        except HealthCheckError as exc:  # the step's work is done; the DAG would mark the run failed
            return {**exc.report, "failed_checks": str(exc).splitlines()[1:]}
        return result
    raise ValueError(f"unknown task {task}")


def run_task(
    uri: str,
    task: str,
    run_id: str,
    *,
    source_dir: str,
    ratio: float = DEFAULT_RATIO,
    report_dir: Path | None = None,
    wrap: Callable[[str, psycopg.Connection, Callable[[], dict]], dict] | None = None,
) -> dict:
    """One task as its operator runs it; returns seconds, WAL bytes and peak memory of the step, and its report."""
    from league_import.db import connect
    from league_import.runs import check_lease, claim_run, finish_run, lock_task, record_step
    from league_import.schema import ensure_schema

    report_dir = report_dir or Path(tempfile.gettempdir()) / "league-bench-reports"
    with connect(uri) as conn, psycopg.connect(uri, autocommit=True) as probe:
        check_lease(conn, run_id)
        lock_task(conn, wait=True)
        ensure_schema(conn)
        claim_run(conn, run_id, "league_import")
        work = lambda: step(conn, task, run_id, source_dir, ratio, report_dir)  # noqa: E731
        before, window = wal_lsn(probe), reset_peak_rss()
        start, started = time.perf_counter(), time.monotonic()
        report = wrap(task, conn, work) if wrap else work()
        seconds = time.perf_counter() - start
        figures = {
            "seconds": seconds,
            "started": started,  # time.monotonic(): one clock for every process of the machine
            "ended": time.monotonic(),
            "wal_bytes": wal_lsn(probe) - before,
            "peak_rss_mib": peak_rss_mib() if window else None,
        }
        record_step(conn, run_id, task, report)
        if task == "health_check":
            finish_run(conn, run_id, "success")
    return {**figures, "report": report}


def night(
    uri: str,
    run_id: str,
    source_dir: str,
    *,
    tasks: tuple[str, ...] = TASKS,
    ratio: float = DEFAULT_RATIO,
    profile: bool = False,
) -> dict:
    """The tasks in the DAG's order; `profile` times each statement (bench/common.StatementProfile).

    The process first imports what a task process of the DAG holds (the operators, with the
    Airflow SDK and the Postgres provider's hook), so its peak memory is the task's, not a bare
    interpreter's (about 87 MiB less).
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401
    from common import StatementProfile, statement_name

    import league_import.operators  # noqa: F401

    out: dict = {"tasks": {}, "rss_at_start_mib": (_status("VmRSS") or 0) / 1024}
    timer = StatementProfile(uri, statement_name, "rest (Python, COPY data, commit)", count_calls=True)
    with timer if profile else _nothing():
        wrap = (lambda task, conn, work: timer.record(task, conn, work)) if profile else None
        for task in tasks:
            out["tasks"][task] = run_task(uri, task, run_id, source_dir=source_dir, ratio=ratio, wrap=wrap)
    if profile:
        out["profile"] = timer.runs
    return out


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _call(fn: Callable, args: tuple, kwargs: dict) -> tuple[bool, object]:
    """In the child: (True, result) or (False, the traceback as text); an exception of ours may
    not survive the trip back (a required argument), and the pool would then wait forever."""
    try:
        return True, fn(*args, **kwargs)
    except BaseException:  # noqa: BLE001 (reported in the parent, whatever it was)
        return False, traceback.format_exc()


def in_child(fn: Callable, *args, **kwargs):
    """fn(*args, **kwargs) in a fresh interpreter, as a task runs in a process of its own: its
    memory is measured from a clean start, not after the benchmark's own set-up."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        ok, result = pool.apply(_call, (fn, args, kwargs))
    if not ok:
        raise RuntimeError(f"in the child process:\n{result}")
    return result
