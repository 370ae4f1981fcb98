"""Benchmark the deduplicate task on the 3.47 M-row practice_times incident, in the state the DAG
leaves (the season imported, foreign keys present), against floors doing the same work
(docs/benchmarks.md). Both plans are measured, each against its own floor, within 1.3x:

- truncate_reload (nothing points at the table: the incident's plan): the floor is one scan that
  finds the survivors and CREATE TABLE AS of the removed rows;
- delete (a table points at it, so it is never truncated): the same, plus the one statement that
  deletes the removed rows (the foreign key pointing at the table in place: each deleted row is
  checked against it, as any delete is) and the UNIQUE key built on what remains. The first
  floor is reported beside it.

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
# The floor: what any deduplication must do. One scan that finds each session's survivor (the
# lowest id), and one copy of the removed rows, the archive (CREATE TABLE AS).
FLOOR = (
    "CREATE TEMP TABLE floor_keep AS SELECT min(id) AS keep_id FROM public.practice_times "
    "GROUP BY team_id, day_of_week, start_time, end_time, location",
    "CREATE TABLE public.practice_copy AS SELECT * FROM public.practice_times "
    "WHERE id NOT IN (SELECT keep_id FROM floor_keep)",
)
# A table that cannot be truncated: the removed rows deleted in one statement, then its key.
DELETE_FLOOR = (
    "DELETE FROM public.practice_times WHERE id NOT IN (SELECT keep_id FROM floor_keep)",
    "ALTER TABLE public.practice_times ADD CONSTRAINT floor_key UNIQUE NULLS NOT DISTINCT "
    "(team_id, day_of_week, start_time, end_time, location)",
)
EXTRA_NAMES.extend(
    [
        ("floor scan", template_pattern(FLOOR[0])),
        ("floor CREATE TABLE AS", template_pattern(FLOOR[1])),
        ("floor DELETE", template_pattern(DELETE_FLOOR[0])),
        ("floor UNIQUE key", template_pattern(DELETE_FLOOR[1])),
    ]
)
# The delete plan: a table that points at practice_times (empty: no reference to move) keeps it
# from being truncated.
REFERENCED = (
    "CREATE TABLE public.practice_notes (id serial PRIMARY KEY, practice_id bigint REFERENCES public.practice_times)"
)
PLANS = {"truncate_reload": "nothing points at the table", "delete": "a table points at it"}


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

    def copy(self, plan: str = "truncate_reload") -> str:
        uri = clone_database(self.uri, self.template, f"{self.template}_run")
        with psycopg.connect(uri, autocommit=True) as conn:
            if plan == "delete":
                conn.execute(REFERENCED)
            conn.execute("CHECKPOINT")
        return uri

    def floor(self, plan: str = "truncate_reload") -> float:
        """The survivors found in one scan, the removed rows copied (CREATE TABLE AS); for the
        delete plan, deleted and the key added; committed."""
        uri = self.copy(plan)
        with psycopg.connect(uri) as conn:
            seconds, _ = timed(lambda: run_floor(conn, plan))
            copied = conn.execute("SELECT count(*) FROM public.practice_copy").fetchone()[0]
            left = conn.execute("SELECT count(*) FROM public.practice_times").fetchone()[0]
        expect(copied == self.rows - self.sessions, "the floor's copy lacks rows")
        expect(left == (self.sessions if plan == "delete" else self.rows), "the floor's delete left other rows")
        return seconds

    def ours(self, plan: str = "truncate_reload", wrap=None) -> tuple[float, dict]:
        """The deduplicate task as the DAG runs it (every natural key, in order), then checked."""
        uri = self.copy(plan)
        result = run_task(uri, "deduplicate", NIGHT_2, source_dir=str(DEMO_DATA), wrap=wrap)
        report = result["report"]["tables"]["practice_times"]
        expect(report["plan"] == plan, f"deduplicate took plan {report['plan']}, {plan} expected")
        verify(uri, report, self.rows, self.sessions)
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


def run_floor(conn: psycopg.Connection, plan: str = "truncate_reload") -> None:
    with conn.cursor() as cur:
        for statement in (*FLOOR, *(DELETE_FLOOR if plan == "delete" else ())):
            cur.execute(statement)
    conn.commit()


def measure(bench: Bench, repeat: int) -> dict:
    setup = bench.prepare()
    print(
        f"  set-up: season, {bench.rows:,} incident rows, night 2 validated; {setup['prepare_s']:.0f}s", file=sys.stderr
    )
    samples: dict[str, list[float]] = {k: [] for plan in PLANS for k in (f"floor {plan}", plan)}
    for rep in range(repeat):  # alternated, each on a fresh copy, so drift on the machine spreads over all
        for plan in PLANS:
            samples[f"floor {plan}"].append(bench.floor(plan))
            samples[plan].append(bench.ours(plan)[0])
        print(
            f"  run {rep + 1}/{repeat}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in samples.items()),
            file=sys.stderr,
            flush=True,
        )
    plans = {}
    for plan in PLANS:
        seconds, floor = statistics.median(samples[plan]), statistics.median(samples[f"floor {plan}"])
        plans[plan] = {"seconds": seconds, "floor_s": floor, "over_floor": seconds / floor}
    plans["delete"]["over_copy_floor"] = plans["delete"]["seconds"] / plans["truncate_reload"]["floor_s"]
    return {
        "rows": bench.rows,
        "sessions": bench.sessions,
        "archived": bench.rows - bench.sessions,
        "floor_s": plans["truncate_reload"]["floor_s"],
        "plans": plans,
        "samples": samples,
        **setup,
    }


def profile(bench: Bench) -> dict:
    """One profiled floor and one profiled deduplicate: where the time (and the WAL) goes."""
    with StatementProfile(bench.uri, statement_name, REST, count_calls=True) as timer:
        for plan in PLANS:
            uri = bench.copy(plan)
            with psycopg.connect(uri) as conn:
                timer.record(f"floor {plan}", conn, lambda conn=conn, plan=plan: run_floor(conn, plan))
            bench.ours(plan, wrap=lambda task, conn, work, plan=plan: timer.record(plan, conn, work))
    return timer.runs


REST = "rest (Python, commit)"


def print_table(r: dict) -> None:
    header = ("plan", "when", "rows", "archived", "floor (s)", "ours (s)", "ours/floor")
    lines = [
        (plan, PLANS[plan], f"{r['rows']:,}", f"{r['archived']:,}", f"{x['floor_s']:.3f}", f"{x['seconds']:.3f}",
         f"{x['over_floor']:.2f}x")
        for plan, x in r["plans"].items()
    ]  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    for cells in (header, *lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(cells, widths)))


def targets(r: dict) -> list[dict]:
    """Each plan within 1.3x of the floor that does its work; the delete plan against the copy
    plan's floor reported beside it (it must delete millions of rows, each checked against the
    table that points at it, which CREATE TABLE AS never does)."""
    out = []
    for plan, x in r["plans"].items():
        out.append(
            {
                "target": f"deduplicate, plan {plan} ({PLANS[plan]}), within {TARGET_FLOOR_RATIO:g}x of its floor "
                f"at {r['rows']:,} rows, keys present",
                "value": f"{x['over_floor']:.2f}x",
                "status": "PASS" if x["over_floor"] <= TARGET_FLOOR_RATIO else "MISS",
            }
        )
    delete = r["plans"]["delete"]
    out.append(
        {
            "target": "deduplicate, plan delete, against the truncate_reload floor (scan + CREATE TABLE AS)",
            "value": f"{delete['seconds']:.1f} s, {delete['over_copy_floor']:.1f}x",
            "status": "REPORTED",
        }
    )
    return out


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
        targets=lambda result, _peak: targets(result),
    )


if __name__ == "__main__":
    sys.exit(main())
