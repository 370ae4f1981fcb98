"""Benchmark the team load as the DAG runs it (validate_constraints + upsert_teams) on league
folders on disk, against a floor that reads every file and writes every row the step writes
(json.load, COPY and INSERT of teams, matches and standings; docs/benchmarks.md).

A measurement, not a test: it exits non-zero only on errors and prints PASS/MISS for the targets.
Run: .venv/bin/python bench/bench_upsert.py [--teams 10000] [--repeat 3] [--json PATH] [--profile]
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from common import (
    EXTRA_NAMES,
    BenchDatabase,
    drop_database,
    expect,
    positive,
    print_statement_profile,
    run,
    template_pattern,
    with_database,
)
from pipeline import TASKS, in_child, night
from psycopg import sql
from synth import write_leagues

from league_import.constraints import add_as_defined, check_constraints, drop_constraint
from league_import.pgcatalog import foreign_key_definitions
from league_import.schema import ensure_schema
from league_import.sources import SCHEDULE_FILE, STATS_FILE

TEAMS = 100_000
REPEAT = 3
TARGET_FIRST = 2.0  # validate + upsert, first import, over the floor
TARGET_AGAIN = 1.5  # the same, unchanged re-import, over the same floor
TARGET_WAL_MIB = 1.0  # WAL of the upsert_teams task on an unchanged re-import
TARGET_PEAK_MIB = 300.0  # peak memory of the validate + upsert tasks
LOAD = ("validate_constraints", "upsert_teams")  # the tasks that read the files and load what they hold

# The floor: every file read with json.load; every row the step writes (teams, matches,
# standings) sent in one COPY each to unlogged tables and written with one INSERT each into
# teams, schedule and series_stats (the natural keys and the foreign keys present, as validate
# leaves them). A team is its name in its series; a match's teams are found by their names.
FLOOR_TABLES = """
CREATE UNLOGGED TABLE public.floor_teams (league_code text, series_label text, team_name text);
CREATE UNLOGGED TABLE public.floor_matches (league_code text, series_label text, match_date text, match_time text,
                                            home_team text, away_team text, location text);
CREATE UNLOGGED TABLE public.floor_stats (league_code text, series_label text, team_name text, points int,
    matches_won int, matches_lost int, matches_tied int, lines_won int, lines_lost int, lines_for int, lines_ret int,
    sets_won int, sets_lost int, games_won int, games_lost int);
"""
FLOOR_COPY = {
    "teams": "COPY public.floor_teams (league_code, series_label, team_name) FROM STDIN",
    "matches": "COPY public.floor_matches (league_code, series_label, match_date, match_time, home_team, away_team, "
    "location) FROM STDIN",
    "stats": "COPY public.floor_stats FROM STDIN",
}
FLOOR_INSERT = """
INSERT INTO public.teams (league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
SELECT l.id, %(club_id)s, s.id, f.team_name, f.team_name, '', true
FROM public.floor_teams f
JOIN public.leagues l ON l.code = f.league_code
JOIN public.series s ON s.league_id = l.id AND s.series_key = f.series_label
ON CONFLICT (league_id, series_id, team_key) DO NOTHING
"""
FLOOR_MATCHES = """
INSERT INTO public.schedule (league_id, series_id, match_date, match_time, home_team_id, away_team_id, location)
SELECT l.id, s.id, to_date(f.match_date, 'MM/DD/YYYY'), nullif(f.match_time, '')::time, h.id, a.id, f.location
FROM public.floor_matches f
JOIN public.leagues l ON l.code = f.league_code
JOIN public.series s ON s.league_id = l.id AND s.series_key = f.series_label
LEFT JOIN public.teams h ON h.league_id = l.id AND h.series_id = s.id AND h.team_key = f.home_team
LEFT JOIN public.teams a ON a.league_id = l.id AND a.series_id = s.id AND a.team_key = f.away_team
"""
FLOOR_STATS = """
INSERT INTO public.series_stats (league_id, series_id, team_id, points, matches_won, matches_lost,
                                 matches_tied, lines_won, lines_lost, lines_for, lines_ret, sets_won, sets_lost,
                                 games_won, games_lost)
SELECT l.id, s.id, t.id, f.points, f.matches_won, f.matches_lost, f.matches_tied, f.lines_won, f.lines_lost,
       f.lines_for, f.lines_ret, f.sets_won, f.sets_lost, f.games_won, f.games_lost
FROM public.floor_stats f
JOIN public.leagues l ON l.code = f.league_code
JOIN public.series s ON s.league_id = l.id AND s.series_key = f.series_label
JOIN public.teams t ON t.league_id = l.id AND t.series_id = s.id AND t.team_key = f.team_name
"""
EXTRA_NAMES.extend([(f"floor COPY {k}", template_pattern(v)) for k, v in FLOOR_COPY.items()])
EXTRA_NAMES.extend(
    [
        ("floor INSERT teams", template_pattern(FLOOR_INSERT)),
        ("floor INSERT schedule", template_pattern(FLOOR_MATCHES)),
        ("floor INSERT series_stats", template_pattern(FLOOR_STATS)),
    ]
)


def league_folders(source: Path) -> list[Path]:
    return sorted(p for p in source.iterdir() if p.is_dir())


class Bench(BenchDatabase):
    """The server; each measurement works in a database of its own, created empty and dropped after."""

    def __init__(self, uri: str, source: Path):
        super().__init__(uri)
        self.source = source
        self.n = 0

    def fresh(self, name: str) -> str:
        drop_database(self.uri, name)
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_database(self.uri, name)

    def floor(self, teams: int) -> float:
        """Parents seeded untimed; then timed: json.load every file, a COPY and an INSERT of every
        row the step writes (teams, matches, standings), the commit."""
        db = self.fresh(f"{self.name}_floor")
        try:
            with psycopg.connect(db) as conn:
                ensure_schema(conn)
                check_constraints(conn)  # as validate_constraints leaves empty tables: keys and foreign keys
                club_id = seed_parents(conn, self.source)
                conn.execute(FLOOR_TABLES)
                conn.commit()
            self.admin.execute("CHECKPOINT")
            with psycopg.connect(db) as conn:
                seconds, written = timed_floor(conn, self.source, club_id)
            expect(written["teams"] == teams, f"the floor wrote {written['teams']} of {teams} teams")
            expect(written["stats"] == teams, f"the floor wrote {written['stats']} of {teams} standings rows")
            return seconds
        finally:
            drop_database(self.uri, f"{self.name}_floor")

    def ours(self, profile: bool = False) -> dict:
        """Night 1 on an empty database, then night 2 on the same files: every task as the DAG runs it."""
        name = f"{self.name}_ours"
        db = self.fresh(name)
        try:
            with psycopg.connect(db, autocommit=True) as conn:
                ensure_schema(conn)
            self.quiesce_db(db)
            first = in_child(night, db, "bench-night-1", str(self.source), profile=profile)
            # What a day gives the tables between two nightly runs: autovacuum, then a checkpoint.
            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE)")
            self.quiesce_db(db)
            again = in_child(night, db, "bench-night-2", str(self.source), profile=profile)
            verify(first, again, self.n)
            return {"first": first, "again": again}
        finally:
            drop_database(self.uri, name)

    def quiesce_db(self, db: str) -> None:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("CHECKPOINT")

    @property
    def name(self) -> str:
        from common import database_name

        return database_name(self.uri)


def seed_parents(conn: psycopg.Connection, source: Path) -> int:
    """Leagues, their series (the label as key, every label of both files) and one club: what the
    floor's INSERTs join to."""
    for folder in league_folders(source):
        labels = {r["series"] for name in (STATS_FILE, SCHEDULE_FILE) for r in json.loads((folder / name).read_bytes())}
        league_id = conn.execute("INSERT INTO leagues (code) VALUES (%s) RETURNING id", (folder.name,)).fetchone()[0]
        conn.execute(
            "INSERT INTO series (league_id, name, series_key) SELECT %s, x, x FROM unnest(%s::text[]) x",
            (league_id, sorted(labels)),
        )
    return conn.execute("INSERT INTO clubs (name, name_key) VALUES ('Floor', 'floor') RETURNING id").fetchone()[0]


def timed_floor(conn: psycopg.Connection, source: Path, club_id: int) -> tuple[float, dict]:
    start = time.perf_counter()
    with conn.cursor() as cur:
        for folder in league_folders(source):
            with open(folder / SCHEDULE_FILE, "rb") as f:
                matches = json.load(f)
            with open(folder / STATS_FILE, "rb") as f:
                stats = json.load(f)
            code = folder.name
            with cur.copy(FLOOR_COPY["teams"]) as copy:
                for r in stats:
                    copy.write_row((code, r["series"], r["team"]))
            with cur.copy(FLOOR_COPY["stats"]) as copy:
                for r in stats:
                    m, ln, st, g = r["matches"], r["lines"], r["sets"], r["games"]
                    copy.write_row(
                        (code, r["series"], r["team"], r["points"], m["won"], m["lost"], m["tied"], ln["won"],
                         ln["lost"], ln["for"], ln["ret"], st["won"], st["lost"], g["won"], g["lost"])
                    )  # fmt: skip
            with cur.copy(FLOOR_COPY["matches"]) as copy:  # dates and times parsed by the server
                for r in matches:
                    copy.write_row(
                        (code, r["series"], r["date"], r["time"], r["home_team"], r["away_team"], r["location"])
                    )
        # As the step does on a first import: the foreign keys checked once each, after the inserts.
        deferred = foreign_key_definitions(cur, ["teams", "schedule", "series_stats"])
        for table, name, _ in deferred:
            drop_constraint(cur, table, name)
        cur.execute("ANALYZE public.floor_teams, public.floor_matches, public.floor_stats")  # planned as sized
        written = {"teams": cur.execute(FLOOR_INSERT, {"club_id": club_id}).rowcount}
        cur.execute("ANALYZE public.teams")
        written |= {"schedule": cur.execute(FLOOR_MATCHES).rowcount, "stats": cur.execute(FLOOR_STATS).rowcount}
        for table, name, definition in deferred:
            add_as_defined(cur, table, name, definition)
    conn.commit()
    return time.perf_counter() - start, written


def verify(first: dict, again: dict, n: int) -> None:
    created = sum(c["teams_created"] for c in first["tasks"]["upsert_teams"]["report"]["leagues"].values())
    expect(created == n, f"night 1 created {created} of {n} teams")
    leagues = again["tasks"]["upsert_teams"]["report"]["leagues"].values()
    unchanged = sum(c["teams_unchanged"] for c in leagues)
    expect(unchanged == n, f"night 2 left {unchanged} of {n} teams unchanged")
    written = sum(c[k] for c in leagues for k in c if k.endswith(("_created", "_updated", "_deleted")))
    expect(written == 0, f"night 2 wrote {written} rows from unchanged files")
    for label, result in (("night 1", first), ("night 2", again)):
        status = result["tasks"]["health_check"]["report"]["status"]
        expect(status != "error", f"{label}: health check {status}")


def _load(result: dict, key: str) -> float:
    return sum(result["tasks"][t][key] for t in LOAD)


def measure(bench: Bench, args: argparse.Namespace) -> dict:
    source = args.data
    if source is None:  # written for this run only, removed at exit
        source = Path(tempfile.mkdtemp(prefix="bench-leagues-"))
        atexit.register(shutil.rmtree, source, ignore_errors=True)
    started = time.perf_counter()
    source.mkdir(parents=True, exist_ok=True)
    if not any(source.iterdir()):
        facts = write_leagues(source, args.teams)
    else:
        folders = league_folders(source)
        facts = {
            "teams": sum(len(json.loads((f / STATS_FILE).read_bytes())) for f in folders),
            "schedule_rows": sum(len(json.loads((f / SCHEDULE_FILE).read_bytes())) for f in folders),
            "bytes": sum(p.stat().st_size for f in folders for p in f.iterdir()),
            "largest_file_bytes": max(p.stat().st_size for f in folders for p in f.iterdir()),
            "leagues": [f.name for f in folders],
        }
    bench.source, bench.n = source, facts["teams"]
    print(
        f"  data: {len(facts['leagues'])} leagues, {facts['teams']:,} teams, {facts['schedule_rows']:,} schedule "
        f"rows, {facts['bytes'] / 2**20:,.0f} MiB of JSON (largest file {facts['largest_file_bytes'] / 2**20:.1f} "
        f"MiB) in {source}; {time.perf_counter() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    samples: dict[str, list] = {"floor": [], "first": [], "again": []}
    for rep in range(args.repeat):
        samples["floor"].append(bench.floor(bench.n))
        nights = bench.ours()
        for key in ("first", "again"):
            tasks = nights[key]["tasks"]
            samples[key].append({t: {k: v for k, v in r.items() if k != "report"} for t, r in tasks.items()})
            samples[key][-1]["rss_at_start_mib"] = nights[key]["rss_at_start_mib"]
        f, a = nights["first"]["tasks"], nights["again"]["tasks"]
        print(
            f"  run {rep + 1}/{args.repeat}: floor {samples['floor'][-1]:.2f}s; first import: validate "
            f"{f['validate_constraints']['seconds']:.2f}s, upsert {f['upsert_teams']['seconds']:.2f}s; unchanged: "
            f"validate {a['validate_constraints']['seconds']:.2f}s, upsert {a['upsert_teams']['seconds']:.2f}s, "
            f"upsert WAL {a['upsert_teams']['wal_bytes'] / 2**20:.2f} MiB",
            file=sys.stderr,
            flush=True,
        )
    floor = statistics.median(samples["floor"])
    result = {**{k: v for k, v in facts.items() if k != "leagues"}, "leagues": len(facts["leagues"]), "floor_s": floor}
    for key in ("first", "again"):
        runs = samples[key]
        tasks = {t: {f: statistics.median(s[t][f] for s in runs) for f in ("seconds", "wal_bytes")} for t in TASKS}
        load = statistics.median(sum(s[t]["seconds"] for t in LOAD) for s in runs)
        result[key] = {
            "tasks": tasks,
            "upsert_over_floor": tasks["upsert_teams"]["seconds"] / floor,
            "load_s": load,
            "load_over_floor": load / floor,
            "peak_rss_mib": max(s[t]["peak_rss_mib"] or 0 for s in runs for t in LOAD),
            "rss_at_start_mib": max(s["rss_at_start_mib"] for s in runs),
        }
    result["samples"] = samples
    return result


def print_table(r: dict) -> None:
    print(
        f"{r['leagues']} leagues, {r['teams']:,} teams, {r['schedule_rows']:,} schedule rows, "
        f"{r['bytes'] / 2**20:,.0f} MiB of JSON"
    )
    print(
        "floor: json.load of every file, a COPY and an INSERT of every row the step writes (teams, schedule, "
        f"series_stats): {r['floor_s']:.3f} s"
    )
    print()
    header = (
        "import",
        "upsert_teams (s)",
        "/floor",
        "WAL MiB",
        "validate (s)",
        "validate+upsert (s)",
        "/floor",
        "peak RSS MiB",
    )
    rows = []
    for key, label in (("first", "first"), ("again", "unchanged")):
        x = r[key]
        rows.append(
            (
                label,
                f"{x['tasks']['upsert_teams']['seconds']:.3f}",
                f"{x['upsert_over_floor']:.2f}x",
                f"{x['tasks']['upsert_teams']['wal_bytes'] / 2**20:.2f}",
                f"{x['tasks']['validate_constraints']['seconds']:.3f}",
                f"{x['load_s']:.3f}",
                f"{x['load_over_floor']:.2f}x",
                f"{x['peak_rss_mib']:.0f}",
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    for cells in (header, *rows):
        print("  ".join(cell.rjust(w) for cell, w in zip(cells, widths)))
    start = max(r[key]["rss_at_start_mib"] for key in ("first", "again"))
    print(f"(peak RSS: the task's process, {start:.0f} MiB before its first step, the operators and Airflow imported)")
    print()
    print("every task of the two nights, as the DAG runs them (median seconds, WAL MiB):")
    for t in TASKS:
        first, again = r["first"]["tasks"][t], r["again"]["tasks"][t]
        print(
            f"  {t:<21} first {first['seconds']:7.3f} s {first['wal_bytes'] / 2**20:7.2f} MiB"
            f"   unchanged {again['seconds']:7.3f} s {again['wal_bytes'] / 2**20:7.2f} MiB"
        )


def targets(r: dict, _peak: float) -> list[dict]:
    n = f"{r['teams']:,} teams"
    wal = r["again"]["tasks"]["upsert_teams"]["wal_bytes"] / 2**20
    peak = max(r["first"]["peak_rss_mib"], r["again"]["peak_rss_mib"])
    load_first, load_again = r["first"]["load_over_floor"], r["again"]["load_over_floor"]
    checks = [
        (
            f"validate + upsert (a night's reading and writing), first import, within {TARGET_FIRST:g}x of the "
            f"floor at {n}",
            f"{load_first:.2f}x",
            load_first <= TARGET_FIRST,
        ),
        (
            f"validate + upsert, unchanged re-import, within {TARGET_AGAIN:g}x of the floor",
            f"{load_again:.2f}x",
            load_again <= TARGET_AGAIN,
        ),
        (
            f"upsert_teams WAL on an unchanged re-import under {TARGET_WAL_MIB:g} MiB",
            f"{wal:.2f} MiB",
            wal < TARGET_WAL_MIB,
        ),
        (
            f"validate + upsert peak memory under {TARGET_PEAK_MIB:g} MB",
            f"{peak:.0f} MiB",
            peak * 2**20 < TARGET_PEAK_MIB * 1e6,
        ),
    ]
    return [{"target": t, "value": v, "status": "PASS" if ok else "MISS"} for t, v, ok in checks]


def profile(bench: Bench) -> dict:
    nights = bench.ours(profile=True)
    return {"first": nights["first"]["profile"], "again": nights["again"]["profile"]}


def print_profile(runs: dict) -> None:
    for key, label in (("first", "first import"), ("again", "unchanged re-import")):
        print_statement_profile(label, {t: runs[key][t] for t in LOAD}, "rest (Python, COPY data, commit)")
        print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=positive, default=TEAMS, help=f"teams in all (default {TEAMS:,})")
    parser.add_argument("--repeat", type=positive, default=REPEAT, help="runs of each; the median is reported")
    parser.add_argument("--data", type=Path, default=None, help="league folders to use (or fill, when empty)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help="also time each statement in one extra run")
    args = parser.parse_args(argv)
    return run(
        args,
        "bench_upsert",
        make_bench=lambda uri: Bench(uri, args.data or Path()),
        measure=lambda bench: measure(bench, args),
        print_table=print_table,
        profile=profile,
        print_profile=print_profile,
        targets=targets,
    )


if __name__ == "__main__":
    sys.exit(main())
