"""Backup and restore_mapping against a real PostgreSQL: what the old system broke, repaired."""

from __future__ import annotations

import psycopg
import pytest
from helpers import DEMO_DATA, copy_demo, old_etl_churn, one, orphan_count, placement, q, read, user_counts, write

from league_import import sql as sql_module
from league_import.backup import BackupCountError, backup
from league_import.constraints import check_constraints
from league_import.repair import ReleaseError, release, restore_mapping
from league_import.runs import finish_run, start_run
from league_import.schema import ensure_schema
from league_import.sources import SCHEDULE_FILE, STATS_FILE, read_leagues
from league_import.upsert import check_deactivation_guard, load_league


def nightly(conn, run_id, source=DEMO_DATA, ratio=0.2) -> dict:
    """The DAG's steps in order, as plain functions (the DAG itself is tested in tests/dag)."""
    ensure_schema(conn)
    start_run(conn, run_id, False)
    check_constraints(conn)
    backup(conn, run_id)
    leagues = read_leagues(source, [])
    check_deactivation_guard(conn, leagues, ratio)
    for league in leagues:
        load_league(conn, league)
    report = restore_mapping(conn, run_id)
    finish_run(conn, run_id, "success")
    return report


def team(conn, name) -> int:
    return one(conn, "SELECT id FROM teams WHERE team_name = %s", name)


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
def league(conn):
    """The real season imported, and users with memberships, polls, messages and practices."""
    nightly(conn, "night-1")
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


def test_id_churn_and_deleted_teams_are_mapped_back_by_the_key_map(league):
    conn = league
    before, counts = placement(conn), user_counts(conn)
    old_ids = {name: team(conn, name) for _, name in CAPTAINS}
    old_etl_churn(conn, delete_outright=["Skokie 11", "Legends"])
    assert orphan_count(conn) == 4 * len(CAPTAINS)

    report = nightly(conn, "night-2")
    assert orphan_count(conn) == 0
    assert placement(conn) == before
    assert user_counts(conn) == counts
    assert report["by_strategy"]["key_map"] == 4 * len(CAPTAINS)
    assert report["by_strategy"]["quarantine"] == 0
    # The churned ids are the ones the old ETL issued: our upsert kept them (no new churn).
    assert team(conn, "Glenbrook RC 1") != old_ids["Glenbrook RC 1"]
    decided = q(conn, "SELECT strategy, count(*) FROM etl.repairs WHERE run_id = 'night-2' GROUP BY 1")
    assert decided == [("key_map", 32)]


def test_a_team_gone_from_sources_and_deleted_is_restored_under_its_id(league, tmp_path):
    conn = league
    src = copy_demo(tmp_path)
    write(src, STATS_FILE, [r for r in read(src, STATS_FILE) if r["team"] != "Skokie 11"])
    write(
        src, SCHEDULE_FILE, [r for r in read(src, SCHEDULE_FILE) if "Skokie 11" not in (r["home_team"], r["away_team"])]
    )
    nightly(conn, "night-2", src)  # Skokie 11 left the sources: deactivated, id kept
    skokie = team(conn, "Skokie 11")
    assert one(conn, "SELECT is_active FROM teams WHERE id = %s", skokie) is False
    before = placement(conn)
    old_etl_churn(conn, only_active=True)  # the old ETL re-created only the active teams

    report = nightly(conn, "night-3", src)
    assert report["by_strategy"]["restored_team"] == 4
    assert q(conn, "SELECT is_active, team_name FROM teams WHERE id = %s", skokie) == [(False, "Skokie 11")]
    assert placement(conn) == before and orphan_count(conn) == 0
    eleven = "SELECT t.id FROM teams t JOIN series s ON s.id = t.series_id WHERE s.series_key = '11' AND t.team_key = 'skokie'"
    assert q(conn, eleven) == [(skokie,)]  # one Skokie team in Series 11, under its original id
    # The identity sequence stays ahead of every restored id.
    assert one(conn, "SELECT nextval(pg_get_serial_sequence('teams', 'id')) > max(id) FROM teams")


def orphan_message(conn, message_id, author, text, team_id=999_999):
    """A captain message written on a team id nobody knows (no history in the key map)."""
    conn.execute("SET session_replication_role = replica")
    conn.execute(
        "INSERT INTO captain_messages (id, team_id, captain_user_id, message) VALUES (%s, %s, %s, %s)",
        (message_id, team_id, author, text),
    )
    conn.execute("SET session_replication_role = origin")
    conn.commit()


def test_orphans_with_no_history_use_text_then_the_author(league):
    conn = league
    orphan_message(conn, 100, 1, "Lineup for series 4 on Tuesday")  # Glenbrook RC's captain: Glenbrook RC 4
    orphan_message(conn, 101, 1, "Practice moved to 7:22")  # not series 22: the author's only team
    orphan_message(conn, 102, 4, "Chicago 19 SW match on Sunday")  # Butterfield's captain: Butterfield 19 SW
    orphan_message(conn, 103, 8, "Series 13 SW lineup")  # Hinsdale PC has I and II in 13 SW: ambiguous
    orphan_message(conn, 104, 2, "see you at 6:30 on 02/11/2025")  # author on one team: user context
    orphan_message(conn, 105, 1, "Series 2 needs a sub")  # Glenbrook RC has no Series 2 team: never the author's
    report = restore_mapping(conn, "repair-1")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 100") == team(conn, "Glenbrook RC 4")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 101") == team(conn, "Glenbrook RC 1")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 102") == team(conn, "Butterfield - 19 SW")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 104") == team(conn, "Wilmette PD I 11")
    assert report["by_strategy"] == {"key_map": 0, "restored_team": 0, "content": 2, "user_context": 2, "quarantine": 2}
    # captain_messages.team_id is NOT NULL: the undecided messages move to the archive, quarantined.
    assert one(conn, "SELECT count(*) FROM captain_messages WHERE id IN (103, 105)") == 0
    assert q(conn, "SELECT message, reason FROM etl_archive.captain_messages ORDER BY id") == [
        ("Series 13 SW lineup", "orphan"),
        ("Series 2 needs a sub", "orphan"),
    ]
    assert (
        one(conn, "SELECT reason FROM etl.quarantine WHERE row_id = '105'")
        == "the series named fits none of the author's teams"
    )
    reason, candidates = q(conn, "SELECT reason, candidates FROM etl.quarantine WHERE row_id = '103'")[0]
    assert reason == "the series named fits 2 of the author's teams"
    hinsdale = sorted([team(conn, "Hinsdale PC I - 13 SW"), team(conn, "Hinsdale PC II - 13 SW")])
    assert candidates == {"series": ["13 SW"], "teams": hinsdale}
    strategies = dict(q(conn, "SELECT row_id, strategy FROM etl.repairs WHERE run_id = 'repair-1'"))
    assert strategies == {
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
    cases = {
        200: ("Division 11 results", "Tennaqua 11"),
        201: ("S11 practice", "Tennaqua 11"),
        202: ("SERIES 11 lineup", "Tennaqua 11"),
    }
    for message_id, (text, _) in cases.items():
        orphan_message(conn, message_id, 50, text)
    orphan_message(conn, 203, 50, "series 11 and series 3 doubles")  # two series named, one fits
    restore_mapping(conn, "repair-1")
    for message_id, (_, name) in cases.items():
        assert one(conn, "SELECT team_id FROM captain_messages WHERE id = %s", message_id) == team(conn, name)
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 203") == team(conn, "Tennaqua 11")


def test_nullable_column_is_detached_not_removed(league):
    conn = league
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (300, 999999, 'Nobody wrote this')")
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    report = restore_mapping(conn, "repair-1")
    assert report["by_strategy"]["quarantine"] == 1
    assert q(conn, "SELECT team_id FROM polls WHERE id = 300") == [(None,)]
    assert q(conn, "SELECT team_id, reason FROM etl_archive.polls WHERE id = 300") == [(999999, "orphan")]
    assert "no author" in one(conn, "SELECT reason FROM etl.quarantine WHERE row_id = '300'")


def test_release_puts_quarantined_rows_back(league):
    conn = league
    orphan_message(conn, 103, 8, "Series 13 SW lineup")
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (300, 999999, 'Nobody wrote this')")
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    restore_mapping(conn, "repair-1")
    hinsdale_ii = team(conn, "Hinsdale PC II - 13 SW")
    assert "restored from etl_archive.captain_messages" in release(conn, "captain_messages", "103", hinsdale_ii)
    assert q(conn, "SELECT team_id, message FROM captain_messages WHERE id = 103") == [
        (hinsdale_ii, "Series 13 SW lineup")
    ]
    assert "set to" in release(conn, "polls", "300", hinsdale_ii)
    assert one(conn, "SELECT team_id FROM polls WHERE id = 300") == hinsdale_ii
    assert one(conn, "SELECT count(*) FROM etl.quarantine WHERE resolved_at IS NOT NULL") == 2
    with pytest.raises(ReleaseError, match="no unresolved quarantine entry for polls.team_id row 300"):
        release(conn, "polls", "300", hinsdale_ii)
    with pytest.raises(ReleaseError, match="no unresolved quarantine entry"):
        release(conn, "polls", "1", 12345)


def test_membership_on_old_and_new_id_merges_into_one(league):
    conn = league
    glenbrook = team(conn, "Glenbrook RC 1")
    old_etl_churn(conn)
    new_glenbrook = team(conn, "Glenbrook RC 1")
    conn.execute("SET session_replication_role = replica")  # the app re-joined user 1 while teams were churned
    conn.execute("INSERT INTO team_memberships VALUES (1, %s, false)", (new_glenbrook,))
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    nightly(conn, "night-2")
    assert q(conn, "SELECT team_id, is_primary FROM team_memberships WHERE user_id = 1") == [(new_glenbrook, False)]
    assert q(conn, "SELECT team_id, reason FROM etl_archive.team_memberships") == [(glenbrook, "duplicate")]
    assert orphan_count(conn) == 0


def test_rerun_and_dry_run_change_nothing_more(league):
    conn = league
    old_etl_churn(conn, delete_outright=["Skokie 11"])
    ensure_schema(conn)
    for lg in read_leagues(DEMO_DATA, []):
        load_league(conn, lg)
    dry = restore_mapping(conn, "night-2", dry_run=True)
    assert dry["orphans"] == 4 * len(CAPTAINS) and orphan_count(conn) == 4 * len(CAPTAINS)
    assert one(conn, "SELECT count(*) FROM etl.repairs") == 0
    first = restore_mapping(conn, "night-2")
    assert (first["orphans"], first["by_strategy"]) == (dry["orphans"], dry["by_strategy"])
    again = restore_mapping(conn, "night-2")
    assert again["orphans"] == 0 and orphan_count(conn) == 0


def test_killed_midway_the_retry_reaches_the_same_end_state(league, monkeypatch):
    conn = league
    before = placement(conn)
    old_etl_churn(conn)
    for lg in read_leagues(DEMO_DATA, []):
        load_league(conn, lg)
    real = sql_module.statements

    def dies_after_quarantine(family):
        found = real(family)
        if family == "repair":
            return {**found, "record_decisions": "SELECT pg_terminate_backend(pg_backend_pid())"}
        return found

    monkeypatch.setattr(sql_module, "statements", dies_after_quarantine)
    with pytest.raises(psycopg.OperationalError):
        restore_mapping(conn, "night-2")
    monkeypatch.undo()
    with psycopg.connect(conn.info.dsn) as fresh:
        assert orphan_count(fresh) == 4 * len(CAPTAINS)  # nothing half-done
        report = restore_mapping(fresh, "night-2")
        assert report["by_strategy"]["key_map"] == 4 * len(CAPTAINS)
        assert placement(fresh) == before


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
    for night in ("night-2", "night-3", "night-4"):
        start_run(conn, night, False)
        backup(conn, night)
        finish_run(conn, night, "success")
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
    with pytest.raises(BackupCountError, match="polls.team_id 7 vs 8"):
        backup(conn, "night-2")
    assert one(conn, "SELECT count(*) FROM etl.backup_refs WHERE run_id = 'night-2'") == 0
