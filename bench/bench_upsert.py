"""Benchmark upsert_teams against a COPY floor and the old row-by-row upsert (docs/benchmarks.md).

A measurement, not a test: it exits non-zero only on errors and prints PASS/MISS for the targets.
Run: PYTHONPATH=plugins .venv/bin/python bench/bench_upsert.py [--sizes 1000,10000] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import psycopg
from common import BenchDatabase, expect, peak_rss_mib, run, timed
from psycopg import sql

from league_import.constraints import check_constraints
from league_import.schema import ensure_schema
from league_import.sources import STATS_NUMBERS, LeagueSource
from league_import.sql import statements
from league_import.upsert import TEAM_COLUMNS, check_deactivation_guard, load_league

SIZES = (1_000, 10_000, 100_000)
REPEAT = 3
OLD_BATCH = 50
TARGET_SIZE = 100_000
TARGET_FLOOR_RATIO = 1.5
TARGET_OLD_SPEEDUP = 50.0
TARGET_PEAK_MIB = 500.0
CODE = "BENCH"

FLOOR_TABLE = """
CREATE UNLOGGED TABLE public.floor_teams (
    series_key text NOT NULL, series_name text NOT NULL, club text NOT NULL, club_key text NOT NULL,
    team_name text NOT NULL, team_key text NOT NULL, sub_team text NOT NULL
)
"""
FLOOR_INSERT = """
INSERT INTO public.teams (league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
SELECT %(league_id)s, c.id, s.id, f.team_name, f.team_key, f.sub_team, true
FROM public.floor_teams f
JOIN public.series s ON s.league_id = %(league_id)s AND s.series_key = f.series_key
JOIN public.clubs c ON c.name_key = f.club_key
"""
# The approach upsert_teams replaced: one statement per team, ids looked up by natural key.
OLD_UPSERT = """
INSERT INTO public.teams AS t (league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
VALUES (%(league_id)s,
        (SELECT id FROM public.clubs WHERE name_key = %(club_key)s),
        (SELECT id FROM public.series WHERE league_id = %(league_id)s AND series_key = %(series_key)s),
        %(team_name)s, %(team_key)s, %(sub_team)s, true)
ON CONFLICT (league_id, series_id, team_key) DO UPDATE
SET team_name = EXCLUDED.team_name,
    club_id = EXCLUDED.club_id,
    sub_team = EXCLUDED.sub_team,
    is_active = true,
    updated_at = now()
"""
DATA_TABLES = ("leagues", "clubs", "series", "teams", "schedule", "series_stats")


def synthetic_league(n: int) -> LeagueSource:
    """N teams, 10 per series and 5 per club, as the sources would normalise them; deterministic."""
    n_clubs = max(1, n // 5)
    rows = {c: [] for c in TEAM_COLUMNS}
    for i in range(n):
        series = str(i // 10 + 1)
        club_no, sub_no = i % n_clubs, i // n_clubs
        club = f"Club {club_no:06d}"
        sub = chr(ord("A") + sub_no % 26) * (sub_no // 26 + 1)
        rows["series_key"].append(series)
        rows["series_name"].append(f"Series {series}")
        rows["club"].append(club)
        rows["club_key"].append(club.casefold())
        rows["team_name"].append(f"{club} {sub} {series}")
        rows["team_key"].append(f"{club.casefold()} #{sub.casefold()}")
        rows["sub_team"].append(sub)
    schedule = pd.DataFrame(columns=["series_key", "match_date", "match_time", "home_key", "away_key", "location"])
    stats = pd.DataFrame(columns=["series_key", "team_key", *STATS_NUMBERS.values()])
    return LeagueSource(code=CODE, teams=pd.DataFrame(rows), schedule=schedule, stats=stats, counts={})


class Bench(BenchDatabase):
    """One scratch database; every measurement starts from freshly created tables."""

    def reset(self) -> None:
        """Drop and recreate the schema, so no measurement sees another's rows, bloat or statistics."""
        self.admin.execute("DROP SCHEMA IF EXISTS public, etl, etl_archive CASCADE")
        self.admin.execute("CREATE SCHEMA public")
        with self.connect() as conn:
            # As validate_constraints leaves them: tables, then their natural keys and foreign keys.
            ensure_schema(conn)
            check_constraints(conn)

    def settle(self) -> None:
        """What a day between two nightly runs gives the tables: vacuumed and analysed by autovacuum."""
        for table in DATA_TABLES:
            self.admin.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier("public", table)))
        self.quiesce()

    def seed_parents(self, league: LeagueSource) -> int:
        """League, series and clubs rows, untimed, so the floor and the old approach only write teams."""
        teams = league.teams
        series = teams.drop_duplicates("series_key")
        clubs = teams.drop_duplicates("club_key")
        with self.connect() as conn:
            insert_league = "INSERT INTO public.leagues (code) VALUES (%s) RETURNING id"
            league_id = conn.execute(insert_league, (CODE,)).fetchone()[0]
            conn.execute(
                "INSERT INTO public.series (league_id, name, series_key) "
                "SELECT %s, unnest(%s::text[]), unnest(%s::text[])",
                (league_id, list(series.series_name), list(series.series_key)),
            )
            conn.execute(
                "INSERT INTO public.clubs (name, name_key) SELECT unnest(%s::text[]), unnest(%s::text[])",
                (list(clubs.club), list(clubs.club_key)),
            )
        return league_id

    def team_count(self) -> int:
        return self.admin.execute("SELECT count(*) FROM public.teams").fetchone()[0]

    def ours(self, league: LeagueSource) -> tuple[float, float]:
        """First load into empty tables, then the same load again (the nightly no-change run)."""
        n = len(league.teams)
        self.reset()
        self.quiesce()
        with self.connect() as conn:
            first, report = timed(lambda: run_ours(conn, league))
        expect(report["teams_created"] == n, f"first load created {report['teams_created']} of {n} teams")
        self.settle()
        with self.connect() as conn:
            second, report = timed(lambda: run_ours(conn, league))
        expect(report["teams_unchanged"] == n, f"second load left {report['teams_unchanged']} of {n} unchanged")
        return first, second

    def floor(self, league: LeagueSource) -> float:
        """COPY into an unlogged table, then one plain INSERT ... SELECT: the least work for N team rows."""
        self.reset()
        league_id = self.seed_parents(league)
        self.admin.execute(FLOOR_TABLE)
        self.quiesce()
        with self.connect() as conn:
            seconds, written = timed(lambda: run_floor(conn, league, league_id))
        expect(written == len(league.teams), f"floor wrote {written} of {len(league.teams)} teams")
        return seconds

    def old(self, league: LeagueSource, limit: int | None) -> tuple[float, bool]:
        """One upsert per team, a commit every 50; optionally on the first `limit` teams, scaled up."""
        n = len(league.teams)
        rows = league.teams.iloc[: limit or n]
        self.reset()
        league_id = self.seed_parents(league)
        self.quiesce()
        with self.connect() as conn:
            seconds, _ = timed(lambda: run_old(conn, rows, league_id))
        expect(self.team_count() == len(rows), f"old approach wrote {self.team_count()} of {len(rows)} teams")
        return seconds * n / len(rows), len(rows) < n


# --profile: seconds per statement, named as in include/sql/upsert.sql, filled by StatementTimer.
SPENT: dict[str, float] = defaultdict(float)
_COPY_TABLE = re.compile(r'COPY\s+"?([\w.]+)')


class StatementTimer(psycopg.Cursor):
    """Times every execute and COPY of load_league without copying its steps, so they cannot drift."""

    names = {**{text: name for name, text in statements("upsert").items()}, FLOOR_INSERT: "floor INSERT ... SELECT"}

    def execute(self, query, params=None, **kwargs):
        start = time.perf_counter()
        try:
            return super().execute(query, params, **kwargs)
        finally:
            SPENT[self.names.get(query, "other statement")] += time.perf_counter() - start

    @contextlib.contextmanager
    def copy(self, statement, params=None, **kwargs) -> Iterator[psycopg.Copy]:
        start = time.perf_counter()
        with super().copy(statement, params, **kwargs) as copy:
            yield copy
        text = statement if isinstance(statement, str) else statement.as_string(self)
        match = _COPY_TABLE.match(text)
        SPENT[f"COPY {match.group(1) if match else '?'}"] += time.perf_counter() - start


def profile(bench: Bench, n: int) -> dict[str, dict[str, float]]:
    """One profiled first load, second load and floor at size n: where the time goes."""
    league = synthetic_league(n)
    runs: dict[str, dict[str, float]] = {}

    def record(name: str, conn: psycopg.Connection, work: Callable[[], object]) -> None:
        SPENT.clear()
        conn.cursor_factory = StatementTimer
        total, _ = timed(work)
        runs[name] = {**SPENT, "rest (Python, commit)": total - sum(SPENT.values()), "total": total}

    bench.reset()
    bench.quiesce()
    with bench.connect() as conn:
        record("first load", conn, lambda: run_ours(conn, league))
    bench.settle()
    with bench.connect() as conn:
        record("second load", conn, lambda: run_ours(conn, league))
    bench.reset()
    league_id = bench.seed_parents(league)
    bench.admin.execute(FLOOR_TABLE)
    bench.quiesce()
    with bench.connect() as conn:
        record("floor", conn, lambda: run_floor(conn, league, league_id))
    return runs


def print_profile(n: int, runs: dict[str, dict[str, float]]) -> None:
    steps = [s for s in dict.fromkeys(k for r in runs.values() for k in r) if s != "total"] + ["total"]
    steps = [s for s in steps if s == "total" or max(r.get(s, 0.0) for r in runs.values()) >= 0.001]
    width = max(map(len, steps))
    print(f"profile at N={n:,} (one run each, seconds)")
    print(f"{'step':<{width}}  " + "  ".join(f"{name:>11}" for name in runs))
    for step in steps:
        cells = (f"{r[step]:.3f}" if step in r else "-" for r in runs.values())
        print(f"{step:<{width}}  " + "  ".join(f"{c:>11}" for c in cells))


def run_ours(conn: psycopg.Connection, league: LeagueSource) -> dict:
    check_deactivation_guard(conn, [league], 1.0)
    return load_league(conn, league)


def run_floor(conn: psycopg.Connection, league: LeagueSource, league_id: int) -> int:
    """Rows from the same frame by the fastest route measured (column lists zipped, ~5x itertuples)."""
    copy = sql.SQL("COPY public.floor_teams ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, TEAM_COLUMNS))
    )
    with conn.cursor() as cur:
        with cur.copy(copy) as cp:
            for row in zip(*(league.teams[column].tolist() for column in TEAM_COLUMNS)):
                cp.write_row(row)
        written = cur.execute(FLOOR_INSERT, {"league_id": league_id}).rowcount
    conn.commit()
    return written


def run_old(conn: psycopg.Connection, teams: pd.DataFrame, league_id: int) -> None:
    columns = ["series_key", "club_key", "team_name", "team_key", "sub_team"]
    with conn.cursor() as cur:
        for i, (series_key, club_key, team_name, team_key, sub_team) in enumerate(
            teams.loc[:, columns].itertuples(index=False, name=None), start=1
        ):
            cur.execute(
                OLD_UPSERT,
                {
                    "league_id": league_id,
                    "series_key": series_key,
                    "club_key": club_key,
                    "team_name": team_name,
                    "team_key": team_key,
                    "sub_team": sub_team,
                },
            )
            if i % OLD_BATCH == 0:
                conn.commit()
    conn.commit()


def measure(bench: Bench, n: int, repeat: int, old_max: int | None) -> dict:
    league = synthetic_league(n)
    limit = old_max if old_max and old_max < n else None
    samples: dict[str, list[float]] = {"ours": [], "second": [], "floor": [], "old": []}
    extrapolated = False
    # Interleaved, so drift on the machine spreads over all three approaches alike.
    for rep in range(repeat):
        first, second = bench.ours(league)
        samples["ours"].append(first)
        samples["second"].append(second)
        samples["floor"].append(bench.floor(league))
        old, extrapolated = bench.old(league, limit)
        samples["old"].append(old)
        print(
            f"  n={n} run {rep + 1}/{repeat}: ours {first:.3f}s, second {second:.3f}s, "
            f"floor {samples['floor'][-1]:.3f}s, old {old:.2f}s{' (extrapolated)' if extrapolated else ''}",
            file=sys.stderr,
            flush=True,
        )
    median = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "n": n,
        "series": league.teams.series_key.nunique(),
        "clubs": league.teams.club_key.nunique(),
        "ours_s": median["ours"],
        "floor_s": median["floor"],
        "ours_over_floor": median["ours"] / median["floor"],
        "old_s": median["old"],
        "old_over_ours": median["old"] / median["ours"],
        "second_run_s": median["second"],
        "old_extrapolated_from": limit if extrapolated else None,
        "samples": samples,
        "peak_rss_mib_after": peak_rss_mib(),
    }


def print_table(results: list[dict]) -> None:
    header = ("N", "ours (s)", "floor (s)", "ours/floor", "old (s)", "old/ours", "second-run (s)")
    lines = [header]
    for r in results:
        star = "*" if r["old_extrapolated_from"] else ""
        lines.append(
            (
                f"{r['n']:,}",
                f"{r['ours_s']:.3f}",
                f"{r['floor_s']:.3f}",
                f"{r['ours_over_floor']:.2f}x",
                f"{r['old_s']:.2f}{star}",
                f"{r['old_over_ours']:.1f}x",
                f"{r['second_run_s']:.3f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
    for r in results:
        if r["old_extrapolated_from"]:
            print(f"* old at {r['n']:,} timed on the first {r['old_extrapolated_from']:,} teams, scaled linearly")


def targets(results: list[dict], peak: float) -> list[dict]:
    at = next((r for r in results if r["n"] == TARGET_SIZE), None)
    checks = []
    if at is None:
        checks.append({"target": f"ours within {TARGET_FLOOR_RATIO}x of floor at {TARGET_SIZE:,}", "status": "n/a"})
        checks.append(
            {"target": f"ours >= {TARGET_OLD_SPEEDUP:.0f}x faster than old at {TARGET_SIZE:,}", "status": "n/a"}
        )
    else:
        ratio, speedup = at["ours_over_floor"], at["old_over_ours"]
        checks.append(
            {
                "target": f"ours within {TARGET_FLOOR_RATIO}x of floor at {TARGET_SIZE:,}",
                "value": f"{ratio:.2f}x",
                "status": "PASS" if ratio <= TARGET_FLOOR_RATIO else "MISS",
            }
        )
        checks.append(
            {
                "target": f"ours >= {TARGET_OLD_SPEEDUP:.0f}x faster than old at {TARGET_SIZE:,}",
                "value": f"{speedup:.1f}x" + (" (old extrapolated)" if at["old_extrapolated_from"] else ""),
                "status": "PASS" if speedup >= TARGET_OLD_SPEEDUP else "MISS",
            }
        )
    checks.append(
        {
            "target": f"peak memory under {TARGET_PEAK_MIB:.0f} MB",
            "value": f"{peak:.0f} MiB",
            "status": "PASS" if peak < TARGET_PEAK_MIB else "MISS",
        }
    )
    return checks


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated team counts, got {text!r}") from None
    if not sizes or any(n < 10 for n in sizes):
        raise argparse.ArgumentTypeError("every size must be at least 10 teams")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=list(SIZES), help="comma-separated team counts")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="runs per measurement; the median is reported")
    parser.add_argument(
        "--old-max", type=int, default=None, help="time the old approach on at most this many teams, scaled linearly"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help="also time each statement at the largest size")
    args = parser.parse_args(argv)
    if args.repeat < 1 or (args.old_max is not None and args.old_max < OLD_BATCH):
        parser.error(f"--repeat must be at least 1 and --old-max at least {OLD_BATCH}")

    return run(
        args,
        "bench_upsert",
        make_bench=Bench,
        measure=lambda bench: [measure(bench, n, args.repeat, args.old_max) for n in args.sizes],
        print_table=print_table,
        profile=lambda bench: profile(bench, max(args.sizes)),
        print_profile=lambda runs: print_profile(max(args.sizes), runs),
        targets=targets,
        each=True,
        versions={"pandas": pd.__version__},
    )


if __name__ == "__main__":
    sys.exit(main())
