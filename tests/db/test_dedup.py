"""Deduplication on natural keys against a real PostgreSQL: archive, plan choice, retries."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from helpers import one, q
from psycopg import sql
from psycopg.conninfo import make_conninfo

from league_import import dedup as dedup_module
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


def definition(conn, table: str) -> dict:
    """What a table is, as the app and a DBA see it: columns, keys, indexes, privileges, comment."""
    regclass = f"public.{table}"
    return {
        "columns": q(
            conn,
            """SELECT attname::text, format_type(atttypid, atttypmod), attnotnull, attidentity,
                      pg_get_expr(d.adbin, d.adrelid)
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
               WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
            regclass,
        ),
        "constraints": q(
            conn,
            """SELECT conname::text, pg_get_constraintdef(oid), convalidated FROM pg_constraint
               WHERE conrelid = %s::regclass ORDER BY conname""",
            regclass,
        ),
        "indexes": q(conn, "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY 1", table),
        "privileges": q(
            conn,
            "SELECT grantee::text, privilege_type, is_grantable FROM information_schema.role_table_grants "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY 1, 2",
            table,
        ),
        "comment": one(conn, "SELECT obj_description(%s::regclass, 'pg_class')", regclass),
    }


def test_most_rows_duplicate_move_the_heap_to_the_archive_and_archive_every_copy(schema):
    add_practices(
        schema, {("Mon", "18:00", "Court 1"): 500, ("Tue", "19:00", "Court 2"): 300, ("Wed", "07:00", None): 2}
    )
    lowest = q(schema, "SELECT min(id) FROM practice_times GROUP BY day_of_week ORDER BY 1")
    report = deduplicate(schema, PRACTICE, "run-1")
    assert (report["rows_before"], report["duplicates"], report["rows_after"]) == (802, 799, 3)
    assert report["plan"] == "move_heap" and report["unique_added"] is True
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


@pytest.mark.parametrize(
    ("family", "statement", "view"),
    [
        ("archive", "move_to_archive", False),  # the heap half moved
        ("dedup", "reload_survivors", False),  # moved, the new table still empty
        ("dedup", "truncate_reload", True),  # a view keeps the table: copied and truncated instead
    ],
)
def test_killed_midway_rolls_back_and_the_retry_reaches_the_clean_end_state(
    schema, monkeypatch, family, statement, view
):
    add_practices(schema, {("Mon", "18:00", "Court 1"): 50, ("Tue", "18:00", "Court 1"): 5})
    if view:
        schema.execute("CREATE VIEW mondays AS SELECT * FROM practice_times WHERE day_of_week = 'Mon'")
        schema.commit()
    before = definition(schema, "practice_times")
    real = sql_module.statements

    def broken(name):
        found = real(name)
        return {**found, statement: "SELECT pg_terminate_backend(pg_backend_pid())"} if name == family else found

    monkeypatch.setattr(sql_module, "statements", broken)
    with pytest.raises(psycopg.OperationalError):
        deduplicate(schema, PRACTICE, "run-1")
    monkeypatch.undo()
    with psycopg.connect(schema.info.dsn) as fresh:
        assert one(fresh, "SELECT count(*) FROM practice_times") == 55
        assert definition(fresh, "practice_times") == before
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


def test_archive_batches_are_read_through_the_archive_table(schema):
    """Two heaps moved on two nights (nothing of the first stands in the second's way) and one
    batch copied because a view names the table: all read through etl_archive.practice_times."""
    schema.execute("CREATE TABLE etl_archive.practice_times (LIKE public.practice_times)")  # NOT NULLs, made elsewhere
    schema.commit()
    plans = []
    for night, (day, court, copies) in enumerate(
        [("Mon", "Court 1", 30), ("Tue", "Court 2", 40), ("Wed", "Court 3", 50)]
    ):
        if night:
            schema.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_natural_key")
        if night == 2:
            schema.execute("CREATE VIEW wednesdays AS SELECT * FROM practice_times WHERE day_of_week = 'Wed'")
        schema.commit()
        add_practices(schema, {(day, "18:00", court): copies})
        plans.append(deduplicate(schema, PRACTICE, f"run-{night + 1}"))
    assert [p["plan"] for p in plans] == ["move_heap", "move_heap", "truncate_reload"]
    assert plans[2]["move_blocked_by"] == ["rule _RETURN on view wednesdays"]
    counts = q(
        schema,
        "SELECT run_id, reason, count(*), count(archived_at) FROM etl_archive.practice_times GROUP BY 1, 2 ORDER BY 1",
    )
    assert counts == [("run-1", "duplicate", 29, 29), ("run-2", "duplicate", 39, 39), ("run-3", "duplicate", 49, 49)]
    batches = q(schema, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'etl_archive.practice_times'::regclass")
    assert batches == [(3,)]
    # Every column of the removed rows is there, with the live ids.
    assert one(schema, "SELECT count(DISTINCT id) FROM etl_archive.practice_times WHERE location = 'Court 2'") == 39
    assert q(schema, "SELECT day_of_week, count(*) FROM practice_times GROUP BY 1 ORDER BY 1") == [
        ("Mon", 1),
        ("Tue", 1),
        ("Wed", 1),
    ]
    assert one(schema, "SELECT count(*) FROM wednesdays") == 1  # the view reads the live table still


def test_a_moved_table_keeps_its_definition_privileges_and_sequence(conn):
    """The app's view of the table is unchanged: the same columns, defaults, keys (by name),
    checks, foreign keys, indexes, grants and comment; new rows continue the id sequence. The
    batch keeps none of it, so it never refuses a row or blocks deleting a team."""
    ensure_schema(conn)
    check_constraints(conn)
    conn.execute("INSERT INTO leagues (id, code) VALUES (1, 'L')")
    conn.execute("INSERT INTO clubs (id, name, name_key) VALUES (1, 'Club', 'club')")
    conn.execute("INSERT INTO series (id, league_id, name, series_key) VALUES (1, 1, 'Series 1', '1')")
    conn.execute(
        """INSERT INTO teams (id, league_id, club_id, series_id, team_name, team_key)
           VALUES (7, 1, 1, 1, 'Club 1', 'club'), (8, 1, 1, 1, 'Club 2', 'club 2')"""
    )
    conn.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_natural_key")
    conn.execute("CREATE INDEX practice_by_location ON practice_times (lower(location)) WHERE location IS NOT NULL")
    conn.execute("ALTER TABLE practice_times ADD CONSTRAINT sane_times CHECK (end_time > start_time)")
    conn.execute("COMMENT ON TABLE practice_times IS 'when teams practise'")
    conn.execute("COMMENT ON COLUMN practice_times.location IS 'court'")
    role = f"app_{conn.info.dbname}"
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT SELECT, INSERT ON practice_times TO {} WITH GRANT OPTION").format(sql.Identifier(role)))
    conn.execute("GRANT SELECT ON practice_times TO PUBLIC")
    conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE practice_times_id_seq TO {}").format(sql.Identifier(role)))
    conn.commit()
    add_practices(conn, {("Mon", "18:00", "Court 1"): 40, ("Tue", "18:00", "Court 1"): 20})
    conn.execute(
        "INSERT INTO practice_times (team_id, day_of_week, start_time, end_time) VALUES (8, 'Fri', '07:00', '08:00')"
    )
    conn.commit()
    before = definition(conn, "practice_times")
    last_id = one(conn, "SELECT max(id) FROM practice_times")
    try:
        report = deduplicate(conn, PRACTICE, "run-1")
        assert (report["plan"], report["duplicates"], report["rows_after"]) == ("move_heap", 58, 3)
        after = definition(conn, "practice_times")
        after["constraints"].remove(
            (
                "practice_times_natural_key",
                "UNIQUE NULLS NOT DISTINCT (team_id, day_of_week, start_time, end_time, location)",
                True,
            )
        )
        after["indexes"] = [i for i in after["indexes"] if i[0] != "practice_times_natural_key"]
        assert after == before
        assert one(conn, "SELECT col_description('practice_times'::regclass, 6)") == "court"
        assert one(conn, "SELECT pg_get_serial_sequence('practice_times', 'id')") == "public.practice_times_id_seq"
        assert q(
            conn,
            "SELECT grantee::text, privilege_type FROM information_schema.usage_privileges "
            "WHERE object_name = 'practice_times_id_seq' AND grantee = %s",
            role,
        ) == [(role, "USAGE")]
        new_id = one(
            conn,
            "INSERT INTO practice_times (team_id, day_of_week, start_time, end_time) "
            "VALUES (7, 'Sat', '09:00', '10:00') RETURNING id",
        )
        assert new_id == last_id + 1
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # the moved table's foreign keys hold
            conn.execute(
                "INSERT INTO practice_times (team_id, day_of_week, start_time, end_time) VALUES (99, 'Sun', '09:00', '10:00')"
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO practice_times (team_id, day_of_week, start_time, end_time) VALUES (7, 'Sun', '10:00', '09:00')"
            )
        conn.rollback()
        # The batch: no key, no index, no foreign key, no grant; team 8's row... deleting a team its
        # archived rows name is not refused by the archive.
        batch = one(
            conn,
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'etl_archive.practice_times'::regclass",
        )
        assert q(
            conn, "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype <> 'n'", batch
        ) == [(0,)]
        assert q(conn, "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", batch) == [(0,)]
        assert q(
            conn,
            "SELECT count(*) FROM information_schema.role_table_grants WHERE table_schema = 'etl_archive' AND grantee <> current_user",
        ) == [(0,)]
        conn.execute("DELETE FROM practice_times WHERE team_id = 7")
        conn.execute("DELETE FROM teams WHERE id = 7")
        conn.commit()
        assert one(conn, "SELECT count(*) FROM etl_archive.practice_times WHERE team_id = 7") == 58
    finally:
        conn.rollback()
        conn.execute("DROP OWNED BY " + sql.Identifier(role).as_string(conn))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        conn.commit()


def test_a_serial_table_without_grants_or_an_id(conn):
    """A table made by another tool: a serial id whose sequence stays and changes owner; and a
    table with no id at all, its survivors found by ctid."""
    conn.execute("CREATE TABLE notes (id bigserial PRIMARY KEY, topic text NOT NULL, body text)")
    conn.execute("CREATE TABLE tallies (topic text, n int)")
    conn.execute("INSERT INTO notes (topic, body) SELECT 'a', 'same' FROM generate_series(1, 30)")
    conn.execute("INSERT INTO notes (topic, body) VALUES ('b', 'other')")
    conn.execute("INSERT INTO tallies SELECT 'x', 1 FROM generate_series(1, 20)")
    conn.commit()
    notes = deduplicate(conn, NaturalKey("notes", ("topic", "body")), "run-1")
    tallies = deduplicate(conn, NaturalKey("tallies", ("topic", "n")), "run-1")
    assert (notes["plan"], notes["duplicates"], tallies["plan"], tallies["duplicates"]) == (
        "move_heap",
        29,
        "move_heap",
        19,
    )
    assert q(conn, "SELECT id, topic FROM notes ORDER BY id") == [(1, "a"), (31, "b")]
    assert one(conn, "SELECT pg_get_serial_sequence('notes', 'id')") == "public.notes_id_seq"
    assert one(conn, "INSERT INTO notes (topic) VALUES ('c') RETURNING id") == 32
    assert q(conn, "SELECT topic, n FROM tallies") == [("x", 1)]
    assert one(conn, "SELECT count(*) FROM etl_archive.tallies") == 19
    # Dropping the archive keeps the sequence: it belongs to the live table now.
    conn.execute("DROP TABLE etl_archive.notes CASCADE")
    assert one(conn, "INSERT INTO notes (topic) VALUES ('d') RETURNING id") == 33


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


def test_the_apps_writes_waiting_on_a_moved_table_land_in_the_new_one(schema, monkeypatch):
    """A writer blocked by the move, with a statement the server prepared before it (psycopg
    prepares repeated statements), and a plain reader: once the move commits, PostgreSQL looks
    the name up again, so they see the new table, never the archive batch."""
    add_practices(schema, {("Mon", "18:00", "Court 1"): 30})
    insert = "INSERT INTO practice_times (team_id, day_of_week, start_time, end_time) VALUES (7, %s, '07:00', '08:00')"
    app = psycopg.connect(schema.info.dsn, autocommit=True, prepare_threshold=0)
    app.execute(insert, ("Sun",))  # prepared on the old table
    app.execute("DELETE FROM practice_times WHERE day_of_week = 'Sun'")
    seen: dict[str, object] = {}

    def read():
        with psycopg.connect(schema.info.dsn) as reader:  # the archive batch holds 29 such rows
            seen["read"] = one(reader, "SELECT count(*) FROM practice_times WHERE day_of_week = 'Mon'")

    threads = [
        threading.Thread(target=lambda: seen.update(write=app.execute(insert, ("Sat",)).rowcount)),
        threading.Thread(target=read),
    ]
    real = dedup_module.archive_table

    def archive_while_the_app_waits(cur, *args):
        batch = real(cur, *args)
        for thread in threads:
            thread.start()
        waiting = "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"  # live, unlike pg_stat_activity
        deadline = time.monotonic() + 10
        while cur.execute(waiting).fetchone()[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["waiting"] = cur.execute(waiting).fetchone()[0]  # both wait for the move's lock
        return batch

    monkeypatch.setattr(dedup_module, "archive_table", archive_while_the_app_waits)
    try:
        assert deduplicate(schema, PRACTICE, "run-1")["plan"] == "move_heap"
        for thread in threads:
            thread.join(10)
    finally:
        app.close()
    assert seen == {"waiting": 2, "write": 1, "read": 1}  # both waited for the commit, then used the new table
    assert q(schema, "SELECT day_of_week, count(*) FROM practice_times GROUP BY 1 ORDER BY 1") == [
        ("Mon", 1),
        ("Sat", 1),
    ]
    assert one(schema, "SELECT count(*) FROM etl_archive.practice_times") == 29


NOTES = "CREATE TABLE notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, topic text, body text)"


@pytest.mark.parametrize(
    ("setup", "finding"),
    [
        ("CREATE VIEW recent AS SELECT * FROM notes", "rule _RETURN on view recent"),
        (
            "CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;"
            "CREATE TRIGGER stamp BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION stamp()",
            "trigger stamp on table notes",
        ),
        ("CREATE VIEW counter AS SELECT last_value FROM notes_id_seq", "rule _RETURN on view counter"),
        ("CREATE TABLE other (n bigint DEFAULT nextval('notes_id_seq'))", "default value for column n of table other"),
        ("CREATE PUBLICATION feed FOR TABLE notes", "publications"),
        ("ALTER TABLE notes SET (fillfactor = 90)", "storage settings"),
        ("REVOKE DELETE ON notes FROM CURRENT_USER", "privileges not granted by the owner"),
        ("CREATE STATISTICS pair ON topic, body FROM notes", "statistics object pair"),
        ("COMMENT ON SEQUENCE notes_id_seq IS 'ids'", "comment on sequence notes_id_seq"),
    ],
)
def test_what_names_the_table_keeps_its_heap_and_the_copy_plan_runs(conn, setup, finding):
    """Anything bound to the table's oid (or that the new table would lack) keeps the table: the
    removed rows are copied instead, and the report says why."""
    conn.execute(NOTES)
    conn.execute(setup)
    conn.execute("INSERT INTO notes (topic, body) SELECT 'a', 'same' FROM generate_series(1, 30)")
    conn.commit()
    report = deduplicate(conn, NaturalKey("notes", ("topic", "body")), "run-1")
    assert (report["plan"], report["duplicates"]) == ("truncate_reload", 29)
    assert finding in report["move_blocked_by"]
    assert q(conn, "SELECT id FROM notes") == [(1,)]
    assert one(conn, "SELECT count(*) FROM etl_archive.notes") == 29


def test_a_typed_table_keeps_its_heap(conn):
    conn.execute("CREATE TYPE note AS (topic text, body text)")
    conn.execute("CREATE TABLE typed OF note")
    conn.execute("INSERT INTO typed SELECT 'a', 'same' FROM generate_series(1, 10)")
    conn.commit()
    report = deduplicate(conn, NaturalKey("typed", ("topic", "body")), "run-1")
    assert (report["plan"], report["move_blocked_by"]) == ("truncate_reload", ["not a plain table"])


def test_a_referenced_table_in_use_means_a_copy_never_a_deadlock(conn):
    """The move would lock `teams` (its foreign keys' target) until the commit. An app
    transaction holding `teams` that then waits for the table deadlocks with that, so the step
    waits at most MOVE_LOCK_WAIT for it and copies instead, changing nothing it had begun."""
    conn.execute("CREATE TABLE teams_x (id bigint PRIMARY KEY, name text)")
    conn.execute("INSERT INTO teams_x VALUES (7, 'Seven')")
    conn.execute(NOTES.replace("body text)", "body text, team_id bigint REFERENCES teams_x)"))
    conn.execute("INSERT INTO notes (topic, body, team_id) SELECT 'a', 'same', 7 FROM generate_series(1, 30)")
    conn.commit()
    with psycopg.connect(conn.info.dsn) as app:
        app.execute("UPDATE teams_x SET name = 'Seven!' WHERE id = 7")  # open: holds teams_x
        started = time.perf_counter()
        report = deduplicate(conn, NaturalKey("notes", ("topic", "body")), "run-1")
        took = time.perf_counter() - started
        app.commit()
    assert (report["plan"], report["move_blocked_by"], report["duplicates"]) == (
        "truncate_reload",
        ["a referenced table is in use"],
        29,
    )
    assert took < 5
    assert q(conn, "SELECT id, team_id FROM notes") == [(1, 7)]
    assert one(conn, "SELECT count(*) FROM etl_archive.notes") == 29
    assert one(conn, "SHOW lock_timeout") == "0"  # the step's own wait did not outlive it


def test_a_restarted_identity_and_a_long_name_and_a_generated_column(conn):
    """The identity goes on from a RESTART (the next value not yet handed out); a name near
    PostgreSQL's 63-byte limit keeps its batches apart; a generated column is computed again."""
    long_name = "practice_sessions_copied_by_the_old_backup_loop_for_league_x"  # 60 characters
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, topic text, n int,"
            " twice int GENERATED ALWAYS AS (n * 2) STORED)"
        ).format(sql.Identifier(long_name))
    )
    table = sql.Identifier(long_name)
    for night in (1, 2):
        if night == 2:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    table, sql.Identifier(f"{long_name}_natural_key"[:63])
                )
            )
        conn.execute(sql.SQL("INSERT INTO {} (topic, n) SELECT 'a', 1 FROM generate_series(1, 20)").format(table))
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN id RESTART WITH 1000").format(table))
        conn.commit()
        report = deduplicate(conn, NaturalKey(long_name, ("topic", "n")), f"run-{night}")
        assert report["plan"] == "move_heap"
        assert (
            one(conn, sql.SQL("INSERT INTO {} (topic, n) VALUES ('b', %s) RETURNING id, twice").format(table), night)
            == 1000
        )
        conn.execute(sql.SQL("DELETE FROM {} WHERE topic = 'b'").format(table))
        conn.commit()
    batches = one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", f'etl_archive."{long_name}"')
    assert batches == 2
    assert q(conn, sql.SQL("SELECT id, twice FROM {}").format(table)) == [(1, 2)]


def test_a_subscribed_table_keeps_its_heap(conn, pg_server):
    """Logical replication names a subscribed table by its oid (pg_subscription_rel, no pg_depend
    entry): moving it would leave the subscription applying to the archive."""
    publisher = f"pub_{conn.info.dbname}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(publisher)))
    conn.autocommit = True
    try:
        with psycopg.connect(make_conninfo(pg_server, dbname=publisher), autocommit=True) as source:
            source.execute(NOTES)
            source.execute("CREATE PUBLICATION feed FOR TABLE notes")
        conn.execute(NOTES)
        where = make_conninfo(host=conn.info.host, port=conn.info.port, user=conn.info.user, dbname=publisher)
        conn.execute(  # no slot, disabled: the table is subscribed, nothing replicates
            sql.SQL(
                "CREATE SUBSCRIPTION feed CONNECTION {} PUBLICATION feed"
                " WITH (create_slot = false, enabled = false, slot_name = NONE)"
            ).format(sql.Literal(where))
        )
        conn.execute("INSERT INTO notes (topic, body) SELECT 'a', 'same' FROM generate_series(1, 30)")
        conn.autocommit = False
        report = deduplicate(conn, NaturalKey("notes", ("topic", "body")), "run-1")
        assert (report["plan"], report["move_blocked_by"]) == ("truncate_reload", ["subscription"])
        assert one(conn, "SELECT srrelid::regclass::text FROM pg_subscription_rel") == "notes"
    finally:
        conn.rollback()
        conn.autocommit = True
        conn.execute("DROP SUBSCRIPTION IF EXISTS feed")
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(publisher)))
