"""Test helpers: league folders built from the bundled season, and database snapshots."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "include" / "demo_data"
LEAGUE = "APTA_CHICAGO"
# Debian's chromium, headless, as root on a machine with no network but loopback.
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STATS_FILE_NAME, SCHEDULE_FILE_NAME = "series_stats.json", "schedules.json"
DATA_TABLES = ("leagues", "clubs", "series", "teams", "schedule", "series_stats")


def copy_demo(dest: Path) -> Path:
    """A writable copy of the bundled season, its files new (fresh for the freshness check)."""
    shutil.copytree(DEMO_DATA / LEAGUE, dest / LEAGUE, copy_function=shutil.copyfile)
    return dest


# A copy of the season made once per test session, so the files' age never depends on the clone's.
FRESH_DEMO = copy_demo(Path(tempfile.mkdtemp(prefix="league-demo-")))
atexit.register(shutil.rmtree, FRESH_DEMO, ignore_errors=True)
# Every param of the DAG: dag.test() keeps an earlier run's conf in the DAG's params otherwise.
CONF = {"source_dir": str(FRESH_DEMO), "leagues": [], "dry_run": False, "max_deactivation_ratio": 0.2}


def add_league(source_dir: Path, code: str) -> Path:
    """A second league beside the bundled one: the same season under another code (its teams are
    other teams, of another league)."""
    folder = source_dir / code
    folder.mkdir()
    for name, field in ((STATS_FILE_NAME, "league_id"), (SCHEDULE_FILE_NAME, "League")):
        records = json.loads((source_dir / LEAGUE / name).read_text())
        for r in records:
            r[field] = code
        (folder / name).write_text(json.dumps(records))
    return source_dir


def read(source_dir: Path, name: str) -> list[dict]:
    return json.loads((source_dir / LEAGUE / name).read_text())


def write(source_dir: Path, name: str, records) -> None:
    (source_dir / LEAGUE / name).write_text(json.dumps(records))


def snapshot(conn) -> dict[str, str]:
    """A content hash per data table (with row ids), to prove a failed run changed nothing."""
    out = {}
    for table in DATA_TABLES:
        exists = conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()[0]
        if exists is None:
            out[table] = "absent"
            continue
        query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), '')) FROM {} t")
        out[table] = conn.execute(query.format(sql.Identifier(table))).fetchone()
    conn.rollback()
    return out


def team_ids(conn) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT s.series_key, t.team_key, t.id FROM teams t JOIN series s ON s.id = t.series_id"
    ).fetchall()
    conn.rollback()
    return {(s, k): i for s, k, i in rows}


USER_TABLES = ("team_memberships", "polls", "captain_messages", "practice_times")


def q(conn, query, *args):
    """Rows of a query, the transaction closed after (so a test's reads never hold locks)."""
    found = conn.execute(query, args).fetchall()
    conn.rollback()
    return found


def one(conn, query, *args):
    return q(conn, query, *args)[0][0]


def placement(conn) -> dict:
    """Each user row's real team: (table, row) -> (league, series, team key)."""
    out = {}
    for table in USER_TABLES:
        rid = "t.user_id::text" if table == "team_memberships" else "t.id::text"
        for row, key in q(
            conn,
            f"""SELECT {rid}, l.code || '/' || s.series_key || '/' || x.team_key FROM {table} t
                JOIN teams x ON x.id = t.team_id JOIN series s ON s.id = x.series_id
                JOIN leagues l ON l.id = x.league_id""",
        ):
            out[(table, row)] = key
    return out


def row_teams(conn) -> dict:
    """Each user row's team id, for checks where keys change but ids must not."""
    out = {}
    for table in USER_TABLES:
        rid = "user_id::text || '/' || team_id" if table == "team_memberships" else "id::text"
        for row, team in conn.execute(f"SELECT {rid}, team_id FROM {table}").fetchall():
            out[(table, row)] = team
    conn.rollback()
    return out


def user_counts(conn) -> dict:
    return {t: one(conn, f"SELECT count(*) FROM {t}") for t in USER_TABLES}


def archived(conn, table) -> int:
    return (
        one(conn, f"SELECT count(*) FROM etl_archive.{table}")
        if one(conn, "SELECT to_regclass(%s)", f"etl_archive.{table}")
        else 0
    )


def old_etl_churn(conn, delete_outright=(), only_active=False):
    """What the old ETL did: foreign-key triggers off, every team deleted and re-inserted with new
    ids, a few teams not re-inserted at all."""
    from league_import.demo import replay_old_etl_churn

    replay_old_etl_churn(conn, delete_outright, only_active)


def restart_identity_churn(conn):
    """A worse variant: teams deleted and re-inserted with the id sequence restarted, in another
    order, so old ids come back naming other teams."""
    conn.execute("SET session_replication_role = replica")  # the old system's triggers off
    conn.execute("CREATE TEMP TABLE churned AS SELECT * FROM teams")
    conn.execute("DELETE FROM teams")
    conn.execute("ALTER TABLE teams ALTER COLUMN id RESTART")
    conn.execute(
        """INSERT INTO teams (league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
           SELECT league_id, club_id, series_id, team_name, team_key, sub_team, is_active FROM churned
           ORDER BY team_key DESC, id"""
    )
    conn.execute("DROP TABLE churned")
    conn.execute("SET session_replication_role = origin")
    conn.commit()


def orphan_count(conn) -> int:
    return sum(
        one(conn, f"SELECT count(*) FROM {t} WHERE team_id IS NOT NULL AND team_id NOT IN (SELECT id FROM teams)")
        for t in USER_TABLES
    )


def night(conn, run_id, source=None, ratio=0.2, dedup=False):
    """One night's steps as plain functions, health checks recorded and the run closed; returns the
    checks (the DAG itself is tested in tests/dag)."""
    from league_import import stage, steps
    from league_import.backup import backup
    from league_import.catalog import natural_keys
    from league_import.dedup import deduplicate
    from league_import.health import record, run_checks
    from league_import.repair import restore_mapping
    from league_import.runs import finish_run, record_step
    from league_import.schema import ensure_schema

    ensure_schema(conn)
    report = steps.validate(conn, run_id, source_dir=str(source or FRESH_DEMO), leagues=[], dry_run=False)
    record_step(conn, run_id, "validate_constraints", report)
    if dedup:
        for key in natural_keys():
            deduplicate(conn, key, run_id)
    record_step(conn, run_id, "backup", backup(conn, run_id))
    record_step(conn, run_id, "upsert_teams", steps.upsert(conn, run_id, max_ratio=ratio, dry_run=False))
    record_step(conn, run_id, "restore_mapping", restore_mapping(conn, run_id))
    with conn.transaction(), conn.cursor() as cur:
        implied = stage.implied_counts(cur, run_id)
    checks = run_checks(conn, run_id, implied=implied)
    record(conn, run_id, checks)
    with conn.transaction(), conn.cursor() as cur:
        stage.drop_stage(cur, run_id)
    finish_run(conn, run_id, "success")
    return checks


def create_user_data(conn, captains=60):
    """Users, each captain of one team, with a membership, a poll, a message and a practice;
    and one message written on a team id nobody knows, naming no series."""
    for statement in (
        "INSERT INTO users (id, email) SELECT n, 'captain' || n || '@example.com' FROM generate_series(1, %(n)s) n",
        """INSERT INTO team_memberships (user_id, team_id, is_primary)
           SELECT n, t.id, true FROM generate_series(1, %(n)s) n
           JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM teams) t USING (n)""",
        "INSERT INTO polls (team_id, created_by, question) SELECT team_id, user_id, 'Who plays?' FROM team_memberships",
        """INSERT INTO captain_messages (team_id, captain_user_id, message)
           SELECT team_id, user_id, 'Bring balls' FROM team_memberships""",
        """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
           SELECT m.team_id, 'Tuesday', '18:00', '19:30', 'Court 1', t.league_id
           FROM team_memberships m JOIN teams t ON t.id = m.team_id""",
    ):
        conn.execute(statement, {"n": captains})
    # No history at all: a message written on an id nobody knows, naming a series.
    conn.execute("SET session_replication_role = replica")
    conn.execute(
        "INSERT INTO captain_messages (team_id, captain_user_id, message) VALUES (999999, 1, 'Practice moved to 7:22')"
    )
    conn.execute("SET session_replication_role = origin")
    conn.commit()
