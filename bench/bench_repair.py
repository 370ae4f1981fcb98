"""Benchmark restore_mapping on 1 M user rows with 10 % orphans against an UPDATE ... FROM floor (docs/benchmarks.md).

A measurement, not a test: it exits non-zero only on errors and prints PASS/MISS for the target.
Run: PYTHONPATH=plugins .venv/bin/python bench/bench_repair.py [--rows 100000] [--json PATH] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
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

from league_import.backup import refresh_key_map
from league_import.catalog import REFERENCES, TEAM_COLUMNS
from league_import.constraints import check_constraints
from league_import.repair import STRATEGIES, restore_mapping
from league_import.schema import ensure_schema
from league_import.sources import read_leagues
from league_import.sql import statements
from league_import.upsert import load_league

ROWS = 1_000_000
REPEAT = 3
TARGET_FLOOR_RATIO = 2.0
RUN_ID = "bench-run"
SETUP_RUN_ID = "bench-setup"  # the night before: the key map learnt the ids the old ETL then churned
DEMO_DATA = Path(__file__).resolve().parents[1] / "include" / "demo_data"
CHURN_EVERY = 10  # every 10th team (by id) is re-keyed; every 10th user row points at one of them

# The user rows, by share of --rows. A membership's user has two teams; polls and messages cycle
# over the same users; every practice session is distinct on practice_times' natural key.
SHARES = (("practice_times", 0.60), ("polls", 0.15), ("captain_messages", 0.15), ("team_memberships", 0.10))
USER_TABLES = tuple(table for table, _ in SHARES)
TEAM_REFERENCES = tuple(r for r in REFERENCES if r.to_teams and r.table in USER_TABLES)
assert {c.table for c in TEAM_COLUMNS} == set(USER_TABLES), "the benchmark must fill every declared team column"

# Row g of a table: every 10th row on a churned team, the others on the rest, round robin.
SLOT = """
FROM generate_series(1, %(n)s) g
JOIN bench.slots s ON s.churned = (g %% 10 = 0)
 AND s.idx = CASE WHEN g %% 10 = 0 THEN (g / 10) %% %(churned)s ELSE g %% %(kept)s END
"""
FILL = {
    "practice_times": """
INSERT INTO public.practice_times (id, team_id, day_of_week, start_time, end_time, location, league_id)
SELECT g, s.team_id,
       (ARRAY['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'])[g %% 7 + 1],
       time '06:00' + (g %% 15) * interval '1 hour', time '07:30' + (g %% 15) * interval '1 hour',
       'Court ' || g, s.league_id
""",
    "polls": """
INSERT INTO public.polls (id, team_id, created_by, question)
SELECT g, s.team_id, (g - 1) %% %(users)s + 1, 'Who can play Tuesday? (' || g || ')'
""",
    "captain_messages": """
INSERT INTO public.captain_messages (id, team_id, captain_user_id, message)
SELECT g, s.team_id, (g - 1) %% %(users)s + 1, 'Bring balls, and the new schedule (' || g || ')'
""",
    "team_memberships": """
INSERT INTO public.team_memberships (user_id, team_id, is_primary)
SELECT (g + 1) / 2, s.team_id, g %% 2 = 1
""",
}

# The old ETL's id churn: each churned team deleted and inserted again under a new id from the
# identity sequence, with its schedule and standings; foreign-key triggers off, as it ran.
CHURN = """
CREATE TABLE bench.churn AS
SELECT id AS old_id, nextval(pg_get_serial_sequence('public.teams', 'id')) AS new_id
FROM (SELECT id FROM public.teams ORDER BY id) t
WHERE id IN (SELECT team_id FROM bench.slots WHERE churned);
CREATE TEMP TABLE churned_teams AS SELECT * FROM public.teams WHERE id IN (SELECT old_id FROM bench.churn);
DELETE FROM public.teams WHERE id IN (SELECT old_id FROM bench.churn);
INSERT INTO public.teams (id, league_id, club_id, series_id, team_name, team_key, sub_team, is_active,
                          created_at, updated_at)
SELECT c.new_id, t.league_id, t.club_id, t.series_id, t.team_name, t.team_key, t.sub_team, t.is_active,
       t.created_at, t.updated_at
FROM churned_teams t JOIN bench.churn c ON c.old_id = t.id;
UPDATE public.schedule x SET home_team_id = c.new_id FROM bench.churn c WHERE x.home_team_id = c.old_id;
UPDATE public.schedule x SET away_team_id = c.new_id FROM bench.churn c WHERE x.away_team_id = c.old_id;
UPDATE public.series_stats x SET team_id = c.new_id FROM bench.churn c WHERE x.team_id = c.old_id;
DROP TABLE churned_teams;
"""

# Where each user row is, by natural key: (table, row id or membership user, league, series, team key).
# Before the repair an orphan's team is read from the key map, after it from teams.
PLACEMENT = """
SELECT {tbl}::text AS tbl, t.{rid}::bigint AS rid, {code} AS league_code, {series} AS series_key,
       {team} AS team_key
FROM {table} t {joins}
"""
CURRENT_JOINS = """
LEFT JOIN public.teams x ON x.id = t.team_id
LEFT JOIN public.series s ON s.id = x.series_id
LEFT JOIN public.leagues l ON l.id = x.league_id"""
KEY_MAP_JOINS = "LEFT JOIN etl.team_key_map k ON k.team_id = t.team_id"

# The floor: the id map given, the least that re-pointing the orphans costs (one UPDATE per table).
FLOOR_MAP = "CREATE TEMP TABLE floor_map AS SELECT old_id, new_id FROM bench.churn"
FLOOR_UPDATE = "UPDATE {table} t SET team_id = m.new_id FROM floor_map m WHERE t.team_id = m.old_id"


def split(rows: int) -> dict[str, int]:
    """Rows per user table; practice_times takes what rounding leaves."""
    sizes = {table: int(rows * share) for table, share in SHARES[1:]}
    return {SHARES[0][0]: rows - sum(sizes.values()), **sizes}


class Bench(BenchDatabase):
    """One scratch database: the bundled season, churned once; every measurement starts from a fresh fill."""

    def __init__(self, uri: str, rows: int):
        super().__init__(uri)
        self.rows = rows
        self.sizes = split(rows)
        self.orphans = sum(n // CHURN_EVERY for n in self.sizes.values())
        self.users = max(1, (self.sizes["team_memberships"] + 1) // 2)
        self.teams = self.churned = 0
        self.fresh = False  # the user tables as refill() leaves them, nothing run on them since
        self.setup_s: dict[str, float] = {}

    def scalar(self, query: str | sql.Composable, params: dict | None = None):
        return self.admin.execute(query, params).fetchone()[0]

    def setup(self) -> None:
        """The season loaded, the key map written, then the old ETL's churn of every 10th team."""
        started = time.perf_counter()
        self.admin.execute("DROP SCHEMA IF EXISTS public, etl, etl_archive, bench CASCADE")
        self.admin.execute("CREATE SCHEMA public")
        self.admin.execute("CREATE SCHEMA bench")
        leagues = read_leagues(DEMO_DATA, [])
        with self.connect() as conn:
            ensure_schema(conn)
            check_constraints(conn)  # empty tables: every key and foreign key added, valid
            for league in leagues:
                load_league(conn, league)
        self.admin.execute(
            "INSERT INTO public.users (id, email) SELECT u, 'user' || u || '@example.com' "
            "FROM generate_series(1, %(users)s) u",
            {"users": self.users},
        )
        self.admin.execute(
            """CREATE TABLE bench.slots AS
               SELECT churned, (row_number() OVER (PARTITION BY churned ORDER BY id) - 1)::int AS idx,
                      id AS team_id, league_id
               FROM (SELECT id, league_id, row_number() OVER (ORDER BY id) %% %(every)s = 0 AS churned
                     FROM public.teams) t""",
            {"every": CHURN_EVERY},
        )
        self.teams = self.scalar("SELECT count(*) FROM public.teams")
        self.churned = self.scalar("SELECT count(*) FROM bench.slots WHERE churned")
        expect(self.churned >= 1 and self.teams - self.churned >= 2, f"only {self.teams} teams loaded")
        with self.connect() as conn, conn.cursor() as cur:
            refresh_key_map(cur, SETUP_RUN_ID)  # as the backup task of the night before
        self.admin.execute("SET session_replication_role = replica")
        self.admin.execute(CHURN)
        self.admin.execute("SET session_replication_role = origin")
        moved = self.scalar("SELECT count(*) FROM bench.churn c JOIN public.teams t ON t.id = c.new_id")
        expect(moved == self.churned, f"{moved} of {self.churned} teams re-keyed")
        self.admin.execute("CREATE TABLE bench.key_map AS SELECT * FROM etl.team_key_map")
        self.setup_s["season and churn"] = time.perf_counter() - started

        started = time.perf_counter()
        self.refill()
        # Every fill is the same: where each row belongs, read once through the key map.
        self.admin.execute(sql.SQL("CREATE TABLE bench.expected AS {}").format(placement(via_key_map=True)))
        unplaced = self.scalar("SELECT count(*) FROM bench.expected WHERE team_key IS NULL")
        expect(unplaced == 0, f"{unplaced} user rows on team ids the key map does not know")
        self.admin.execute("VACUUM (ANALYZE) bench.expected")
        self.quiesce()
        self.setup_s["first fill"] = time.perf_counter() - started

    def start_fresh(self) -> None:
        """Refill unless nothing has run since the last fill; the next measurement uses it up."""
        if not self.fresh:
            self.refill()
        self.fresh = False

    def refill(self) -> None:
        """Back to the churned state: user tables refilled, team foreign keys NOT VALID, no repair logged."""
        for ref in TEAM_REFERENCES:
            self.admin.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                    sql.Identifier("public", ref.table), sql.Identifier(ref.name)
                )
            )
        for table in USER_TABLES:
            self.admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("etl_archive", table)))
        self.admin.execute("TRUNCATE etl.repairs, etl.quarantine, etl.team_key_map")
        self.admin.execute("INSERT INTO etl.team_key_map SELECT * FROM bench.key_map")
        self.admin.execute("SET session_replication_role = replica")
        self.admin.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier("public", t) for t in USER_TABLES))
        )
        params = {"users": self.users, "churned": self.churned, "kept": self.teams - self.churned}
        for table, n in self.sizes.items():
            written = self.admin.execute(FILL[table] + SLOT + " ORDER BY g", {**params, "n": n}).rowcount
            expect(written == n, f"{table}: filled {written} of {n} rows")
        self.admin.execute("SET session_replication_role = origin")
        with self.connect() as conn:
            # As validate_constraints leaves a database with orphans: team foreign keys NOT VALID.
            findings = {f.constraint: f for f in check_constraints(conn)}
        for ref in TEAM_REFERENCES:
            found = findings[ref.name]
            orphans = self.sizes[ref.table] // CHURN_EVERY
            expect(
                found.state == "added_not_valid" and found.blocking_rows == orphans,
                f"{ref.name}: {found.state} with {found.blocking_rows} orphans, {orphans} expected",
            )
        # What autovacuum gives tables that sat there: hint bits set, statistics.
        for schema, table in (*(("public", t) for t in (*USER_TABLES, "teams")), ("etl", "team_key_map")):
            self.admin.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)))
        self.quiesce()
        self.fresh = True

    def count_orphans(self) -> int:
        return sum(
            self.scalar(
                sql.SQL(
                    "SELECT count(*) FROM {} t WHERE t.team_id IS NOT NULL "
                    "AND NOT EXISTS (SELECT 1 FROM public.teams x WHERE x.id = t.team_id)"
                ).format(sql.Identifier("public", table))
            )
            for table in USER_TABLES
        )

    def verify_placement(self, who: str) -> None:
        """Every user row still there, each on a team with the natural key it had before the churn."""
        expect(self.count_orphans() == 0, f"{who}: orphans left")
        current = placement(via_key_map=False)
        missing = self.scalar(sql.SQL("SELECT count(*) FROM (TABLE bench.expected EXCEPT ALL {}) x").format(current))
        extra = self.scalar(sql.SQL("SELECT count(*) FROM ({} EXCEPT ALL TABLE bench.expected) x").format(current))
        expect(
            missing == 0 and extra == 0,
            f"{who}: {missing} user rows lost or on a team with another natural key ({extra} unexpected)",
        )

    def floor(self) -> float:
        """The id map ready (untimed); one UPDATE ... FROM per user table and the commit, timed."""
        self.start_fresh()
        with self.connect() as conn:
            conn.execute(FLOOR_MAP)
            conn.execute("ANALYZE floor_map")
            conn.commit()
            seconds, moved = timed(lambda: run_floor(conn))
        expect(moved == self.orphans, f"the floor moved {moved} of {self.orphans} rows")
        self.verify_placement("floor")
        return seconds

    def ours(self) -> float:
        """The whole restore_mapping step on a fresh connection (it commits itself), then checked."""
        self.start_fresh()
        with self.connect() as conn:
            seconds, report = timed(lambda: restore_mapping(conn, RUN_ID))
        self.verify(report)
        return seconds

    def verify(self, report: dict) -> None:
        expect(report["orphans"] == self.orphans, f"restore_mapping found {report['orphans']} of {self.orphans}")
        expected = {s: self.orphans if s == "key_map" else 0 for s in STRATEGIES}
        expect(report["by_strategy"] == expected, f"decided {report['by_strategy']}, expected {expected}")
        logged = self.scalar(
            "SELECT count(*) FROM etl.repairs WHERE run_id = %(run)s AND strategy = 'key_map'", {"run": RUN_ID}
        )
        expect(logged == self.orphans, f"{logged} key_map decisions in etl.repairs, {self.orphans} expected")
        invalid = self.scalar(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated AND conname = ANY(%(n)s)",
            {"n": [r.name for r in TEAM_REFERENCES]},
        )
        expect(invalid == 0, f"{invalid} team foreign keys still NOT VALID")
        self.verify_placement("restore_mapping")


def placement(*, via_key_map: bool) -> sql.Composable:
    """Every user row's team by natural key, as one UNION ALL query."""
    parts = []
    for table in USER_TABLES:
        prefix = "k." if via_key_map else ""
        parts.append(
            sql.SQL(PLACEMENT).format(
                tbl=sql.Literal(table),
                table=sql.Identifier("public", table),
                rid=sql.Identifier("user_id" if table == "team_memberships" else "id"),
                code=sql.SQL("k.league_code" if via_key_map else "l.code"),
                series=sql.SQL(prefix + "series_key" if via_key_map else "s.series_key"),
                team=sql.SQL(prefix + "team_key" if via_key_map else "x.team_key"),
                joins=sql.SQL(KEY_MAP_JOINS if via_key_map else CURRENT_JOINS),
            )
        )
    return sql.SQL("SELECT * FROM ({}) placed").format(sql.SQL(" UNION ALL ").join(parts))


def run_floor(conn: psycopg.Connection) -> int:
    moved = 0
    with conn.cursor() as cur:
        for table in USER_TABLES:
            moved += cur.execute(sql.SQL(FLOOR_UPDATE).format(table=sql.Identifier("public", table))).rowcount
    conn.commit()
    return moved


# --profile: statements named as in include/sql/*.sql.
# repair first: dedup.sql has a lock_table of its own, and the first family that matches names it.
PATTERNS = [
    (f"{family}.{name}", template_pattern(text))
    for family in ("repair", "backup", "dedup", "archive", "constraints")
    for name, text in statements(family).items()
]
FLOOR_PATTERN = template_pattern(FLOOR_UPDATE)
REST = "rest (Python, savepoints, commit)"


def statement_name(text: str) -> str:
    text = text.strip()
    if FLOOR_PATTERN.fullmatch(text):
        return "floor UPDATE ... FROM"
    if text.startswith('ALTER TABLE "etl_archive".') and "ADD COLUMN IF NOT EXISTS" in text:
        return "archive: ensure_archive's ADD COLUMN IF NOT EXISTS"  # composed in league_import.archive
    for name, pattern in PATTERNS:
        if pattern.fullmatch(text):
            return name
    return "unnamed: " + " ".join(text.split()[:3])


def profile(bench: Bench) -> dict[str, dict]:
    """One profiled floor and one profiled restore_mapping: where the time (and the WAL) goes."""
    with StatementProfile(bench.uri, statement_name, REST, count_calls=True) as timer:
        bench.start_fresh()
        with bench.connect() as conn:
            conn.execute(FLOOR_MAP)
            conn.execute("ANALYZE floor_map")
            conn.commit()
            moved = timer.record("floor", conn, lambda: run_floor(conn))
        expect(moved == bench.orphans, f"the floor moved {moved} of {bench.orphans} rows")
        bench.start_fresh()
        with bench.connect() as conn:
            report = timer.record("ours", conn, lambda: restore_mapping(conn, RUN_ID))
        bench.verify(report)
    return timer.runs


def print_profile(rows: int, runs: dict[str, dict]) -> None:
    print_statement_profile(f"{rows:,} user rows", runs, REST)
    print("statements under 1 ms in both runs are left out; (xN): executed N times, times summed")


def measure(bench: Bench, repeat: int) -> dict:
    samples: dict[str, list[float]] = {"floor": [], "ours": []}
    bench.setup()
    print(
        f"  set-up: {bench.teams} teams ({bench.churned} re-keyed), {bench.rows:,} user rows "
        + ", ".join(f"{t} {n:,}" for t, n in bench.sizes.items())
        + f"; {sum(bench.setup_s.values()):.0f}s",
        file=sys.stderr,
        flush=True,
    )
    # Alternated, each on a fresh fill, so drift on the machine spreads over both alike.
    for rep in range(repeat):
        samples["floor"].append(bench.floor())
        samples["ours"].append(bench.ours())
        print(
            f"  run {rep + 1}/{repeat}: floor {samples['floor'][-1]:.3f}s, ours {samples['ours'][-1]:.3f}s",
            file=sys.stderr,
            flush=True,
        )
    floor, ours = statistics.median(samples["floor"]), statistics.median(samples["ours"])
    return {
        "rows": bench.rows,
        "rows_by_table": bench.sizes,
        "teams": bench.teams,
        "teams_rekeyed": bench.churned,
        "orphans": bench.orphans,
        "floor_s": floor,
        "ours_s": ours,
        "ours_over_floor": ours / floor,
        "samples": samples,
    }


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
        "target": f"restore_mapping within {TARGET_FLOOR_RATIO:g}x of the floor at {r['rows']:,} user rows",
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
    if min(split(args.rows).values()) < CHURN_EVERY:
        parser.error(f"--rows must give every user table at least {CHURN_EVERY} rows (--rows 100 or more)")

    return run(
        args,
        "bench_repair",
        make_bench=lambda uri: Bench(uri, args.rows),
        measure=lambda bench: measure(bench, args.repeat),
        print_table=print_table,
        profile=profile,
        print_profile=lambda runs: print_profile(args.rows, runs),
        targets=lambda result, _peak: target(result),
        extra_json=lambda bench: {"setup_s": bench.setup_s},
    )


if __name__ == "__main__":
    sys.exit(main())
