"""Benchmark the health check on a database with 3.5 M user rows (docs/benchmarks.md).

Target: every check of the health_check task (orphans, duplicates, constraints, row counts and
balance, quarantine, freshness) under 5 s. A measurement, not a test: it exits non-zero only on
an error.
Run: .venv/bin/python bench/bench_health.py [--rows N] [--repeat 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg
from common import BenchDatabase, expect, positive, run, timed
from pipeline import TASKS, run_task

from league_import.health import run_checks
from league_import.schema import ensure_schema

TARGET_SECONDS = 5.0
RUN_ID = "bench-night-1"
DEMO = Path(__file__).resolve().parents[1] / "include" / "demo_data"
USERS = 20_000
FILL = (
    "INSERT INTO users (id, email) SELECT n, 'u' || n || '@example.com' FROM generate_series(1, %(users)s) n",
    """INSERT INTO team_memberships (user_id, team_id, is_primary)
       SELECT n, t.id, true FROM generate_series(1, %(users)s) n
       JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM teams) t ON t.k = n %% 537""",
    "INSERT INTO polls (team_id, created_by, question) SELECT team_id, user_id, 'Q' FROM team_memberships",
    """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
       SELECT t.id, 'Mon', '18:00', '19:30', 'Court ' || g, t.league_id
       FROM generate_series(1, %(practices)s) g
       JOIN (SELECT id, league_id, row_number() OVER (ORDER BY id) - 1 AS k FROM teams) t ON t.k = g %% 537""",
)


class Bench(BenchDatabase):
    def prepare(self, rows: int) -> int:
        """The season imported (the tasks before health_check, as the DAG runs them), the user rows,
        and the run's backup taken again: the counts the row-balance check compares with."""
        with self.connect() as conn:
            ensure_schema(conn)
        for task in TASKS[:-1]:
            run_task(self.uri, task, RUN_ID, source_dir=str(DEMO))
        with self.connect() as conn:
            for statement in FILL:
                conn.execute(statement, {"users": USERS, "practices": rows - 3 * USERS})
        run_task(self.uri, "backup", RUN_ID, source_dir=str(DEMO))
        self.admin.execute("VACUUM (ANALYZE)")
        return self.admin.execute(
            "SELECT (SELECT count(*) FROM practice_times) + (SELECT count(*) FROM polls) "
            "+ (SELECT count(*) FROM team_memberships) + (SELECT count(*) FROM users)"
        ).fetchone()[0]


def measure(bench: Bench, args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    users = bench.prepare(args.rows)
    print(f"  set-up: {users:,} user rows; {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    samples = []
    with psycopg.connect(bench.uri, options="-c default_transaction_read_only=on") as conn:
        for _ in range(args.repeat):
            seconds, checks = timed(lambda: run_checks(conn, RUN_ID))
            bad = [f"{c.name} {c.subject}: {c.status}" for c in checks if c.status != "ok"]
            expect(not bad, f"a clean database must be all ok: {bad}")
            samples.append(seconds)
    return {"user_rows": users, "checks": len(checks), "seconds": statistics.median(samples), "samples": samples}


def print_table(r: dict) -> None:
    runs = ", ".join(f"{s:.3f}" for s in r["samples"])
    print(f"user rows {r['user_rows']:,}  checks {r['checks']}  health check {r['seconds']:.3f} s  (runs: {runs})")


def target(r: dict) -> dict:
    return {
        "target": f"health check under {TARGET_SECONDS:g} s on {r['user_rows']:,} user rows",
        "value": f"{r['seconds']:.3f} s",
        "status": "PASS" if r["seconds"] < TARGET_SECONDS else "MISS",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive, default=3_500_000, help="user rows in all (default 3,500,000)")
    parser.add_argument("--repeat", type=positive, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 4 * USERS:
        parser.error(f"--rows must be at least {4 * USERS:,}")
    return run(
        args,
        "bench_health",
        make_bench=Bench,
        measure=lambda bench: measure(bench, args),
        print_table=print_table,
        profile=lambda bench: {},
        print_profile=lambda runs: None,
        targets=lambda result, _peak: target(result),
    )


if __name__ == "__main__":
    sys.exit(main())
