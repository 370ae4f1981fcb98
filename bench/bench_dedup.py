"""Benchmark deduplicate on the 3.47 M-row practice_times incident against a table-copy floor (docs/benchmarks.md).

A measurement, not a test: it exits non-zero only on errors and prints PASS/MISS for the target.
Run: PYTHONPATH=plugins .venv/bin/python bench/bench_dedup.py [--rows 347011] [--json PATH] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import psycopg
from common import (
    BenchDatabase,
    StatementProfile,
    expect,
    positive,
    print_statement_profile,
    run,
    template_pattern,
    timed,
)
from psycopg import sql

from league_import.catalog import natural_key
from league_import.constraints import check_constraints
from league_import.dedup import deduplicate
from league_import.schema import ensure_schema
from league_import.sql import statements

ROWS = 3_470_114
SESSIONS = 41
REPEAT = 3
TARGET_FLOOR_RATIO = 1.5
RUN_ID = "bench-run"
KEY = natural_key("practice_times")

# The incident as the old system's looping backup left it: every session copied ~85,000 times,
# interleaved, ids in insertion order. Session s is team s's Tuesday practice on court s.
FILL = """
INSERT INTO public.practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
SELECT g %% %(sessions)s + 1, 'Tuesday', '18:00', '19:30', 'Court ' || (g %% %(sessions)s + 1), %(league_id)s
FROM generate_series(1, %(rows)s) g
"""
# The least work that archiving the removed rows can cost: one copy of the whole table.
FLOOR = "CREATE TABLE public.practice_copy AS SELECT * FROM public.practice_times"


class Bench(BenchDatabase):
    """One scratch database holding the incident table; every measurement starts from a fresh fill."""

    def __init__(self, uri: str, rows: int, sessions: int):
        super().__init__(uri)
        self.rows, self.sessions = rows, sessions
        self.league_id: int | None = None

    def setup(self) -> None:
        """The schema as validate_constraints leaves it, then practice_times as the old system had it."""
        self.admin.execute("DROP SCHEMA IF EXISTS public, etl, etl_archive CASCADE")
        self.admin.execute("CREATE SCHEMA public")
        with self.connect() as conn:
            ensure_schema(conn)
            check_constraints(conn)
        self.admin.execute("ALTER TABLE public.practice_times DROP CONSTRAINT practice_times_team_id_fkey")
        self.league_id = self.admin.execute(
            "INSERT INTO public.leagues (code) VALUES ('BENCH') RETURNING id"
        ).fetchone()[0]

    def refill(self) -> None:
        """Back to the incident: no archive, no UNIQUE key, `rows` rows of `sessions` sessions."""
        self.admin.execute("DROP TABLE IF EXISTS etl_archive.practice_times CASCADE")  # and its batch tables
        self.admin.execute(
            sql.SQL("ALTER TABLE public.practice_times DROP CONSTRAINT IF EXISTS {}").format(sql.Identifier(KEY.name))
        )
        self.admin.execute("TRUNCATE public.practice_times RESTART IDENTITY")
        params = {"rows": self.rows, "sessions": self.sessions, "league_id": self.league_id}
        written = self.admin.execute(FILL, params).rowcount
        expect(written == self.rows, f"fill wrote {written} of {self.rows} rows")
        # What autovacuum would have done to a table that sat there: hint bits set, statistics.
        self.admin.execute("VACUUM (ANALYZE) public.practice_times")
        self.quiesce()

    def count(self, schema: str, table: str) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        return self.admin.execute(query).fetchone()[0]

    def floor(self) -> float:
        """CREATE TABLE AS a copy of practice_times, committed; the copy is dropped afterwards, untimed."""
        with self.connect() as conn:
            seconds, _ = timed(lambda: run_floor(conn))
        expect(self.count("public", "practice_copy") == self.rows, "the floor's copy lacks rows")
        self.admin.execute("DROP TABLE public.practice_copy")
        self.quiesce()
        return seconds

    def ours(self) -> tuple[float, str]:
        """The whole deduplicate step on practice_times, then checked, untimed."""
        with self.connect() as conn:
            seconds, report = timed(lambda: deduplicate(conn, KEY, RUN_ID))
        self.verify(report)
        return seconds, report["plan"]

    def verify(self, report: dict) -> None:
        removed = self.rows - self.sessions
        expect(report["duplicates"] == removed, f"deduplicate found {report['duplicates']} of {removed} duplicates")
        kept = [r[0] for r in self.admin.execute("SELECT id FROM public.practice_times ORDER BY id").fetchall()]
        expect(len(kept) == self.sessions, f"{len(kept)} rows left in practice_times, {self.sessions} expected")
        expect(kept == list(range(1, self.sessions + 1)), "the survivors are not the lowest id of each session")
        archived = self.count("etl_archive", "practice_times")
        expect(archived == removed, f"{archived} rows archived, {removed} expected")
        constraint = self.admin.execute(
            "SELECT count(*) FROM pg_constraint WHERE conname = %s AND contype = 'u'", (KEY.name,)
        ).fetchone()[0]
        expect(constraint == 1, f"{KEY.name} was not added")


# --profile: statements named as in include/sql/*.sql.
PATTERNS = [
    (f"{family}.{name}", template_pattern(text))
    for family in ("dedup", "archive", "constraints")
    for name, text in statements(family).items()
]
REST = "rest (Python, commit)"


def statement_name(text: str) -> str:
    text = text.strip()
    if text == FLOOR:
        return "floor CREATE TABLE AS"
    for name, pattern in PATTERNS:
        if pattern.fullmatch(text):
            return name
    return "unnamed: " + " ".join(text.split()[:3])


def profile(bench: Bench) -> dict[str, dict[str, float]]:
    """One profiled floor and one profiled deduplicate: where the time (and the WAL) goes."""
    with StatementProfile(bench.uri, statement_name, REST) as timer:
        bench.refill()
        with bench.connect() as conn:
            timer.record("floor", conn, lambda: run_floor(conn))
        bench.admin.execute("DROP TABLE public.practice_copy")
        bench.quiesce()
        with bench.connect() as conn:
            report = timer.record("ours", conn, lambda: deduplicate(conn, KEY, RUN_ID))
        bench.verify(report)
    return timer.runs


def run_floor(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(FLOOR)
    conn.commit()


def measure(bench: Bench, repeat: int) -> dict:
    samples: dict[str, list[float]] = {"floor": [], "ours": []}
    plans = set()
    bench.setup()
    # Alternated on the same fill, so drift on the machine spreads over both alike.
    for rep in range(repeat):
        bench.refill()
        samples["floor"].append(bench.floor())
        seconds, plan = bench.ours()
        samples["ours"].append(seconds)
        plans.add(plan)
        print(
            f"  run {rep + 1}/{repeat}: floor {samples['floor'][-1]:.3f}s, ours {seconds:.3f}s ({plan})",
            file=sys.stderr,
            flush=True,
        )
    floor, ours = statistics.median(samples["floor"]), statistics.median(samples["ours"])
    return {
        "rows": bench.rows,
        "sessions": bench.sessions,
        "archived": bench.rows - bench.sessions,
        "plan": sorted(plans),
        "floor_s": floor,
        "ours_s": ours,
        "ours_over_floor": ours / floor,
        "samples": samples,
    }


def print_table(r: dict) -> None:
    header = ("rows", "sessions", "archived", "floor (s)", "ours (s)", "ours/floor", "plan")
    line = (f"{r['rows']:,}", f"{r['sessions']:,}", f"{r['archived']:,}", f"{r['floor_s']:.3f}", f"{r['ours_s']:.3f}")
    line += (f"{r['ours_over_floor']:.2f}x", ",".join(r["plan"]))
    widths = [max(len(h), len(c)) for h, c in zip(header, line)]
    for cells in (header, line):
        print("  ".join(cell.rjust(w) for cell, w in zip(cells, widths)))


def target(r: dict) -> dict:
    ratio = r["ours_over_floor"]
    return {
        "target": f"deduplicate within {TARGET_FLOOR_RATIO}x of the floor at {r['rows']:,} rows",
        "value": f"{ratio:.2f}x",
        "status": "PASS" if ratio <= TARGET_FLOOR_RATIO else "MISS",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive, default=ROWS, help=f"rows in practice_times (default {ROWS:,})")
    parser.add_argument("--sessions", type=positive, default=SESSIONS, help="distinct sessions among them")
    parser.add_argument("--repeat", type=positive, default=REPEAT, help="runs of each; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help="also time each statement in one extra run")
    args = parser.parse_args(argv)
    if args.rows < 2 * args.sessions:
        parser.error("--rows must be at least twice --sessions (the incident: most rows are duplicates)")

    return run(
        args,
        "bench_dedup",
        make_bench=lambda uri: Bench(uri, args.rows, args.sessions),
        measure=lambda bench: measure(bench, args.repeat),
        print_table=print_table,
        profile=profile,
        print_profile=lambda runs: print_statement_profile(f"{args.rows:,} rows", runs, REST),
        targets=lambda result, _peak: target(result),
    )


if __name__ == "__main__":
    sys.exit(main())
