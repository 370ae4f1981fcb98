"""Benchmark the health check on a database with 3.5 M user rows (docs/benchmarks.md).

Target: the whole check (every orphan, duplicate, constraint, row-count and quarantine check)
under 5 s. A measurement, not a test: it exits non-zero only on an error.
Run: PYTHONPATH=plugins .venv/bin/python bench/bench_health.py [--rows N] [--repeat 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import psycopg
from common import expect, peak_rss_mib, positive, scratch_database, server_uri, timed

from league_import.backup import backup
from league_import.constraints import check_constraints
from league_import.health import run_checks
from league_import.schema import ensure_schema
from league_import.sources import read_leagues
from league_import.upsert import load_league

TARGET_SECONDS = 5.0
DEMO = Path(__file__).resolve().parents[1] / "include" / "demo_data"


def fill(conn: psycopg.Connection, rows: int) -> None:
    """The season, 20,000 users with memberships, and user rows up to `rows` (most of them practices)."""
    ensure_schema(conn)
    check_constraints(conn)
    for league in read_leagues(DEMO, []):
        load_league(conn, league)
    practices = rows - 3 * 20_000
    for statement in (
        "INSERT INTO users (id, email) SELECT n, 'u' || n || '@example.com' FROM generate_series(1, 20000) n",
        """INSERT INTO team_memberships (user_id, team_id, is_primary)
           SELECT n, t.id, true FROM generate_series(1, 20000) n
           JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM teams) t ON t.k = n %% 537""",
        "INSERT INTO polls (team_id, created_by, question) SELECT team_id, user_id, 'Q' FROM team_memberships",
        """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
           SELECT t.id, 'Mon', '18:00', '19:30', 'Court ' || g, t.league_id
           FROM generate_series(1, %(n)s) g
           JOIN (SELECT id, league_id, row_number() OVER (ORDER BY id) - 1 AS k FROM teams) t ON t.k = g %% 537""",
    ):
        conn.execute(statement, {"n": practices})
    conn.commit()
    backup(conn, "bench-run")  # the counts the row-balance check compares with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive, default=3_500_000, help="user rows in all (default 3,500,000)")
    parser.add_argument("--repeat", type=positive, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    uri, server = server_uri()
    with scratch_database(uri, "bench_health") as (db, version):
        with psycopg.connect(db) as conn:
            fill(conn, args.rows)
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            users = conn.execute(
                "SELECT (SELECT count(*) FROM practice_times) + (SELECT count(*) FROM polls) "
                "+ (SELECT count(*) FROM team_memberships) + (SELECT count(*) FROM users)"
            ).fetchone()[0]
        samples = []
        with psycopg.connect(db, options="-c default_transaction_read_only=on") as conn:
            for _ in range(args.repeat):
                seconds, checks = timed(lambda: run_checks(conn, "bench-run"))
                expect(all(c.status == "ok" for c in checks), "a clean database must be all ok")
                samples.append(seconds)
    median = statistics.median(samples)
    print(f"server: PostgreSQL {version}, {server}; median of {args.repeat} runs")
    print(
        f"user rows {users:,}  checks {len(checks)}  health check {median:.3f} s  (runs: "
        + ", ".join(f"{s:.3f}" for s in samples)
        + ")"
    )
    print(f"peak RSS of the benchmark process: {peak_rss_mib():.0f} MiB")
    verdict = "PASS" if median < TARGET_SECONDS else "MISS"
    print(f"{verdict}  health check under {TARGET_SECONDS:g} s on {users:,} user rows: {median:.3f} s")
    if args.json:
        args.json.write_text(json.dumps({"user_rows": users, "samples": samples, "median": median}, indent=2))


if __name__ == "__main__":
    main()
