"""Benchmark deduplicate on the 3.47 M-row practice_times incident against a table-copy floor (docs/benchmarks.md).

A measurement, not a test: it exits non-zero only on errors and prints PASS/MISS for the target.
Run: PYTHONPATH=plugins .venv/bin/python bench/bench_dedup.py [--rows 347011] [--json PATH] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import signal
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import psycopg
from common import scratch_database, server_uri
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


class Bench:
    """One scratch database holding the incident table; every measurement starts from a fresh fill."""

    def __init__(self, uri: str, rows: int, sessions: int):
        self.uri, self.rows, self.sessions = uri, rows, sessions
        self.admin = psycopg.connect(uri, autocommit=True)
        self.can_checkpoint = True
        self.league_id: int | None = None

    def close(self) -> None:
        self.admin.close()

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.uri, autocommit=False)

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

    def quiesce(self) -> None:
        """Flush dirty pages first, so a checkpoint owed to earlier work does not land in a timing."""
        if not self.can_checkpoint:
            return
        try:
            self.admin.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            self.can_checkpoint = False

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


# --profile: seconds (and WAL bytes) per statement, named as in include/sql/*.sql, filled by StatementTimer.
SPENT: dict[str, float] = defaultdict(float)
WAL: dict[str, int] = defaultdict(int)


def _template_pattern(template: str) -> re.Pattern:
    """A statement template as a regex: its text literally, any {placeholder} as anything."""
    parts = re.split(r"(\{\{|\}\}|\{\w*\})", template)
    pattern = "".join(
        "{" if p == "{{" else "}" if p == "}}" else ".*?" if p.startswith("{") else re.escape(p) for p in parts
    )
    return re.compile(pattern, re.DOTALL)


PATTERNS = [
    (f"{family}.{name}", _template_pattern(text))
    for family in ("dedup", "archive", "constraints")
    for name, text in statements(family).items()
]


def statement_name(text: str) -> str:
    text = text.strip()
    if text == FLOOR:
        return "floor CREATE TABLE AS"
    for name, pattern in PATTERNS:
        if pattern.fullmatch(text):
            return name
    return "unnamed: " + " ".join(text.split()[:3])


class StatementTimer(psycopg.Cursor):
    """Times every execute of deduplicate without copying its steps, so they cannot drift."""

    wal_probe: psycopg.Connection | None = None  # a second connection reading the WAL position

    def execute(self, query, params=None, **kwargs):
        before = self._wal()
        start = time.perf_counter()
        try:
            return super().execute(query, params, **kwargs)
        finally:
            spent = time.perf_counter() - start
            name = statement_name(query if isinstance(query, str) else query.as_string(self))
            SPENT[name] += spent
            WAL[name] += self._wal() - before

    def _wal(self) -> int:
        if self.wal_probe is None:
            return 0
        return int(self.wal_probe.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()[0])


def profile(bench: Bench) -> dict[str, dict[str, float]]:
    """One profiled floor and one profiled deduplicate: where the time (and the WAL) goes."""
    runs: dict[str, dict[str, float]] = {}
    probe = psycopg.connect(bench.uri, autocommit=True)
    try:
        probe.execute("SELECT pg_current_wal_insert_lsn()")
        StatementTimer.wal_probe = probe
    except psycopg.Error:  # WAL figures are left out rather than failing the run
        StatementTimer.wal_probe = None

    def record(name: str, conn: psycopg.Connection, work: Callable[[], object]) -> object:
        SPENT.clear()
        WAL.clear()
        conn.cursor_factory = StatementTimer
        total, result = timed(work)
        runs[name] = {
            **SPENT,
            "rest (Python, commit)": total - sum(SPENT.values()),
            "total": total,
            "wal_mib": {k: v / 2**20 for k, v in WAL.items()},
        }
        return result

    try:
        bench.refill()
        with bench.connect() as conn:
            record("floor", conn, lambda: run_floor(conn))
        bench.admin.execute("DROP TABLE public.practice_copy")
        bench.quiesce()
        with bench.connect() as conn:
            report = record("ours", conn, lambda: deduplicate(conn, KEY, RUN_ID))
        bench.verify(report)
    finally:
        StatementTimer.wal_probe = None
        probe.close()
    return runs


def print_profile(rows: int, runs: dict[str, dict]) -> None:
    rest = "rest (Python, commit)"
    steps = [s for s in dict.fromkeys(k for r in runs.values() for k in r) if s not in ("total", "wal_mib", rest)]
    steps = [s for s in steps if max(r.get(s, 0.0) for r in runs.values()) >= 0.001] + [rest, "total"]
    with_wal = any(r["wal_mib"] for r in runs.values())
    width = max(map(len, steps))
    print(f"profile at {rows:,} rows (one run each, seconds" + (", WAL MiB)" if with_wal else ")"))
    print(f"{'step':<{width}}  " + "  ".join(f"{name:>9}" + ("  WAL MiB" if with_wal else "") for name in runs))
    for step in steps:
        cells = []
        for r in runs.values():
            cells.append(f"{r[step]:>9.3f}" if step in r else f"{'-':>9}")
            if with_wal:
                wal = sum(r["wal_mib"].values()) if step == "total" else r["wal_mib"].get(step)
                cells.append(f"{wal:>9.1f}" if wal is not None else f"{'-':>9}")
        print(f"{step:<{width}}  " + "  ".join(cells))


def run_floor(conn: psycopg.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute(FLOOR)
    conn.commit()


def timed(work: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def expect(ok: bool, message: str) -> None:
    """A wrong row count means the timing measured the wrong work: stop rather than report it."""
    if not ok:
        raise RuntimeError(f"benchmark check failed: {message}")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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


def positive(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


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

    # A terminated run still drops its database and stops its embedded server (finally, atexit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started = time.perf_counter()
    uri, source = server_uri()
    with scratch_database(uri, "bench_dedup") as (db_uri, version):
        bench = Bench(db_uri, args.rows, args.sessions)
        try:
            print(f"server: PostgreSQL {version}, {source}; {os.cpu_count()} cores; median of {args.repeat} run(s)")
            result = measure(bench, args.repeat)
            breakdown = profile(bench) if args.profile else None
        finally:
            bench.close()

    peak = peak_rss_mib()
    print()
    print_table(result)
    print()
    if breakdown:
        print_profile(args.rows, breakdown)
        print()
    print(f"peak RSS of the benchmark process: {peak:.0f} MiB")
    if not bench.can_checkpoint:
        print("note: no CHECKPOINT privilege, timings may include checkpoints owed to earlier runs")
    check = target(result)
    print(f"{check['status']:4}  {check['target']}: {check['value']}")
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f}s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "server": {"version": version, "source": source},
                    "machine": {
                        "cores": os.cpu_count(),
                        "python": platform.python_version(),
                        "psycopg": psycopg.__version__,
                    },
                    "repeat": args.repeat,
                    "result": result,
                    "peak_rss_mib": peak,
                    "target": check,
                    "profile": breakdown,
                    "elapsed_s": elapsed,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
