"""Benchmark the restore_mapping task on 1 M user rows, 10 % of them orphaned by the old ETL's churn,
in the state the DAG leaves, against one UPDATE ... FROM per table over a ready map (docs/benchmarks.md).

A measurement, not a test: it exits non-zero only on errors and prints PASS/MISS for the target.
Run: .venv/bin/python bench/bench_repair.py [--rows 100000] [--repeat 3] [--json PATH] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import churn
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
from pipeline import run_task
from psycopg import sql

from league_import.repair import STRATEGIES

ROWS = 1_000_000
REPEAT = 3
TARGET_FLOOR_RATIO = 1.5

# The floor: the old-to-new id map given (built untimed), the least that re-pointing the orphans
# costs: one UPDATE ... FROM per user table, and the commit.
FLOOR_MAP = """
CREATE TABLE bench.floor_map AS
SELECT k.team_id AS old_id, t.id AS new_id
FROM etl.team_key_map k
JOIN public.leagues l ON l.code = k.league_code
JOIN public.series s ON s.league_id = l.id AND s.series_key = k.series_key
JOIN public.teams t ON t.league_id = l.id AND t.series_id = s.id AND t.team_key = k.team_key
WHERE t.id <> k.team_id;
ANALYZE bench.floor_map;
"""
FLOOR_UPDATE = "UPDATE {table} t SET team_id = m.new_id FROM bench.floor_map m WHERE t.team_id = m.old_id"
EXTRA_NAMES.append(("floor UPDATE ... FROM", template_pattern(FLOOR_UPDATE)))
REST = "rest (Python, commit)"


class Bench(BenchDatabase):
    """The churned state is prepared once in a template database; each measurement works on a copy."""

    def __init__(self, uri: str, rows: int):
        super().__init__(uri)
        self.rows = rows
        self.template = f"{database_name(uri)}_churned"
        self.facts: dict = {}

    def prepare(self) -> dict:
        """The churn (bench/churn.py), then night 2 up to restore_mapping, untimed."""
        drop_database(self.uri, self.template)
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        uri = with_database(self.uri, self.template)
        self.facts = churn.prepare(uri, self.rows)
        churn.to_repair(uri)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute(FLOOR_MAP)
            mapped = conn.execute("SELECT count(*) FROM bench.floor_map").fetchone()[0]
            conn.execute("VACUUM (ANALYZE)")
        expect(mapped == self.facts["teams"], f"the floor's map has {mapped} of {self.facts['teams']} teams")
        return self.facts

    def copy(self) -> str:
        uri = clone_database(self.uri, self.template, f"{self.template}_run")
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        return uri

    def floor(self, timer: StatementProfile | None = None) -> float:
        uri = self.copy()
        with psycopg.connect(uri) as conn:
            work = lambda: run_floor(conn)  # noqa: E731
            seconds, moved = timed(lambda: timer.record("floor", conn, work) if timer else work())
            expect(moved == self.facts["orphans"], f"the floor moved {moved} of {self.facts['orphans']} rows")
            self.verify(conn, "floor")
        return seconds

    def ours(self, timer: StatementProfile | None = None) -> float:
        """The restore_mapping task as the DAG runs it, then checked."""
        uri = self.copy()
        wrap = (lambda task, conn, work: timer.record("ours", conn, work)) if timer else None
        result = run_task(uri, "restore_mapping", churn.NIGHT_2, source_dir=str(churn.DEMO_DATA), wrap=wrap)
        report, n = result["report"], self.facts["orphans"]
        expect(report["orphans"] == n, f"restore_mapping found {report['orphans']} of {n} orphans")
        expected = {s: n if s == "key_map" else 0 for s in STRATEGIES}
        expect(report["by_strategy"] == expected, f"decided {report['by_strategy']}, expected {expected}")
        with psycopg.connect(uri) as conn:
            logged = conn.execute(
                "SELECT count(*) FROM etl.repairs WHERE run_id = %s AND strategy = 'key_map'", (churn.NIGHT_2,)
            ).fetchone()[0]
            expect(logged == n, f"{logged} key_map decisions in etl.repairs, {n} expected")
            self.verify(conn, "restore_mapping")
        return result["seconds"]

    def verify(self, conn: psycopg.Connection, who: str) -> None:
        wrong = churn.misplaced(conn, self.facts["teams"], self.facts["rows_by_table"])
        expect(not any(wrong.values()), f"{who}: user rows lost or on the wrong team: {wrong}")
        expect(churn.orphan_count(conn) == 0, f"{who}: orphans left")

    def close(self) -> None:
        super().close()
        drop_database(self.uri, f"{self.template}_run")
        drop_database(self.uri, self.template)


def run_floor(conn: psycopg.Connection) -> int:
    moved = 0
    with conn.cursor() as cur:
        for table in churn.USER_TABLES:
            moved += cur.execute(sql.SQL(FLOOR_UPDATE).format(table=sql.Identifier("public", table))).rowcount
    conn.commit()
    return moved


def measure(bench: Bench, repeat: int) -> dict:
    facts = bench.prepare()
    print(
        f"  set-up: {facts['teams']} teams re-keyed by the churn, {facts['rows']:,} user rows ("
        + ", ".join(f"{t} {n:,}" for t, n in facts["rows_by_table"].items())
        + f"), {facts['orphans']:,} orphans; {facts['prepare_s']:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    samples: dict[str, list[float]] = {"floor": [], "ours": []}
    for rep in range(repeat):  # alternated, each on a fresh copy, so drift on the machine spreads over both
        samples["floor"].append(bench.floor())
        samples["ours"].append(bench.ours())
        print(
            f"  run {rep + 1}/{repeat}: floor {samples['floor'][-1]:.3f}s, ours {samples['ours'][-1]:.3f}s",
            file=sys.stderr,
            flush=True,
        )
    floor, ours = statistics.median(samples["floor"]), statistics.median(samples["ours"])
    return {**facts, "floor_s": floor, "ours_s": ours, "ours_over_floor": ours / floor, "samples": samples}


def profile(bench: Bench) -> dict:
    with StatementProfile(bench.uri, statement_name, REST, count_calls=True) as timer:
        bench.floor(timer)
        bench.ours(timer)
    return timer.runs


def print_table(r: dict) -> None:
    header = ("user rows", "orphans", "floor (s)", "ours (s)", "ours/floor")
    line = (f"{r['rows']:,}", f"{r['orphans']:,}", f"{r['floor_s']:.3f}", f"{r['ours_s']:.3f}")
    line += (f"{r['ours_over_floor']:.2f}x",)
    widths = [max(len(h), len(c)) for h, c in zip(header, line)]
    for cells in (header, line):
        print("  ".join(cell.rjust(w) for cell, w in zip(cells, widths)))


def target(r: dict) -> dict:
    ratio = r["ours_over_floor"]
    return {
        "target": f"restore_mapping within {TARGET_FLOOR_RATIO:g}x of its floor at {r['rows']:,} user rows",
        "value": f"{ratio:.2f}x",
        "status": "PASS" if ratio <= TARGET_FLOOR_RATIO else "MISS",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive, default=ROWS, help=f"user rows in all (default {ROWS:,})")
    parser.add_argument("--repeat", type=positive, default=REPEAT, help="runs of each; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help="also time each statement in one extra run")
    args = parser.parse_args(argv)
    if min(churn.split(args.rows).values()) < churn.ORPHAN_EVERY:
        parser.error(f"--rows must give every user table at least {churn.ORPHAN_EVERY} rows (--rows 100 or more)")
    return run(
        args,
        "bench_repair",
        make_bench=lambda uri: Bench(uri, args.rows),
        measure=lambda bench: measure(bench, args.repeat),
        print_table=print_table,
        profile=profile,
        print_profile=lambda runs: print_statement_profile(f"{args.rows:,} user rows", runs, REST),
        targets=lambda result, _peak: target(result),
    )


if __name__ == "__main__":
    sys.exit(main())
