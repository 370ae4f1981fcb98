"""Deduplication on natural keys against a real PostgreSQL: archive, plan choice, retries."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from helpers import one, q
from psycopg import sql

from league_import import dedup as dedup_module
from league_import import sql as sql_module
from league_import.catalog import NaturalKey, natural_key
from league_import.constraints import check_constraints
from league_import.dedup import deduplicate
from league_import.errors import CountMismatchError, LockBusyError
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


def test_most_rows_duplicate_are_copied_once_and_the_survivors_put_back(schema):
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


@pytest.mark.parametrize(
    ("family", "statement"),
    [
        ("dedup", "save_survivors"),  # locked and read, nothing written yet
        ("dedup", "truncate_reload"),  # the removed rows copied to the archive, the table not emptied
        ("dedup", "analyze"),  # emptied and its survivors back: all done but the statistics and the key
    ],
)
def test_killed_midway_rolls_back_and_the_retry_reaches_the_clean_end_state(schema, monkeypatch, family, statement):
    add_practices(schema, {("Mon", "18:00", "Court 1"): 50, ("Tue", "18:00", "Court 1"): 5})
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
    """Three nights' batches (one of them under a view that reads the table): all read through
    etl_archive.practice_times, with the live ids."""
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
    assert [p["plan"] for p in plans] == ["truncate_reload"] * 3
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


RICH = """
CREATE ACCESS METHOD heap_copy TYPE TABLE HANDLER heap_tableam_handler;
CREATE TABLE owners (id bigint PRIMARY KEY);
INSERT INTO owners VALUES (7);
CREATE TABLE rich (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    owner_id bigint REFERENCES owners (id),
    topic text NOT NULL,
    body text,
    n integer CONSTRAINT n_not_negative CHECK (n >= 0),
    twice integer GENERATED ALWAYS AS (n * 2) STORED,
    created timestamptz DEFAULT now()
) USING heap_copy WITH (fillfactor = 80, toast.autovacuum_enabled = false);
ALTER TABLE rich ALTER COLUMN topic SET (n_distinct = 5);
ALTER TABLE rich ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE rich ALTER COLUMN body SET STATISTICS 500;
ALTER TABLE rich REPLICA IDENTITY FULL;
ALTER TABLE rich ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers ON rich FOR SELECT USING (true);
CREATE INDEX rich_lower_topic ON rich (lower(topic)) WHERE body IS NOT NULL;
CREATE STATISTICS rich_pair ON topic, body FROM rich;
CREATE FUNCTION rich_stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER rich_stamp BEFORE INSERT ON rich FOR EACH ROW EXECUTE FUNCTION rich_stamp();
CREATE VIEW rich_topics AS SELECT DISTINCT topic FROM rich;
COMMENT ON TABLE rich IS 'notes';
COMMENT ON COLUMN rich.body IS 'the text';
GRANT SELECT ON rich TO PUBLIC;
REVOKE DELETE ON rich FROM CURRENT_USER;
"""


def dump_schema(conn, table: str) -> set[str]:
    """The table's definition as pg_dump --schema-only --table prints it, statement by statement
    (the embedded server's own pg_dump, which reads any server up to its version)."""
    import subprocess
    from pathlib import Path

    from league_import.app_demo import psql

    pg_dump = str(Path(psql()).with_name("pg_dump"))
    out = subprocess.run(
        [pg_dump, "--schema-only", "--table", f"public.{table}", "-d", conn.info.dsn],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    blocks = (b.strip() for b in out.split("\n\n"))
    return {b for b in blocks if b and not all(line.startswith(("--", "\\")) for line in b.splitlines())}


def test_the_table_keeps_its_definition_but_for_its_key_and_has_statistics(conn):
    """What pg_dump prints of the table is the same after the step but for the added key: access
    method, storage and toast options, per-column options, privileges (the owner's own lack of
    DELETE included), policies, triggers, statistics objects, comments, identity; and the planner
    has statistics of the table as it is now."""
    role = f"app_{conn.info.dbname}"
    conn.execute(RICH)
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT SELECT, INSERT ON rich TO {} WITH GRANT OPTION").format(sql.Identifier(role)))
    conn.execute("INSERT INTO rich (owner_id, topic, body, n) SELECT 7, 'a', 'same', 1 FROM generate_series(1, 40)")
    conn.execute("INSERT INTO rich (owner_id, topic, body, n) VALUES (7, 'b', NULL, 2)")
    conn.commit()
    before = dump_schema(conn, "rich")
    last_id = one(conn, "SELECT max(id) FROM rich")
    try:
        report = deduplicate(conn, NaturalKey("rich", ("topic", "body")), "run-1")
        assert (report["plan"], report["duplicates"], report["rows_after"]) == ("truncate_reload", 39, 2)
        after = dump_schema(conn, "rich")
        assert before - after == set()
        assert after - before == {
            "ALTER TABLE ONLY public.rich\n    ADD CONSTRAINT rich_natural_key UNIQUE NULLS NOT DISTINCT (topic, body);"
        }
        assert one(conn, "SELECT count(*) FROM pg_statistic WHERE starelid = 'rich'::regclass") >= 4
        assert one(conn, "SELECT reltuples FROM pg_class WHERE oid = 'rich'::regclass") == 2
        assert q(conn, "SELECT id, twice FROM rich ORDER BY id") == [(1, 2), (41, 4)]
        assert one(conn, "INSERT INTO rich (topic, n) VALUES ('c', 3) RETURNING id") == last_id + 1
        conn.rollback()
    finally:
        conn.rollback()
        conn.execute("DROP OWNED BY " + sql.Identifier(role).as_string(conn))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        conn.commit()


def test_a_serial_table_without_grants_or_an_id(conn):
    """A table made by another tool: a serial id whose sequence goes on; and a table with no id
    at all, its survivors found by ctid."""
    conn.execute("CREATE TABLE notes (id bigserial PRIMARY KEY, topic text NOT NULL, body text)")
    conn.execute("CREATE TABLE tallies (topic text, n int)")
    conn.execute("INSERT INTO notes (topic, body) SELECT 'a', 'same' FROM generate_series(1, 30)")
    conn.execute("INSERT INTO notes (topic, body) VALUES ('b', 'other')")
    conn.execute("INSERT INTO tallies SELECT 'x', 1 FROM generate_series(1, 20)")
    conn.commit()
    notes = deduplicate(conn, NaturalKey("notes", ("topic", "body")), "run-1")
    tallies = deduplicate(conn, NaturalKey("tallies", ("topic", "n")), "run-1")
    assert (notes["plan"], notes["duplicates"], tallies["plan"], tallies["duplicates"]) == (
        "truncate_reload",
        29,
        "truncate_reload",
        19,
    )
    assert q(conn, "SELECT id, topic FROM notes ORDER BY id") == [(1, "a"), (31, "b")]
    assert one(conn, "SELECT pg_get_serial_sequence('notes', 'id')") == "public.notes_id_seq"
    assert one(conn, "INSERT INTO notes (topic) VALUES ('c') RETURNING id") == 32
    assert q(conn, "SELECT topic, n FROM tallies") == [("x", 1)]
    assert one(conn, "SELECT count(*) FROM etl_archive.tallies") == 19
    conn.execute("DROP TABLE etl_archive.notes CASCADE")  # the archive holds nothing the table needs
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
    indexes = "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
    before = q(conn, indexes)
    report = deduplicate(conn, natural_key("teams"), "run-1")
    assert (report["plan"], report["duplicates"]) == ("delete", 2)
    # polls.team_id had no index: one served the delete's checks and went with the transaction.
    assert [i for i in q(conn, indexes) if i not in before] == [
        (
            "teams",
            "CREATE UNIQUE INDEX teams_natural_key ON public.teams USING btree (league_id, series_id, team_key) "
            "NULLS NOT DISTINCT",
        )
    ]
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


NOTES = """
CREATE TABLE squads (id bigint PRIMARY KEY, name text);
INSERT INTO squads VALUES (7, 'Seven');
CREATE TABLE notes (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, topic text, body text,
                    squad_id bigint REFERENCES squads);
INSERT INTO notes (topic, body, squad_id) SELECT 'a', 'same', 7 FROM generate_series(1, 30);
"""
NOTE_KEY = NaturalKey("notes", ("topic", "body"))


@pytest.mark.parametrize(
    "order",
    [
        ["SELECT count(*) FROM notes", "UPDATE squads SET name = 'Seven!' WHERE id = 7"],
        ["DELETE FROM squads WHERE id = 8", "SELECT count(*) FROM notes"],
        ["SELECT id FROM squads WHERE id = 7 FOR UPDATE", "INSERT INTO notes (topic, body, squad_id) VALUES ('z', 'z', 7)"],
    ],
    ids=["the table, then teams", "teams, then the table", "a team's row locked, then a write"],
)
def test_an_app_transaction_in_either_order_goes_through_and_the_step_waits(conn, order):
    """An app transaction touches the table and the table its rows point at, in either order,
    while the step works: the step never holds one lock while it waits for another, so the app's
    transaction finishes unharmed (never a deadlock victim) and the step goes on after it."""
    conn.execute(NOTES)
    conn.commit()
    first, then = order
    done: dict[str, object] = {}
    with psycopg.connect(conn.info.dsn) as app:
        app.execute("SET deadlock_timeout = '200ms'")  # the app's own detector, quick to fire
        app.execute(first)  # the transaction stays open: it holds its first lock

        def step():
            started = time.perf_counter()
            done["report"] = deduplicate(conn, NOTE_KEY, "run-1")
            done["seconds"] = time.perf_counter() - started

        worker = threading.Thread(target=step)
        worker.start()
        time.sleep(0.5)  # the step is trying for its locks now
        app.execute(then)  # would deadlock with a step that held one lock and waited for another
        time.sleep(0.3)
        app.commit()
        worker.join(30)
    assert not worker.is_alive()
    assert (done["report"]["duplicates"], done["report"]["rows_after"]) == (29, q(conn, "SELECT count(*) FROM notes")[0][0])
    assert done["seconds"] >= 0.5  # it waited for the app, the app never for it beyond a moment
    assert one(conn, "SHOW lock_timeout") == "0"  # the step's bounded waits did not outlive it


def test_a_lock_held_longer_than_the_steps_patience_fails_it_as_transient(conn, monkeypatch):
    conn.execute(NOTES)
    conn.commit()
    monkeypatch.setattr(dedup_module, "LOCK_PATIENCE_S", 0.5)
    with psycopg.connect(conn.info.dsn) as app:
        app.execute("SELECT count(*) FROM notes")  # held for longer than the step waits
        with pytest.raises(LockBusyError, match="nothing was changed"):
            deduplicate(conn, NOTE_KEY, "run-1")
        app.rollback()
    assert one(conn, "SELECT count(*) FROM notes") == 30
    assert deduplicate(conn, NOTE_KEY, "run-2")["duplicates"] == 29


def test_a_restarted_identity_and_a_long_name_and_a_generated_column(conn):
    """The identity goes on from a RESTART (the next value not yet handed out); a name near
    PostgreSQL's 63-byte limit keeps its archive batches apart; a generated column is computed
    again for the survivors put back."""
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
        assert report["plan"] == "truncate_reload"
        assert (
            one(conn, sql.SQL("INSERT INTO {} (topic, n) VALUES ('b', %s) RETURNING id, twice").format(table), night)
            == 1000
        )
        conn.execute(sql.SQL("DELETE FROM {} WHERE topic = 'b'").format(table))
        conn.commit()
    batches = one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass", f'etl_archive."{long_name}"')
    assert batches == 2
    assert q(conn, sql.SQL("SELECT id, twice FROM {}").format(table)) == [(1, 2)]
