"""Benchmark the deduplicate task on the 3.47 M-row practice_times incident, in the state the DAG
leaves (the season imported, foreign keys present), against a CREATE TABLE AS floor (docs/benchmarks.md).

A measurement, not a test: it exits non-zero only on errors and prints PASS/MISS for the target.
Run: .venv/bin/python bench/bench_dedup.py [--rows 347011] [--repeat 3] [--json PATH] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg
from common import (
    EXTRA_NAMES,
    BenchDatabase,
    StatementProfile,
    clone_database,
    database_name,
    drop_database,
    expect,
    positive,
    print_statement_profile,
    run,
    statement_name,
    template_pattern,
    timed,
    with_database,
)
from pipeline import TASKS, run_task
from psycopg import sql

from league_import.catalog import natural_key
from league_import.schema import ensure_schema

ROWS = 3_470_114
SESSIONS = 41
REPEAT = 3
TARGET_FLOOR_RATIO = 1.3
KEY = natural_key("practice_times")
DEMO_DATA = Path(__file__).resolve().parents[1] / "include" / "demo_data"
NIGHT_1, NIGHT_2 = "bench-night-1", "bench-night-2"

# The incident as the old system's looping backup left it: every session copied ~85,000 times,
# interleaved, ids in insertion order. Session s is the Tuesday practice of the season's s-th team
# on court s, so every row's team_id and league_id are real: both foreign keys hold.
FILL = """
INSERT INTO public.practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
SELECT t.id, 'Tuesday', '18:00', '19:30', 'Court ' || t.n, t.league_id
FROM generate_series(1, %(rows)s) g
JOIN (SELECT id, league_id, row_number() OVER (ORDER BY id) - 1 AS n FROM public.teams ORDER BY id LIMIT %(sessions)s) t
  ON t.n = g %% %(sessions)s
ORDER BY g
"""
# The floor issue 14 sets: one copy of the whole table, what archiving the removed rows by copying
# them costs. The move plan copies none (the heap becomes the archive), so it can go below 1x.
FLOOR = "CREATE TABLE public.practice_copy AS SELECT * FROM public.practice_times"
EXTRA_NAMES.append(("floor CREATE TABLE AS", template_pattern(FLOOR)))


class Bench(BenchDatabase):
    """The server; the incident is prepared once in a template database, each measurement works on a copy."""

    def __init__(self, uri: str, rows: int, sessions: int):
        super().__init__(uri)
        self.rows, self.sessions = rows, sessions
        self.template = f"{database_name(uri)}_incident"

    def prepare(self) -> dict:
        """Night 1 imports the season; the incident fills practice_times; night 2 validates (untimed)."""
        started = time.perf_counter()
        uri = self.fresh(self.template)
        with psycopg.connect(uri, autocommit=True) as conn:
            ensure_schema(conn)
        for task in TASKS:
            run_task(uri, task, NIGHT_1, source_dir=str(DEMO_DATA))
        with psycopg.connect(uri, autocommit=True) as conn:
            # The old system's table had no natural key; its foreign keys to teams and leagues hold.
            conn.execute(
                sql.SQL("ALTER TABLE public.practice_times DROP CONSTRAINT {}").format(sql.Identifier(KEY.name))
            )
            written = conn.execute(FILL, {"rows": self.rows, "sessions": self.sessions}).rowcount
            expect(written == self.rows, f"fill wrote {written} of {self.rows} rows")
            fks = conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.practice_times'::regclass "
                "AND contype = 'f' AND convalidated"
            ).fetchone()[0]
            expect(fks == 2, f"practice_times has {fks} valid foreign keys, 2 expected")
            # What autovacuum would have done to a table that sat there: hint bits set, statistics.
            conn.execute("VACUUM (ANALYZE)")
        validate = run_task(uri, "validate_constraints", NIGHT_2, source_dir=str(DEMO_DATA))
        finding = next(f for f in validate["report"]["constraints"]["findings"] if f["constraint"] == KEY.name)
        expect(finding["blocking_rows"] == self.rows - self.sessions, f"validate saw {finding}")
        return {"prepare_s": time.perf_counter() - started}

    def fresh(self, name: str) -> str:
        drop_database(self.uri, name)
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_database(self.uri, name)

    def copy(self) -> str:
        uri = clone_database(self.uri, self.template, f"{self.template}_run")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        return uri

    def floor(self) -> float:
        """CREATE TABLE AS a copy of practice_times, committed."""
        uri = self.copy()
        with psycopg.connect(uri) as conn:
            seconds, _ = timed(lambda: run_floor(conn))
            copied = conn.execute("SELECT count(*) FROM public.practice_copy").fetchone()[0]
        expect(copied == self.rows, "the floor's copy lacks rows")
        return seconds

    def ours(self, wrap=None) -> tuple[float, dict]:
        """The deduplicate task as the DAG runs it (every natural key, in order), then checked."""
        uri = self.copy()
        result = run_task(uri, "deduplicate", NIGHT_2, source_dir=str(DEMO_DATA), wrap=wrap)
        verify(uri, result["report"]["tables"]["practice_times"], self.rows, self.sessions)
        return result["seconds"], result

    def close(self) -> None:
        super().close()
        drop_database(self.uri, f"{self.template}_run")
        drop_database(self.uri, self.template)


def verify(uri: str, report: dict, rows: int, sessions: int) -> None:
    removed = rows - sessions
    expect(report["duplicates"] == removed, f"deduplicate found {report['duplicates']} of {removed} duplicates")
    with psycopg.connect(uri) as conn:
        kept = [r[0] for r in conn.execute("SELECT id FROM public.practice_times ORDER BY id").fetchall()]
        archived = conn.execute("SELECT count(*) FROM etl_archive.practice_times").fetchone()[0]
        constraints = conn.execute(
            "SELECT count(*) FILTER (WHERE conname = %s AND contype = 'u'), count(*) FILTER (WHERE contype = 'f' "
            "AND convalidated) FROM pg_constraint WHERE conrelid = 'public.practice_times'::regclass",
            (KEY.name,),
        ).fetchone()
    expect(kept == list(range(1, sessions + 1)), "the survivors are not the lowest id of each session")
    expect(archived == removed, f"{archived} rows archived, {removed} expected")
    expect(constraints == (1, 2), f"practice_times constraints after: {constraints} (unique, valid foreign keys)")


def run_floor(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(FLOOR)
    conn.commit()


def measure(bench: Bench, repeat: int) -> dict:
    setup = bench.prepare()
    print(
        f"  set-up: season, {bench.rows:,} incident rows, night 2 validated; {setup['prepare_s']:.0f}s", file=sys.stderr
    )
    samples: dict[str, list[float]] = {"floor": [], "ours": []}
    plans = set()
    for rep in range(repeat):  # alternated, each on a fresh copy, so drift on the machine spreads over both
        samples["floor"].append(bench.floor())
        seconds, result = bench.ours()
        samples["ours"].append(seconds)
        plans.add(result["report"]["tables"]["practice_times"]["plan"])
        print(
            f"  run {rep + 1}/{repeat}: floor {samples['floor'][-1]:.3f}s, ours {seconds:.3f}s",
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
        **setup,
    }


def profile(bench: Bench) -> dict:
    """One profiled floor and one profiled deduplicate: where the time (and the WAL) goes."""
    with StatementProfile(bench.uri, statement_name, REST, count_calls=True) as timer:
        uri = bench.copy()
        with psycopg.connect(uri) as conn:
            timer.record("floor", conn, lambda: run_floor(conn))
        bench.ours(wrap=lambda task, conn, work: timer.record("ours", conn, work))
    return timer.runs


REST = "rest (Python, commit)"


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
        "target": f"deduplicate within {TARGET_FLOOR_RATIO:g}x of its floor at {r['rows']:,} rows, keys present",
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
