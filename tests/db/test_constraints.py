"""validate_constraints on new databases and on ones left by the old system."""

from __future__ import annotations

import psycopg
import pytest

from league_import.catalog import natural_keys, references
from league_import.constraints import check_constraints, validate_team_references
from league_import.errors import ConstraintError
from league_import.schema import ensure_schema


def rows(conn, query, *args):
    found = conn.execute(query, args).fetchall()
    conn.rollback()
    return found


def constraint_states(conn) -> dict[str, tuple[str, bool]]:
    return {
        name: (kind, valid)
        for name, kind, valid in rows(
            conn,
            """SELECT conname::text, contype::text, convalidated FROM pg_constraint con
               JOIN pg_namespace n ON n.oid = con.connamespace AND n.nspname = 'public'
               WHERE contype IN ('u', 'f')""",
        )
    }


def by_name(findings):
    return {f.constraint: f for f in findings}


def test_new_database_gets_every_constraint_valid(conn):
    ensure_schema(conn)
    findings = check_constraints(conn)
    assert {f.state for f in findings} == {"added"}
    states = constraint_states(conn)
    assert len(states) == len(natural_keys()) + len(references())
    assert all(valid for _, valid in states.values())
    assert {f.state for f in check_constraints(conn)} == {"present"}


@pytest.fixture
def old_database(conn):
    """What the old system left: no keys, no foreign keys, duplicates and orphans."""
    ensure_schema(conn)
    conn.execute("INSERT INTO leagues (id, code) VALUES (1, 'L')")
    conn.execute("INSERT INTO clubs (id, name, name_key) VALUES (1, 'Club', 'club')")
    conn.execute("INSERT INTO series (id, league_id, name, series_key) VALUES (1, 1, 'Series 2B', '2B')")
    conn.execute(
        "INSERT INTO teams (id, league_id, club_id, series_id, team_name, team_key) VALUES (88120, 1, 1, 1, 'Club 2B', 'club')"
    )
    conn.execute("INSERT INTO users (id, email) VALUES (1, 'captain@x')")
    conn.execute("INSERT INTO polls (id, team_id, created_by, question) VALUES (1, 87189, 1, 'Practice?')")
    conn.execute(
        """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location)
           SELECT 88120, 'Mon', '18:00', '19:30', 'Court 1' FROM generate_series(1, 4)"""
    )
    conn.commit()
    return conn


def test_old_database_is_reported_and_made_safe(old_database):
    conn = old_database
    findings = by_name(check_constraints(conn))
    practice = findings["practice_times_natural_key"]
    assert (practice.state, practice.blocking_rows) == ("missing", 3)
    assert practice.sample == [
        {
            "key": {
                "team_id": 88120,
                "day_of_week": "Mon",
                "start_time": "18:00:00",
                "end_time": "19:30:00",
                "location": "Court 1",
            },
            "copies": 4,
        }
    ]
    assert "deduplicate removes 3 duplicate rows" in practice.action
    poll = findings["polls_team_id_fkey"]
    assert (poll.state, poll.blocking_rows, poll.sample) == ("added_not_valid", 1, [87189])
    assert findings["teams_natural_key"].state == "added"
    states = constraint_states(conn)
    assert states["polls_team_id_fkey"] == ("f", False)
    assert "practice_times_natural_key" not in states
    # NOT VALID still refuses new orphans.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO polls (id, team_id, question) VALUES (100, 99999, 'new orphan')")
    conn.rollback()


def test_foreign_keys_to_teams_are_validated_after_repair(old_database):
    conn = old_database
    check_constraints(conn)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        validate_team_references(conn)
    conn.execute("UPDATE polls SET team_id = 88120 WHERE team_id = 87189")  # what restore_mapping does
    conn.commit()
    assert validate_team_references(conn) == ["polls_team_id_fkey"]
    assert constraint_states(conn)["polls_team_id_fkey"] == ("f", True)


def test_what_no_step_can_fix_fails_and_changes_nothing(old_database):
    conn = old_database
    conn.execute("INSERT INTO polls (id, team_id, created_by, question) VALUES (2, 88120, 404, 'by a deleted user')")
    conn.commit()
    with pytest.raises(ConstraintError) as failure:
        check_constraints(conn)
    message = str(failure.value)
    assert "polls_created_by_fkey on polls: 1 row references missing users rows (e.g. created_by = [404])" in message
    assert "nothing was changed" in message
    assert constraint_states(conn) == {}


def test_a_missing_column_fails_with_its_name(conn):
    ensure_schema(conn)
    conn.execute("ALTER TABLE teams DROP COLUMN team_key")
    conn.commit()
    with pytest.raises(ConstraintError, match="teams_natural_key on teams: table teams lacks column\\(s\\) team_key"):
        check_constraints(conn)


def test_dry_run_reports_and_adds_nothing(old_database):
    findings = by_name(check_constraints(old_database, apply=False))
    assert findings["polls_team_id_fkey"].state == "added_not_valid"
    assert constraint_states(old_database) == {}


def test_an_existing_key_under_another_name_counts(conn):
    ensure_schema(conn)
    conn.execute(
        "CREATE UNIQUE INDEX legacy_practice_idx ON practice_times (team_id, day_of_week, start_time, end_time, location)"
    )
    conn.commit()
    assert by_name(check_constraints(conn))["practice_times_natural_key"].state == "present"


def test_a_personal_value_is_digested_with_this_installations_own_key(conn, pg_server):
    """An email in a report is an HMAC under a key made for this database: not its md5 or sha256
    (reversible from a list of candidate addresses), and another installation's digest differs."""
    import hashlib
    import hmac
    import uuid

    from conftest import with_database
    from psycopg import sql

    ensure_schema(conn)
    email = "captain1@example.com"
    digest = conn.execute("SELECT etl.personal_digest(%s)", (email,)).fetchone()[0]
    assert digest == conn.execute("SELECT etl.personal_digest(%s)", (email,)).fetchone()[0]
    assert digest.startswith("hmac:") and email not in digest
    plain = {hashlib.md5(email.encode()).hexdigest(), hashlib.sha256(email.encode()).hexdigest()}
    assert not any(p.startswith(digest.removeprefix("hmac:")) for p in plain)
    inner, outer = conn.execute("SELECT inner_pad, outer_pad FROM etl.digest_key").fetchone()
    key = bytes(b ^ 0x36 for b in inner)
    assert bytes(b ^ 0x5C for b in key) == outer
    assert digest == "hmac:" + hmac.new(key, email.encode(), hashlib.sha256).hexdigest()[:16]

    other = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    try:
        with psycopg.connect(with_database(pg_server, other)) as second:
            ensure_schema(second)
            assert second.execute("SELECT etl.personal_digest(%s)", (email,)).fetchone()[0] != digest
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(other)))
