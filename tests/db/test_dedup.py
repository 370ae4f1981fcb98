"""Deduplication on natural keys against a real PostgreSQL: archive, plan choice, retries."""

from __future__ import annotations

import psycopg
import pytest
from helpers import one, q

from league_import import sql as sql_module
from league_import.catalog import NaturalKey, natural_key
from league_import.constraints import check_constraints
from league_import.dedup import deduplicate
from league_import.errors import CountMismatchError
from league_import.schema import ensure_schema

PRACTICE = natural_key("practice_times")


def unique_keys(conn, table) -> list[str]:
    return [
        r[0]
        for r in q(
            conn,
            "SELECT conname::text FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'",
            f"public.{table}",
        )
    ]


@pytest.fixture
def schema(conn):
    """The schema with its constraints, then practice_times' key dropped as the old system had it."""
    ensure_schema(conn)
    check_constraints(conn)
    conn.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_natural_key")
    conn.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_team_id_fkey")
    conn.commit()
    return conn


def add_practices(conn, copies: dict[tuple, int]):
    """Insert `n` copies of each (day, start, location) session for team 7."""
    for (day, start, location), n in copies.items():
        conn.execute(
            """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location)
               SELECT 7, %s, %s::time, %s::time + interval '90 minutes', %s FROM generate_series(1, %s)""",
            (day, start, start, location, n),
        )
    conn.commit()


def test_most_rows_duplicate_uses_truncate_and_archives_every_copy(schema):
    add_practices(
        schema, {("Mon", "18:00", "Court 1"): 500, ("Tue", "19:00", "Court 2"): 300, ("Wed", "07:00", None): 2}
    )
    lowest = q(schema, "SELECT min(id) FROM practice_times GROUP BY day_of_week ORDER BY 1")
    report = deduplicate(schema, PRACTICE, "run-1")
    assert (report["rows_before"], report["duplicates"], report["rows_after"]) == (802, 799, 3)
    assert report["plan"] == "truncate_reload" and report["unique_added"] is True
    assert report["sample_keys"][0]["copies"] == 500
    assert report["sample_keys"][0]["key"]["location"] == "Court 1"
    assert q(schema, "SELECT id FROM practice_times ORDER BY id") == lowest  # the lowest id survives
    archived = q(schema, "SELECT count(*), min(run_id), min(reason) FROM etl_archive.practice_times")
    assert archived == [(799, "run-1", "duplicate")]
    # The archive keeps every column of the removed rows.
    assert (
        one(schema, "SELECT count(*) FROM etl_archive.practice_times WHERE location = 'Court 1' AND team_id = 7") == 499
    )
    assert unique_keys(schema, "practice_times") == ["practice_times_natural_key"]


def test_nulls_are_equal_in_the_key_and_in_the_constraint(schema):
    add_practices(schema, {("Wed", "07:00", None): 3})
    assert deduplicate(schema, PRACTICE, "run-1")["duplicates"] == 2
    with pytest.raises(psycopg.errors.UniqueViolation):
        add_practices(schema, {("Wed", "07:00", None): 1})


def test_few_duplicates_use_delete(schema):
    add_practices(schema, {(f"Day{i}", "18:00", "Court"): 1 for i in range(10)})
    add_practices(schema, {("Day1", "18:00", "Court"): 2})
    report = deduplicate(schema, PRACTICE, "run-1")
    assert (report["plan"], report["duplicates"], report["rows_after"]) == ("delete", 2, 10)


def test_rerun_changes_nothing_more(schema):
    add_practices(schema, {("Mon", "18:00", "Court 1"): 50})
    deduplicate(schema, PRACTICE, "run-1")
    # The key is enforced now: the table is neither scanned nor locked again.
    again = deduplicate(schema, PRACTICE, "run-1")
    assert (again["duplicates"], again["plan"], again["unique_added"]) == (0, "enforced", False)
    assert one(schema, "SELECT count(*) FROM etl_archive.practice_times") == 49
    schema.execute("SET lock_timeout = '2s'")  # were it to lock the table, it would fail, not hang
    schema.commit()
    with psycopg.connect(schema.info.dsn) as writer:  # a writer holding a row lock does not block it
        writer.execute("UPDATE practice_times SET location = location")
        assert deduplicate(schema, PRACTICE, "run-2")["plan"] == "enforced"
        writer.rollback()


def test_killed_midway_rolls_back_and_the_retry_reaches_the_clean_end_state(schema, monkeypatch):
    add_practices(schema, {("Mon", "18:00", "Court 1"): 50, ("Tue", "18:00", "Court 1"): 5})
    real = sql_module.statements

    def broken(family):
        found = real(family)
        return (
            {**found, "truncate_reload": "SELECT pg_terminate_backend(pg_backend_pid())"}
            if family == "dedup"
            else found
        )

    monkeypatch.setattr(sql_module, "statements", broken)
    with pytest.raises(psycopg.OperationalError):
        deduplicate(schema, PRACTICE, "run-1")
    monkeypatch.undo()
    with psycopg.connect(schema.info.dsn) as fresh:
        assert one(fresh, "SELECT count(*) FROM practice_times") == 55
        assert one(fresh, "SELECT to_regclass('etl_archive.practice_times')") is None  # rolled back with the rest
        report = deduplicate(fresh, PRACTICE, "run-1")
        assert (report["duplicates"], report["rows_after"]) == (53, 2)
        assert one(fresh, "SELECT count(*) FROM etl_archive.practice_times") == 53


def test_an_archive_copy_that_loses_rows_fails_the_step(schema):
    add_practices(schema, {(f"Day{i}", "18:00", "Court"): 1 for i in range(8)})
    add_practices(schema, {("Day1", "18:00", "Court"): 2})  # few duplicates: archived row by row
    schema.execute("CREATE TABLE etl_archive.practice_times (LIKE public.practice_times)")
    schema.execute(
        "CREATE FUNCTION etl_archive.drop_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
    )
    schema.execute(
        "CREATE TRIGGER lossy BEFORE INSERT ON etl_archive.practice_times FOR EACH ROW EXECUTE FUNCTION etl_archive.drop_all()"
    )
    schema.commit()
    with pytest.raises(CountMismatchError, match="practice_times: 2 duplicates, but 0 archived"):
        deduplicate(schema, PRACTICE, "run-1")
    assert one(schema, "SELECT count(*) FROM practice_times") == 10


def test_a_bulk_archive_batch_is_read_through_the_archive_table(schema):
    schema.execute("CREATE TABLE etl_archive.practice_times (LIKE public.practice_times)")  # NOT NULLs, made elsewhere
    schema.commit()
    add_practices(schema, {("Mon", "18:00", "Court 1"): 30})
    deduplicate(schema, PRACTICE, "run-1")
    schema.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_natural_key")
    schema.commit()
    add_practices(schema, {("Tue", "18:00", "Court 2"): 40})
    assert deduplicate(schema, PRACTICE, "run-2")["plan"] == "truncate_reload"
    counts = q(
        schema,
        "SELECT run_id, reason, count(*), count(archived_at) FROM etl_archive.practice_times GROUP BY 1, 2 ORDER BY 1",
    )
    assert counts == [("run-1", "duplicate", 29, 29), ("run-2", "duplicate", 39, 39)]
    batches = q(schema, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'etl_archive.practice_times'::regclass")
    assert batches == [(2,)]
    # Every column of the removed rows is there, with the live ids.
    assert one(schema, "SELECT count(DISTINCT id) FROM etl_archive.practice_times WHERE location = 'Court 2'") == 39


def test_dry_run_reports_and_changes_nothing(schema):
    add_practices(schema, {("Mon", "18:00", "Court 1"): 20})
    report = deduplicate(schema, PRACTICE, "run-1", dry_run=True)
    assert (report["duplicates"], report["sample_keys"][0]["copies"]) == (19, 20)
    assert one(schema, "SELECT count(*) FROM practice_times") == 20
    assert unique_keys(schema, "practice_times") == []


def test_generic_table_and_stated_order(conn):
    conn.execute("CREATE TABLE widgets (id bigint PRIMARY KEY, a text, b int, rank int)")
    conn.execute("INSERT INTO widgets VALUES (1, 'x', 1, 5), (2, 'x', 1, 9), (3, 'y', 2, 0), (4, 'x', 1, 1)")
    conn.commit()
    report = deduplicate(conn, NaturalKey("widgets", ("a", "b"), (("rank", "DESC"),)), "run-1")
    assert report["duplicates"] == 2
    assert q(conn, "SELECT id FROM widgets ORDER BY id") == [(2,), (3,)]  # highest rank kept
    assert q(conn, "SELECT id FROM etl_archive.widgets ORDER BY id") == [(1,), (4,)]


def test_membership_duplicates_keep_the_primary_one(conn):
    ensure_schema(conn)
    conn.execute("INSERT INTO users (id, email) VALUES (1, 'a@x'), (2, 'b@x')")
    conn.execute(
        "INSERT INTO team_memberships VALUES (1, 10, false), (1, 10, true), (1, 10, false), (2, 10, false), (2, 11, false)"
    )
    conn.commit()
    report = deduplicate(conn, natural_key("team_memberships"), "run-1")
    assert report["duplicates"] == 2
    assert q(conn, "SELECT user_id, team_id, is_primary FROM team_memberships ORDER BY 1, 2") == [
        (1, 10, True),
        (2, 10, False),
        (2, 11, False),
    ]


def test_referenced_table_is_never_truncated_and_references_move_to_the_survivor(conn):
    """Duplicate teams (the old system's re-inserts): user rows move to the surviving id."""
    ensure_schema(conn)
    conn.execute("INSERT INTO leagues (id, code) VALUES (1, 'L')")
    conn.execute("INSERT INTO clubs (id, name, name_key) VALUES (1, 'Club', 'club')")
    conn.execute("INSERT INTO series (id, league_id, name, series_key) VALUES (1, 1, 'Series 1', '1')")
    conn.execute(
        """INSERT INTO teams (id, league_id, club_id, series_id, team_name, team_key)
           VALUES (10, 1, 1, 1, 'Club 1', 'club'), (11, 1, 1, 1, 'Club 1', 'club'), (12, 1, 1, 1, 'Club 1', 'club')"""
    )
    conn.execute("INSERT INTO users (id, email) VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x')")
    # user 1 is on team 10 and on its duplicate 11 (a collision once merged); user 2 only on 12;
    # user 3's primary membership is on the duplicate 12, another on the survivor
    conn.execute(
        "INSERT INTO team_memberships VALUES (1, 10, true), (1, 11, false), (2, 12, false), (3, 10, false), (3, 12, true)"
    )
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (1, 11, 'Q1'), (2, 12, 'Q2'), (3, 10, 'Q3')")
    conn.commit()
    check_constraints(conn)  # teams' key is blocked by the duplicates; the foreign keys are added
    report = deduplicate(conn, natural_key("teams"), "run-1")
    assert (report["plan"], report["duplicates"]) == ("delete", 2)
    assert q(conn, "SELECT id FROM teams") == [(10,)]
    assert q(conn, "SELECT DISTINCT team_id FROM polls") == [(10,)]
    # One membership per user stays, the primary one wherever it was; the other is archived.
    assert q(conn, "SELECT user_id, team_id, is_primary FROM team_memberships ORDER BY 1") == [
        (1, 10, True),
        (2, 10, False),
        (3, 10, True),
    ]
    assert q(conn, "SELECT user_id, team_id, is_primary, reason FROM etl_archive.team_memberships ORDER BY 1") == [
        (1, 11, False, "duplicate"),
        (3, 10, False, "duplicate"),
    ]
    assert q(conn, "SELECT id FROM etl_archive.teams ORDER BY id") == [(11,), (12,)]
    assert report["repointed"]["polls.team_id"] == 2
    assert report["repointed"]["team_memberships: merged into an existing row"] == 2


def test_survivors_pointing_at_a_missing_team_are_not_truncated_and_reloaded(conn):
    """The incident with churned team ids: a valid foreign key would refuse the survivors when put
    back, before restore_mapping repairs them; so the duplicates are deleted instead."""
    ensure_schema(conn)
    check_constraints(conn)
    conn.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_natural_key")
    conn.execute("SET session_replication_role = replica")  # the old ETL deleted team 7
    conn.commit()
    add_practices(conn, {("Mon", "18:00", "Court 1"): 30, ("Tue", "18:00", "Court 1"): 20})
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    report = deduplicate(conn, PRACTICE, "run-1")
    assert (report["plan"], report["duplicates"], report["rows_after"]) == ("delete", 48, 2)
    assert one(conn, "SELECT count(*) FROM etl_archive.practice_times") == 48
    assert q(conn, "SELECT DISTINCT team_id FROM practice_times") == [(7,)]  # still orphans, for the repair
