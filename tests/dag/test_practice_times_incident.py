"""The old system's backup loop, replayed: 41 practice sessions as 3,470,114 rows, no UNIQUE key."""

from __future__ import annotations

import psycopg
import pytest
from helpers import CONF
from psycopg import sql

pytestmark = pytest.mark.dag

ROWS, SESSIONS = 3_470_114, 41
USER_TABLES = ("users", "team_memberships", "polls", "captain_messages")
FOREIGN_KEYS = """SELECT conname::text, pg_get_constraintdef(oid), convalidated FROM pg_constraint
                  WHERE conrelid = 'public.practice_times'::regclass AND contype = 'f' ORDER BY 1"""


def user_data(conn) -> dict:
    out = {}
    for table in USER_TABLES:
        query = sql.SQL("SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')), count(*) FROM {} t")
        out[table] = conn.execute(query.format(sql.Identifier(table))).fetchone()
    conn.rollback()
    return out


def test_one_run_leaves_41_sessions_and_archives_every_copy(league_dag, db_uri):
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        conn.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_natural_key")
        conn.execute(
            """INSERT INTO users (id, email) SELECT n, 'player' || n || '@example.com' FROM generate_series(1, 41) n;
               INSERT INTO team_memberships (user_id, team_id, is_primary)
               SELECT n, t.id, true FROM generate_series(1, 41) n
               JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM teams) t USING (n);
               INSERT INTO polls (team_id, created_by, question)
               SELECT team_id, user_id, 'Practice this week?' FROM team_memberships;
               INSERT INTO captain_messages (team_id, captain_user_id, message)
               SELECT team_id, user_id, 'Bring balls' FROM team_memberships"""
        )
        # 41 sessions, one per team, copied as the looping backup did: 84,636 or 84,637 times each.
        conn.execute(
            """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
               SELECT m.team_id, 'Tuesday', '18:00', '19:30', 'Court ' || m.user_id, t.league_id
               FROM generate_series(1, %s) g
               JOIN team_memberships m ON m.user_id = g %% 41 + 1
               JOIN teams t ON t.id = m.team_id""",
            (ROWS,),
        )
        conn.commit()
        assert conn.execute("SELECT count(*) FROM practice_times").fetchone()[0] == ROWS
        sessions = conn.execute("SELECT DISTINCT team_id, location FROM practice_times ORDER BY 1").fetchall()
        survivors = conn.execute("SELECT min(id) FROM practice_times GROUP BY team_id ORDER BY 1").fetchall()
        before = user_data(conn)
        foreign_keys = conn.execute(FOREIGN_KEYS).fetchall()
        assert len(foreign_keys) == 2

        assert league_dag.test(run_conf=CONF).state == "success"

        assert conn.execute("SELECT count(*) FROM practice_times").fetchone()[0] == SESSIONS
        assert conn.execute("SELECT team_id, location FROM practice_times ORDER BY 1").fetchall() == sessions
        assert conn.execute("SELECT id FROM practice_times ORDER BY 1").fetchall() == survivors
        archived = conn.execute(
            "SELECT count(*), count(DISTINCT run_id), min(reason) FROM etl_archive.practice_times"
        ).fetchone()
        assert archived == (ROWS - SESSIONS, 1, "duplicate")
        key = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'practice_times_natural_key'"
        ).fetchone()[0]
        assert key == "UNIQUE NULLS NOT DISTINCT (team_id, day_of_week, start_time, end_time, location)"
        assert user_data(conn) == before
        assert conn.execute(FOREIGN_KEYS).fetchall() == foreign_keys  # the table the app sees keeps its keys
        conn.rollback()
        report = conn.execute("SELECT report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
        dedup = report["deduplicate"]["tables"]["practice_times"]
        assert (dedup["duplicates"], dedup["plan"], dedup["unique_added"]) == (ROWS - SESSIONS, "truncate_reload", True)

        # The next night: nothing more to remove, nothing appended to the archive.
        assert league_dag.test(run_conf=CONF).state == "success"
        assert conn.execute("SELECT count(*) FROM etl_archive.practice_times").fetchone()[0] == ROWS - SESSIONS
        assert conn.execute("SELECT count(*) FROM practice_times").fetchone()[0] == SESSIONS


def test_41_sessions_grown_to_3_470_114_distinct_rows_fail_the_run_at_health_check(league_dag, db_uri):
    """The incident's numbers with distinct rows, which deduplication rightly keeps: the growth
    alarm fails the run at its last task, after every step's work is done and committed."""
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        conn.execute(
            """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
               SELECT id, 'Tuesday', '18:00', '19:30', 'Court 1', league_id FROM teams ORDER BY id LIMIT 41"""
        )
    assert league_dag.test(run_conf=CONF).state == "success"  # the night that sees 41 rows
    with psycopg.connect(db_uri) as conn:
        conn.execute(
            """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
               SELECT t.id, 'Tuesday', '18:00', '19:30', 'Court ' || (g + 1), t.league_id
               FROM generate_series(1, %s) g
               JOIN (SELECT id, league_id, row_number() OVER (ORDER BY id) - 1 AS n FROM teams) t ON t.n = g %% 41""",
            (ROWS - SESSIONS,),
        )
    night = league_dag.test(run_conf=CONF)
    assert night.state == "failed"
    states = {ti.task_id: ti.state for ti in night.get_task_instances()}
    assert states.pop("health_check") == "failed" and set(states.values()) == {"success"}, states
    with psycopg.connect(db_uri) as conn:
        assert conn.execute("SELECT count(*) FROM practice_times").fetchone()[0] == ROWS
        status, report = conn.execute("SELECT status, report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()
    assert status == "failed" and report["deduplicate"]["tables"]["practice_times"]["duplicates"] == 0
    assert report["error"].startswith("health_check: 1 health checks failed:\n- rows practice_times: 3,470,114")
    assert "41 rows at the last successful run, 3,470,114 now; growth 34,701.14x of max(baseline, 100)" in report["error"]
