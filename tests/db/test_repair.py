"""Backup and restore_mapping against a real PostgreSQL: what the old system broke, repaired."""

from __future__ import annotations

import json
import re
import uuid

import psycopg
import pytest
from helpers import (
    FRESH_DEMO,
    archived,
    copy_demo,
    create_user_data,
    night,
    old_etl_churn,
    one,
    orphan_count,
    placement,
    q,
    read,
    restart_identity_churn,
    user_counts,
    write,
)

from league_import import repair, steps
from league_import import sql as sql_module
from league_import.backup import backup
from league_import.catalog import natural_key
from league_import.dedup import deduplicate
from league_import.errors import CountMismatchError
from league_import.repair import restore_mapping
from league_import.runs import finish_run, start_run
from league_import.schema import ensure_schema
from league_import.sources import SCHEDULE_FILE, STATS_FILE

KILL = "SELECT pg_terminate_backend(pg_backend_pid())"


def repair_report(conn, run_id) -> dict:
    """What restore_mapping reported for a night (helpers.night keeps each step's report)."""
    return one(conn, "SELECT report -> 'restore_mapping' FROM etl.runs WHERE run_id = %s", run_id)


def up_to_repair(conn, run_id, source=FRESH_DEMO) -> None:
    """A night's steps before restore_mapping."""
    ensure_schema(conn)
    steps.validate(conn, run_id, source_dir=str(source), leagues=[], dry_run=False)
    backup(conn, run_id)
    steps.upsert(conn, run_id, max_ratio=0.2, dry_run=False)


def team(conn, name) -> int:
    return one(conn, "SELECT id FROM teams WHERE team_name = %s", name)


def strategies(conn, run_id) -> dict[str, int]:
    return dict(q(conn, "SELECT strategy, count(*) FROM etl.repairs WHERE run_id = %s GROUP BY 1", run_id))


CAPTAINS = [  # (user id, team as written in the stats file)
    (1, "Glenbrook RC 1"),
    (2, "Wilmette PD I 11"),
    (3, "Wilmette PD II 11"),
    (4, "Butterfield - 15 SW"),
    (5, "Winnetka 99 A"),
    (6, "Legends"),
    (7, "Skokie 11"),
    (8, "Hinsdale PC I - 13 SW"),
]


@pytest.fixture
def reconnect(db_uri):
    """New connections to the test database (a killed backend takes its connection along)."""
    opened = []

    def connect():
        opened.append(psycopg.connect(db_uri))
        return opened[-1]

    yield connect
    for connection in opened:
        connection.close()


@pytest.fixture
def league(conn):
    """The real season imported, and users with memberships, polls, messages and practices."""
    night(conn, "night-1")
    ids = {name: team(conn, name) for _, name in CAPTAINS}
    for user, name in CAPTAINS:
        team_id = ids[name]
        conn.execute("INSERT INTO users (id, email) VALUES (%s, %s)", (user, f"captain{user}@example.com"))
        conn.execute("INSERT INTO team_memberships VALUES (%s, %s, true)", (user, team_id))
        conn.execute(
            "INSERT INTO polls (id, team_id, created_by, question) VALUES (%s, %s, %s, 'Who can play Tuesday?')",
            (user, team_id, user),
        )
        conn.execute(
            "INSERT INTO captain_messages (id, team_id, captain_user_id, message) VALUES (%s, %s, %s, 'Bring balls')",
            (user, team_id, user),
        )
        conn.execute(
            """INSERT INTO practice_times (id, team_id, day_of_week, start_time, end_time, location, league_id)
               VALUES (%s, %s, 'Tuesday', '18:00', '19:30', 'Court 1', (SELECT league_id FROM teams WHERE id = %s))""",
            (user, team_id, team_id),
        )
    conn.commit()
    return conn


def as_app(conn, statement, *args):
    """A write the app made while the teams were gone (foreign-key triggers off, as the old system had)."""
    conn.execute("SET session_replication_role = replica")
    conn.execute(statement, args)
    conn.execute("SET session_replication_role = origin")
    conn.commit()


def orphan_message(conn, message_id, author, text, team_id=999_999):
    """A captain message written on a team id nobody knows (no history in the key map)."""
    as_app(
        conn,
        "INSERT INTO captain_messages (id, team_id, captain_user_id, message) VALUES (%s, %s, %s, %s)",
        message_id,
        team_id,
        author,
        text,
    )


def test_id_churn_and_deleted_teams_are_mapped_back_by_the_key_map(league):
    conn = league
    before, counts = placement(conn), user_counts(conn)
    old_ids = {name: team(conn, name) for _, name in CAPTAINS}
    old_etl_churn(conn, delete_outright=["Skokie 11", "Legends"])
    assert orphan_count(conn) == 4 * len(CAPTAINS)

    night(conn, "night-2")
    report = repair_report(conn, "night-2")
    assert orphan_count(conn) == 0
    assert placement(conn) == before
    assert user_counts(conn) == counts
    assert report["by_strategy"]["key_map"] == 4 * len(CAPTAINS)
    assert report["by_strategy"]["quarantine"] == 0
    # The churned ids are the ones the old ETL issued: our upsert kept them (no new churn).
    assert team(conn, "Glenbrook RC 1") != old_ids["Glenbrook RC 1"]
    assert strategies(conn, "night-2") == {"key_map": 32}


@pytest.mark.parametrize("killed", [False, True])
def test_a_team_gone_from_sources_and_deleted_is_restored_under_its_id(
    league, tmp_path, monkeypatch, reconnect, killed
):
    conn = league
    src = copy_demo(tmp_path)
    write(src, STATS_FILE, [r for r in read(src, STATS_FILE) if r["team"] != "Skokie 11"])
    write(
        src, SCHEDULE_FILE, [r for r in read(src, SCHEDULE_FILE) if "Skokie 11" not in (r["home_team"], r["away_team"])]
    )
    night(conn, "night-2", src)  # Skokie 11 left the sources: deactivated, id kept
    skokie = team(conn, "Skokie 11")
    assert one(conn, "SELECT is_active FROM teams WHERE id = %s", skokie) is False
    before = placement(conn)
    old_etl_churn(conn, only_active=True)  # the old ETL re-created only the active teams
    assert one(conn, "SELECT count(*) FROM teams WHERE id = %s", skokie) == 0

    if killed:  # in the first batch, after the team was restored: its rows are done and recorded
        up_to_repair(conn, "night-3", src)
        die_on(monkeypatch, "record_decisions", 1)
        with pytest.raises(psycopg.OperationalError):
            restore_mapping(conn, "night-3")
        monkeypatch.undo()
        conn = reconnect()
        assert restore_mapping(conn, "night-3")["by_strategy"]["key_map"] == 28
    else:
        night(conn, "night-3", src)
        assert repair_report(conn, "night-3")["by_strategy"]["restored_team"] == 4
    assert strategies(conn, "night-3") == {"key_map": 28, "restored_team": 4}
    assert q(conn, "SELECT is_active, team_name FROM teams WHERE id = %s", skokie) == [(False, "Skokie 11")]
    assert placement(conn) == before and orphan_count(conn) == 0
    eleven = """SELECT t.id FROM teams t JOIN series s ON s.id = t.series_id
                WHERE s.series_key = '11' AND t.team_key = 'skokie'"""
    assert q(conn, eleven) == [(skokie,)]  # one Skokie team in Series 11, under its original id
    # The identity sequence stays ahead of every restored id.
    assert one(conn, "SELECT nextval(pg_get_serial_sequence('teams', 'id')) > max(id) FROM teams")


def test_orphans_with_no_history_use_text_then_the_author(league):
    conn = league
    orphan_message(conn, 100, 1, "Lineup for series 4 on Tuesday")  # Glenbrook RC's captain: Glenbrook RC 4
    orphan_message(conn, 101, 1, "Practice moved to 7:22")  # not series 22: the author's only team
    orphan_message(conn, 102, 4, "Chicago 19 SW match on Sunday")  # Butterfield's captain: Butterfield 19 SW
    orphan_message(conn, 103, 8, "Series 13 SW lineup")  # Hinsdale PC has I and II in 13 SW: ambiguous
    orphan_message(conn, 104, 2, "see you at 6:30 on 02/11/2025")  # author on one team: user context
    orphan_message(conn, 105, 1, "Series 2 needs a sub")  # Glenbrook RC has no Series 2 team: never the author's
    report = restore_mapping(conn, "repair-1")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # everything committed
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 100") == team(conn, "Glenbrook RC 4")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 101") == team(conn, "Glenbrook RC 1")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 102") == team(conn, "Butterfield - 19 SW")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 104") == team(conn, "Wilmette PD I 11")
    assert report["by_strategy"] == {"key_map": 0, "restored_team": 0, "content": 2, "user_context": 2, "quarantine": 2}
    # captain_messages.team_id is NOT NULL: the undecided messages move to the archive, quarantined.
    assert one(conn, "SELECT count(*) FROM captain_messages WHERE id IN (103, 105)") == 0
    assert report["quarantined_rows_removed"] == {"captain_messages": 2}
    assert report["archived_rows"] == {"captain_messages": 2}  # each removed row has its copy
    assert q(conn, "SELECT id, message, reason FROM etl_archive.captain_messages ORDER BY id") == [
        (103, "Series 13 SW lineup", "orphan"),
        (105, "Series 2 needs a sub", "orphan"),
    ]
    assert (
        one(conn, "SELECT reason FROM etl.quarantine WHERE row_id = '105'")
        == "the series named fits none of the author's teams"
    )
    reason, candidates = q(conn, "SELECT reason, candidates FROM etl.quarantine WHERE row_id = '103'")[0]
    assert reason == "the series named fits 2 of the author's teams"
    hinsdale = sorted([team(conn, "Hinsdale PC I - 13 SW"), team(conn, "Hinsdale PC II - 13 SW")])
    assert candidates == {"series": ["13 SW"], "teams": hinsdale}
    assert dict(q(conn, "SELECT row_id, strategy FROM etl.repairs WHERE run_id = 'repair-1'")) == {
        "100": "content",
        "101": "user_context",
        "102": "content",
        "103": "quarantine",
        "104": "user_context",
        "105": "quarantine",
    }


def test_series_label_forms(league):
    conn = league
    tennaqua = team(conn, "Tennaqua 11")
    conn.execute("INSERT INTO users (id, email) VALUES (50, 'multi@example.com')")
    conn.execute("INSERT INTO team_memberships VALUES (50, %s, true)", (tennaqua,))
    conn.commit()
    for message_id, text in {200: "Division 11 results", 201: "S11 practice", 202: "SERIES 11 lineup"}.items():
        orphan_message(conn, message_id, 50, text)
    orphan_message(conn, 203, 50, "series 11 and series 3 doubles")  # two series named, one fits
    restore_mapping(conn, "repair-1")
    for message_id in (200, 201, 202, 203):
        assert one(conn, "SELECT team_id FROM captain_messages WHERE id = %s", message_id) == tennaqua
    assert strategies(conn, "repair-1") == {"content": 4}


@pytest.fixture
def letter_league(conn):
    """A league with letter series and a numbered one written in the compact form (NSTF style):
    user 50 plays for Tennaqua A and Tennaqua B, so only a message's text can place it."""
    ensure_schema(conn)
    conn.execute("INSERT INTO leagues (id, code) VALUES (1, 'NSTF')")
    conn.execute(
        "INSERT INTO clubs (id, name, name_key) VALUES (1, 'Tennaqua', 'tennaqua'), (2, 'Winnetka', 'winnetka')"
    )
    conn.execute(
        """INSERT INTO series (id, league_id, name, series_key)
           VALUES (1, 1, 'Series A', 'A'), (2, 1, 'Series B', 'B'), (3, 1, 'Series 2B', '2B'), (4, 1, 'Series 22', '22')"""
    )
    conn.execute(
        """INSERT INTO teams (id, league_id, club_id, series_id, team_name, team_key) VALUES
           (11, 1, 1, 1, 'Tennaqua A', 'tennaqua'), (12, 1, 1, 2, 'Tennaqua B', 'tennaqua'),
           (13, 1, 1, 3, 'Tennaqua S2B', 'tennaqua'), (14, 1, 1, 4, 'Tennaqua 22', 'tennaqua'),
           (15, 1, 2, 2, 'Winnetka B', 'winnetka')"""
    )
    conn.execute("INSERT INTO users (id, email) VALUES (50, 'multi@example.com')")
    conn.execute("INSERT INTO team_memberships VALUES (50, 11, true), (50, 12, false)")
    conn.commit()
    return conn


def test_letter_series_and_the_compact_form(letter_league):
    conn = letter_league
    cases = {
        400: ("Series B lineup is up", 12),
        401: ("S2B practice moved to Friday", 13),
        402: ("Practice moved to 7:22 for Series A", 11),  # 7:22 is a time, not series 22
        403: ("we need a series of wins", None),  # no series named; two teams: quarantined
        404: ("Practice moved to 7:22", None),  # not series 22 either
    }
    for message_id, (text, _) in cases.items():
        orphan_message(conn, message_id, 50, text)
    report = restore_mapping(conn, "repair-1")
    for message_id, (_, expected) in cases.items():
        found = q(conn, "SELECT team_id FROM captain_messages WHERE id = %s", message_id)
        assert found == ([(expected,)] if expected else []), message_id
    assert report["by_strategy"]["content"] == 3 and report["by_strategy"]["quarantine"] == 2
    reasons = dict(q(conn, "SELECT row_id, reason FROM etl.quarantine"))
    assert reasons == {"403": "the author belongs to 2 active teams", "404": "the author belongs to 2 active teams"}


def test_nullable_column_is_detached_not_removed(league):
    conn = league
    as_app(conn, "INSERT INTO polls (id, team_id, question) VALUES (300, 999999, 'Nobody wrote this')")
    report = restore_mapping(conn, "repair-1")
    assert report["by_strategy"]["quarantine"] == 1
    assert report["quarantined_rows_removed"] == {}
    assert report["archived_rows"] == {"polls": 1}  # detached, its copy archived
    assert q(conn, "SELECT team_id FROM polls WHERE id = 300") == [(None,)]
    assert q(conn, "SELECT team_id, reason FROM etl_archive.polls WHERE id = 300") == [(999999, "orphan")]
    assert "no author" in one(conn, "SELECT reason FROM etl.quarantine WHERE row_id = '300'")


def test_two_unplaceable_memberships_of_one_user_are_both_quarantined(league):
    conn = league
    as_app(conn, "INSERT INTO team_memberships VALUES (1, 999998, false), (1, 999999, false)")
    report = restore_mapping(conn, "repair-1")
    assert report["by_strategy"]["quarantine"] == 2
    waiting = q(conn, "SELECT row_id, old_team_id FROM etl.quarantine WHERE resolved_at IS NULL ORDER BY 2")
    assert [(json.loads(r), t) for r, t in waiting] == [
        ({"user_id": 1, "team_id": 999998}, 999998),
        ({"user_id": 1, "team_id": 999999}, 999999),
    ]
    # team_id is NOT NULL: both rows moved to the archive; user 1's real membership stays.
    assert q(conn, "SELECT team_id FROM etl_archive.team_memberships ORDER BY 1") == [(999998,), (999999,)]
    assert q(conn, "SELECT team_id FROM team_memberships WHERE user_id = 1") == [(team(conn, "Glenbrook RC 1"),)]
    assert orphan_count(conn) == 0

    # The next run succeeds, even when the app wrote the same membership again meanwhile: the
    # entry still waiting is kept as it is, the new copy archived beside the first.
    assert restore_mapping(conn, "repair-2")["orphans"] == 0
    as_app(conn, "INSERT INTO team_memberships VALUES (1, 999998, false)")
    again = restore_mapping(conn, "repair-3")
    assert again["by_strategy"]["quarantine"] == 1 and orphan_count(conn) == 0
    assert one(conn, "SELECT count(*) FROM etl.quarantine") == 2
    assert one(conn, "SELECT run_id FROM etl.quarantine WHERE old_team_id = 999998") == "repair-1"
    assert archived(conn, "team_memberships") == 3


def test_membership_on_old_and_new_id_keeps_the_primary_one(league):
    conn = league
    old_etl_churn(conn)
    new_glenbrook = team(conn, "Glenbrook RC 1")
    # the app re-joined user 1 (not as primary) while teams were churned
    as_app(conn, "INSERT INTO team_memberships VALUES (1, %s, false)", new_glenbrook)
    night(conn, "night-2")
    # The orphaned primary membership moves to the new id; the copy there is the duplicate.
    assert q(conn, "SELECT team_id, is_primary FROM team_memberships WHERE user_id = 1") == [(new_glenbrook, True)]
    assert q(conn, "SELECT team_id, is_primary, reason FROM etl_archive.team_memberships") == [
        (new_glenbrook, False, "duplicate")
    ]
    assert repair_report(conn, "night-2")["merged_into_existing_rows"] == {"team_memberships": 1}
    assert repair_report(conn, "night-2")["archived_rows"] == {"team_memberships": 1}
    assert orphan_count(conn) == 0


def state(conn) -> dict:
    """What a repair can change: user rows, the records kept for operators, the key map."""

    def digest(query):
        return one(
            conn,
            f"SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM ({query}) x",
        )

    tables = ["teams", "team_memberships", "polls", "captain_messages", "practice_times"]
    out = {t: digest(f"SELECT * FROM {t}") for t in tables}
    out |= {t: digest(f"SELECT * FROM etl.{t}") for t in ("repairs", "quarantine", "team_key_map", "team_aliases")}
    for table in tables:
        if one(conn, "SELECT to_regclass(%s)", f"etl_archive.{table}"):
            out[f"archive.{table}"] = digest(f"SELECT * FROM etl_archive.{table}")
    return out


def test_dry_run_and_rerun_change_nothing_more(league):
    conn = league
    old_etl_churn(conn, delete_outright=["Skokie 11"])
    as_app(conn, "INSERT INTO team_memberships VALUES (1, 999999, false)")  # one to quarantine
    up_to_repair(conn, "night-2")
    before = state(conn)
    sequence = "SELECT pg_sequence_last_value(pg_get_serial_sequence('teams', 'id'))"
    issued = one(conn, sequence)
    dry = restore_mapping(conn, "night-2", dry_run=True)
    assert dry["orphans"] == 4 * len(CAPTAINS) + 1 and dry["by_strategy"]["quarantine"] == 1
    assert state(conn) == before and one(conn, sequence) == issued
    assert one(conn, "SELECT to_regclass('pg_temp.repair_orphans')") is None  # no work left behind
    first = restore_mapping(conn, "night-2")
    assert (first["orphans"], first["by_strategy"]) == (dry["orphans"], dry["by_strategy"])
    assert orphan_count(conn) == 0
    done = state(conn)
    again = restore_mapping(conn, "night-2")
    assert again["orphans"] == 0 and again["batches"] == 0
    assert state(conn) == done


def drop_team_foreign_keys(conn) -> None:
    """The old system ran without foreign keys to teams (TRUNCATE teams refuses while they exist)."""
    for table, name in q(
        conn,
        """SELECT conrelid::regclass::text, conname::text FROM pg_constraint
           WHERE contype = 'f' AND confrelid = 'public.teams'::regclass""",
    ):
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    conn.commit()


def reused_ids_scenario(conn) -> dict:
    """Two good nights with user data, then the ids restarted in another order: every old id now
    names another team, and the user rows sit on the wrong teams (no orphan at all)."""
    night(conn, "night-1")
    create_user_data(conn)
    night(conn, "night-2")
    before = placement(conn)
    drop_team_foreign_keys(conn)
    restart_identity_churn(conn)
    assert orphan_count(conn) == 0 and placement(conn) != before
    return before


def key_map(conn, epoch) -> list:
    return q(
        conn,
        """SELECT team_id, league_code, series_key, team_key, team_name, merged_into
           FROM etl.team_key_map WHERE epoch = %s ORDER BY team_id""",
        epoch,
    )


def test_reused_ids_put_every_row_back_on_its_real_team(conn):
    before = reused_ids_scenario(conn)
    first_meanings = key_map(conn, 0)
    backed_up = one(conn, "SELECT count(*) FROM etl.backup_refs WHERE run_id = 'night-2' AND team_id < 999999")
    live = {k: v for k, v in q(conn, "SELECT id, team_key FROM teams")}

    night(conn, "night-3")
    report = repair_report(conn, "night-3")
    assert placement(conn) == before
    # Every row the last good backup shows on a re-used id, by the key map; the message written
    # on an unknown id (repaired after that backup) by its author's team, as it was then.
    assert strategies(conn, "night-3") == {"key_map": backed_up, "user_context": 1}
    assert report["reused_ids"] == len(first_meanings)
    reused = {r["team_id"]: r for r in report["reused_sample"]}  # the first few, for the report
    was = {team_id: key for team_id, _, _, key, _, _ in first_meanings}
    assert reused[1]["was"].endswith("/" + was[1]) and reused[1]["now"].endswith("/" + live[1])
    assert {r["evidence_run"] for r in reused.values()} == {"night-2"}
    # The key map keeps the first meanings as they were, and appends the new ones.
    assert key_map(conn, 0) == first_meanings
    assert [(t, k) for t, _, _, k, _, _ in key_map(conn, 1)] == sorted(live.items())
    assert q(conn, "SELECT DISTINCT settled_run FROM etl.team_key_map WHERE epoch = 1") == [("night-3",)]

    done = state(conn)
    night(conn, "night-4")
    nothing = repair_report(conn, "night-4")
    assert (nothing["orphans"], nothing["reused_ids"], nothing["batches"]) == (0, 0, 0)
    assert state(conn) == done and placement(conn) == before


@pytest.fixture
def second_conn(pg_server):
    """Another fresh database, to run the same story twice side by side."""
    from conftest import with_database
    from psycopg import sql

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(with_database(pg_server, name)) as connection:
        yield connection
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def end_state(conn) -> dict:
    """The outcome by real teams (league/series/key), not by ids."""
    keyed = """SELECT l.code || '/' || s.series_key || '/' || x.team_key FROM teams x
               JOIN series s ON s.id = x.series_id JOIN leagues l ON l.id = x.league_id WHERE x.id = {}"""
    return {
        "placement": placement(conn),
        "counts": user_counts(conn),
        "archived": {t: archived(conn, t) for t in ("team_memberships", "practice_times", "captain_messages")},
        "orphans": orphan_count(conn),
        "repairs": sorted(
            q(
                conn,
                f"SELECT table_name, row_id, strategy, ({keyed.format('r.new_team_id')}) FROM etl.repairs r "
                "WHERE run_id = 'night-3'",
            ),
            key=str,
        ),
        "quarantine": q(conn, "SELECT table_name, row_id, old_team_id, reason FROM etl.quarantine ORDER BY 1, 2"),
    }


def small_batches_story(conn) -> dict:
    reused_ids_scenario(conn)
    conn.execute("INSERT INTO team_memberships VALUES (1, 999998, false), (1, 999999, false)")  # to quarantine
    conn.commit()
    night(conn, "night-3")
    return repair_report(conn, "night-3")


def test_small_batches_reach_the_same_end_state(conn, second_conn, monkeypatch):
    monkeypatch.setattr(repair, "BATCH_ROWS", 2)
    small = small_batches_story(conn)
    monkeypatch.undo()
    default = small_batches_story(second_conn)
    assert small["batches"] > 4 * default["batches"]  # the patch took: many short transactions
    assert end_state(conn) == end_state(second_conn)
    assert end_state(conn)["orphans"] == 0 and len(end_state(conn)["quarantine"]) == 2


class DiesOn(dict):
    """A family of statements whose `name` kills its own backend the `nth` time it runs."""

    def __init__(self, found, name, nth, calls):
        super().__init__(found)
        self.name, self.nth, self.calls = name, nth, calls

    def __getitem__(self, key):
        if key == self.name:
            self.calls.append(key)
            if len(self.calls) == self.nth:
                return KILL
        return super().__getitem__(key)


def die_on(monkeypatch, name, nth) -> None:
    """Kill the backend the nth time restore_mapping runs its statement `name`."""
    real, calls = sql_module.statements, []

    def dying(family):
        return DiesOn(real(family), name, nth, calls) if family == "repair" else real(family)

    monkeypatch.setattr(sql_module, "statements", dying)


@pytest.mark.parametrize(
    ("story", "nth", "written"),
    [
        ("churned", 5, 8),  # in the memberships' fifth batch
        ("reused", 5, 8),
        ("reused", 92, 181),  # in the practices' batch, where every session trades places
    ],
)
def test_killed_inside_a_batch_the_retry_reaches_the_same_end_state(conn, monkeypatch, story, nth, written):
    """Batches of two: the ones before the kill stay written, the one it hit is rolled back."""
    if story == "churned":
        night(conn, "night-1")
        create_user_data(conn)
        night(conn, "night-2")
        before = placement(conn)
        old_etl_churn(conn)
    else:
        before = reused_ids_scenario(conn)
    counts = user_counts(conn)
    up_to_repair(conn, "night-3")
    monkeypatch.setattr(repair, "BATCH_ROWS", 2)
    die_on(monkeypatch, "record_decisions", nth)
    with pytest.raises(psycopg.OperationalError):
        restore_mapping(conn, "night-3")
    monkeypatch.undo()
    with psycopg.connect(conn.info.dsn) as fresh:
        assert one(fresh, "SELECT count(*) FROM etl.repairs WHERE run_id = 'night-3'") == written
        assert placement(fresh) != before
        report = restore_mapping(fresh, "night-3")
        assert report["left_for_next_run"] == {}
        assert placement(fresh) == before and orphan_count(fresh) == 0
        assert user_counts(fresh) == counts
        assert archived(fresh, "practice_times") == archived(fresh, "team_memberships") == 0
        recorded = q(
            fresh,
            "SELECT count(*), count(DISTINCT (table_name, row_id)) FROM etl.repairs WHERE run_id = 'night-3'",
        )
        assert recorded == [(4 * 60 + 1, 4 * 60 + 1)]  # each row repaired once, none twice
        # create_user_data's message on an unknown id: repaired after night-2's backup, so on a
        # re-used id it has no evidence there and goes by its author's team.
        expected = {"key_map": 4 * 60 + 1} if story == "churned" else {"key_map": 4 * 60, "user_context": 1}
        assert strategies(fresh, "night-3") == expected
        assert restore_mapping(fresh, "night-3")["orphans"] == 0


EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def test_no_email_address_in_any_report(league):
    conn = league
    skokie = team(conn, "Skokie 11")
    conn.execute("ALTER TABLE users DROP CONSTRAINT users_natural_key")  # as the old system had it
    conn.execute("INSERT INTO users (id, email) VALUES (9, 'captain1@example.com')")  # a second account
    conn.execute("INSERT INTO team_memberships VALUES (9, %s, false)", (skokie,))
    conn.commit()
    old_etl_churn(conn)
    as_app(conn, "INSERT INTO team_memberships VALUES (1, 999999, false)")
    night(conn, "night-2")
    deduplicated = deduplicate(conn, natural_key("users"), "dedup-1")
    assert deduplicated["duplicates"] == 1
    assert deduplicated["sample_keys"] == [
        {"copies": 2, "key": {"email": deduplicated["sample_keys"][0]["key"]["email"]}}
    ]
    assert deduplicated["sample_keys"][0]["key"]["email"].startswith("hmac:")
    runs = [r for (r,) in q(conn, "SELECT report FROM etl.runs ORDER BY run_id")]
    findings = runs[1]["validate_constraints"]["constraints"]["findings"]
    users_key = next(f for f in findings if f["constraint"] == "users_natural_key")
    assert users_key["sample"][0]["key"]["email"].startswith("hmac:")
    text = json.dumps([runs, deduplicated], default=str)
    assert "restore_mapping" in text and EMAIL.findall(text) == []


def test_backup_is_keyed_by_run_and_never_doubles(league):
    conn = league
    first = backup(conn, "night-2")
    again = backup(conn, "night-2")  # a retry
    assert first["row_counts"] == again["row_counts"]
    assert one(conn, "SELECT count(*) FROM etl.backup_refs WHERE run_id = 'night-2'") == sum(user_counts(conn).values())
    assert one(conn, "SELECT count(*) FROM etl.backup_teams WHERE run_id = 'night-2'") == 537
    assert first["copied"]["polls.team_id"] == first["row_counts"]["polls"] == len(CAPTAINS)
    assert one(conn, "SELECT count(*) FROM etl.team_key_map") == 537
    # Only this run's backup and the last successful run's are kept.
    for run_id in ("night-2", "night-3", "night-4"):
        start_run(conn, run_id, False)
        backup(conn, run_id)
        finish_run(conn, run_id, "success")
    assert [r for (r,) in q(conn, "SELECT DISTINCT run_id FROM etl.backup_teams ORDER BY 1")] == ["night-3", "night-4"]
    assert one(conn, "SELECT count(DISTINCT run_id) FROM etl.backup_counts") == 4  # counts are kept for trends


def test_a_backup_copy_that_loses_rows_fails_the_step(league):
    conn = league
    conn.execute(
        """CREATE FUNCTION etl.lose_polls() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN IF NEW.table_name = 'polls' AND NEW.row_id = '3' THEN RETURN NULL; END IF; RETURN NEW; END $$"""
    )
    conn.execute("CREATE TRIGGER lossy BEFORE INSERT ON etl.backup_refs FOR EACH ROW EXECUTE FUNCTION etl.lose_polls()")
    conn.commit()
    with pytest.raises(CountMismatchError, match="polls.team_id 7 vs 8"):
        backup(conn, "night-2")
    assert one(conn, "SELECT count(*) FROM etl.backup_refs WHERE run_id = 'night-2'") == 0
