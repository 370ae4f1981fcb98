"""The old system's id churn on user rows, as the DAG meets it, for bench_repair and bench_app_load.

Night 1 imports the bundled season (every task, as the DAG runs them). The app then writes 10 %
of the user rows; the old ETL re-creates every team under a new id (league_import.demo's
replay_old_etl_churn: triggers off, the foreign keys stay in place), orphaning them; the app
writes the other 90 % on the new ids. Night 2 then repairs the 10 %.

Row g of a user table belongs to the team in slot g mod T (teams in natural-key order), so where
every row should end up is known without the key map: checked after the repair.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from common import expect
from pipeline import TASKS, run_task

from league_import.demo import replay_old_etl_churn
from league_import.schema import ensure_schema

DEMO_DATA = Path(__file__).resolve().parents[1] / "include" / "demo_data"
NIGHT_1, NIGHT_2 = "bench-night-1", "bench-night-2"
ORPHAN_EVERY = 10  # rows g with g % 10 = 0 were written before the churn
# The user rows, by share of all; a user has two memberships, polls and messages cycle over users.
SHARES = (("practice_times", 0.60), ("polls", 0.15), ("captain_messages", 0.15), ("team_memberships", 0.10))
USER_TABLES = tuple(table for table, _ in SHARES)

SLOTS = """
CREATE TABLE bench.slots AS
SELECT (row_number() OVER (ORDER BY l.code, s.series_key, t.team_key) - 1)::int AS slot,
       l.code AS league_code, s.series_key, t.team_key, t.id AS old_id, t.league_id
FROM public.teams t JOIN public.series s ON s.id = t.series_id JOIN public.leagues l ON l.id = t.league_id
"""
NEW_IDS = """
ALTER TABLE bench.slots ADD COLUMN new_id bigint;
UPDATE bench.slots x SET new_id = t.id
FROM public.teams t JOIN public.series s ON s.id = t.series_id JOIN public.leagues l ON l.id = t.league_id
WHERE l.code = x.league_code AND s.series_key = x.series_key AND t.team_key = x.team_key;
"""
# {id}: the slot's id column (old_id before the churn, new_id after); {which}: the rows' filter.
FILL = {
    "practice_times": """
INSERT INTO public.practice_times (id, team_id, day_of_week, start_time, end_time, location, league_id)
OVERRIDING SYSTEM VALUE
SELECT g, s.{id}, (ARRAY['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'])[g % 7 + 1],
       time '06:00' + (g % 15) * interval '1 hour', time '07:30' + (g % 15) * interval '1 hour',
       'Court ' || g, s.league_id
""",
    "polls": """
INSERT INTO public.polls (id, team_id, created_by, question) OVERRIDING SYSTEM VALUE
SELECT g, s.{id}, (g - 1) % {users} + 1, 'Who can play Tuesday? (' || g || ')'
""",
    "captain_messages": """
INSERT INTO public.captain_messages (id, team_id, captain_user_id, message) OVERRIDING SYSTEM VALUE
SELECT g, s.{id}, (g - 1) % {users} + 1, 'Bring balls, and the new schedule (' || g || ')'
""",
    "team_memberships": """
INSERT INTO public.team_memberships (user_id, team_id, is_primary)
SELECT (g + 1) / 2, s.{id}, g % 2 = 1
""",
}
SLOT_OF = """
FROM generate_series(1, {n}) g
JOIN bench.slots s ON s.slot = g % {teams}
WHERE {which}
ORDER BY g
"""
# Each user row's number g, to find its slot again.
ROW_NUMBER = {"team_memberships": "2 * t.user_id - t.is_primary::int"}


def split(rows: int) -> dict[str, int]:
    """Rows per user table; practice_times takes what rounding leaves."""
    sizes = {table: int(rows * share) for table, share in SHARES[1:]}
    return {SHARES[0][0]: rows - sum(sizes.values()), **sizes}


def orphans(sizes: dict[str, int]) -> int:
    return sum(n // ORPHAN_EVERY for n in sizes.values())


def prepare(uri: str, rows: int) -> dict:
    """Night 1, the app's rows, the churn, the app's rows after it; returns the facts. Leaves the
    database as it is before night 2 (every table vacuumed and analysed, as a day would)."""
    started = time.perf_counter()
    sizes = split(rows)
    with psycopg.connect(uri, autocommit=True) as conn:
        ensure_schema(conn)
    for task in TASKS:
        run_task(uri, task, NIGHT_1, source_dir=str(DEMO_DATA))
    users = max(1, (sizes["team_memberships"] + 1) // 2)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA bench")
        conn.execute(SLOTS)
        teams = conn.execute("SELECT count(*) FROM bench.slots").fetchone()[0]
        conn.execute(
            "INSERT INTO public.users (id, email) OVERRIDING SYSTEM VALUE "
            "SELECT u, 'user' || u || '@example.com' FROM generate_series(1, %s) u",
            (users,),
        )
        conn.execute("SELECT setval(pg_get_serial_sequence('public.users', 'id'), %s)", (users,))
        fill(conn, sizes, teams, users, before_churn=True)
    with psycopg.connect(uri) as conn:
        replay_old_etl_churn(conn)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(NEW_IDS)
        missing = conn.execute("SELECT count(*) FROM bench.slots WHERE new_id IS NULL OR new_id = old_id").fetchone()[0]
        expect(missing == 0, f"{missing} teams kept their id through the churn")
        fill(conn, sizes, teams, users, before_churn=False)
        for table in USER_TABLES:  # the ids the app will take next
            if table != "team_memberships":
                conn.execute(f"SELECT setval(pg_get_serial_sequence('public.{table}', 'id'), {sizes[table]})")
        conn.execute("VACUUM (ANALYZE)")
        found = orphan_count(conn)
    expect(found == orphans(sizes), f"{found} orphans after the churn, {orphans(sizes)} expected")
    return {
        "rows": rows,
        "rows_by_table": sizes,
        "teams": teams,
        "users": users,
        "orphans": found,
        "prepare_s": time.perf_counter() - started,
    }


def fill(conn: psycopg.Connection, sizes: dict[str, int], teams: int, users: int, *, before_churn: bool) -> None:
    which = f"g % {ORPHAN_EVERY} = 0" if before_churn else f"g % {ORPHAN_EVERY} <> 0"
    for table, n in sizes.items():
        body = FILL[table].format(id="old_id" if before_churn else "new_id", users=users)
        conn.execute(body + SLOT_OF.format(n=n, teams=teams, which=which))


def orphan_count(conn: psycopg.Connection) -> int:
    return sum(
        conn.execute(
            f"SELECT count(*) FROM public.{t} x WHERE NOT EXISTS (SELECT 1 FROM public.teams y WHERE y.id = x.team_id)"
        ).fetchone()[0]
        for t in USER_TABLES
    )


def to_repair(uri: str) -> dict:
    """Night 2 up to restore_mapping: validate, deduplicate, backup, upsert (as the DAG runs them)."""
    return {task: run_task(uri, task, NIGHT_2, source_dir=str(DEMO_DATA)) for task in TASKS[:4]}


def misplaced(conn: psycopg.Connection, teams: int, sizes: dict[str, int]) -> dict[str, int]:
    """The filled user rows not on the new id of their slot's team: 0 everywhere after a right repair."""
    out = {}
    for table, n in sizes.items():
        number = ROW_NUMBER.get(table, "t.id")
        out[table] = conn.execute(
            f"SELECT count(*) FROM public.{table} t JOIN bench.slots s ON s.slot = ({number}) % {teams} "
            f"WHERE ({number}) <= {n} AND t.team_id IS DISTINCT FROM s.new_id"
        ).fetchone()[0]
        present = conn.execute(f"SELECT count(*) FROM public.{table} t WHERE ({number}) <= {n}").fetchone()[0]
        if present != n:
            out[f"{table}: rows lost"] = n - present
    return out
