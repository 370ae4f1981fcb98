"""The history of team ids against a real PostgreSQL: merges, aliases and re-keying."""

from __future__ import annotations

import psycopg
import pytest
from helpers import DATA_TABLES, USER_TABLES, night, one, placement, q, snapshot

from league_import.constraints import check_constraints
from league_import.errors import DecisionError
from league_import.history import add_alias, list_aliases, merge, refresh_key_map, rekey_teams, remove_alias
from league_import.identity import KEY_VERSION
from league_import.repair import restore_mapping
from league_import.schema import ensure_schema

STATS = "0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0"  # the twelve figures of a series_stats row


@pytest.fixture
def renamed(conn):
    """Wilmette PD 11 (id 10) left the files and Wilmette Park District 11 (id 11) came in: one
    team, two ids, with user rows and matches on both; every foreign key in place."""
    ensure_schema(conn)
    conn.execute("INSERT INTO leagues (id, code) VALUES (1, 'L')")
    conn.execute(
        """INSERT INTO clubs (id, name, name_key) VALUES
           (1, 'Wilmette PD', 'wilmettepd'), (2, 'Wilmette Park District', 'wilmetteparkdistrict'), (3, 'Other', 'other')"""
    )
    conn.execute(
        "INSERT INTO series (id, league_id, name, series_key) VALUES (1, 1, 'Series 11', '11'), (2, 1, 'Series 12', '12')"
    )
    conn.execute(
        """INSERT INTO teams (id, league_id, club_id, series_id, team_name, team_key, is_active) VALUES
           (10, 1, 1, 1, 'Wilmette PD 11', 'wilmettepd', false),
           (11, 1, 2, 1, 'Wilmette Park District 11', 'wilmetteparkdistrict', true),
           (12, 1, 3, 2, 'Other 12', 'other', true)"""
    )
    conn.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com'), (2, 'b@example.com')")
    # user 1: on both ids, the primary membership on the new one; user 2 only on the new one
    conn.execute("INSERT INTO team_memberships VALUES (1, 10, false), (1, 11, true), (2, 11, false)")
    conn.execute(
        "INSERT INTO polls (id, team_id, created_by, question) VALUES (1, 11, 1, 'Who plays?'), (2, 10, 1, 'Old')"
    )
    conn.execute("INSERT INTO captain_messages (id, team_id, captain_user_id, message) VALUES (1, 11, 1, 'Balls')")
    conn.execute(
        """INSERT INTO practice_times (id, team_id, day_of_week, start_time, end_time, location, league_id)
           VALUES (1, 11, 'Tue', '18:00', '19:30', 'Court 1', 1), (2, 10, 'Tue', '18:00', '19:30', 'Court 1', 1),
                  (3, 11, 'Thu', '18:00', '19:30', 'Court 1', 1)"""
    )
    conn.execute(
        """INSERT INTO schedule (id, league_id, series_id, match_date, home_team_id, away_team_id, location)
           VALUES (1, 1, 1, '2025-01-10', 11, 12, 'Wilmette'), (2, 1, 2, '2025-01-17', 12, 11, 'Other')"""
    )
    conn.execute(f"INSERT INTO series_stats VALUES (1, 1, 1, 11, {STATS}), (2, 1, 2, 12, {STATS})")
    conn.commit()
    assert {f.state for f in check_constraints(conn)} == {"added"}
    with conn.transaction(), conn.cursor() as cur:
        refresh_key_map(cur, "night-1")
    return conn


def state(conn) -> dict:
    """A digest of every table a merge may touch."""
    tables = [*DATA_TABLES, *USER_TABLES, "etl.team_key_map", "etl.team_aliases"]
    return {
        t: one(conn, f"SELECT count(*) || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x")
        for t in tables
    }


def references(conn, team_id) -> dict[str, int]:
    """Every row that still points at a team id."""
    columns = [
        ("team_memberships", "team_id"),
        ("polls", "team_id"),
        ("captain_messages", "team_id"),
        ("practice_times", "team_id"),
        ("schedule", "home_team_id"),
        ("schedule", "away_team_id"),
        ("series_stats", "team_id"),
    ]
    found = {f"{t}.{c}": one(conn, f"SELECT count(*) FROM {t} WHERE {c} = %s", team_id) for t, c in columns}
    return {k: n for k, n in found.items() if n}


def test_merge_moves_every_reference_in_the_callers_transaction(renamed):
    conn = renamed
    before = state(conn)
    with conn.transaction() as tx, conn.cursor() as cur:
        merge(cur, 10, 11, "merge-1", reason="rename", by="tester")
        assert cur.execute("SELECT count(*) FROM polls WHERE team_id = 11").fetchone()[0] == 0  # done, in it...
        raise psycopg.Rollback(tx)  # ...which decides: merge commits nothing by itself
    assert state(conn) == before

    with conn.transaction(), conn.cursor() as cur:
        report = merge(cur, 10, 11, "merge-1", reason="rename", by="tester")
    assert report["merged"] == 1
    assert references(conn, 11) == {}
    assert references(conn, 10) == {
        "team_memberships.team_id": 2,
        "polls.team_id": 2,
        "captain_messages.team_id": 1,
        "practice_times.team_id": 2,
        "schedule.home_team_id": 1,
        "schedule.away_team_id": 1,
        "series_stats.team_id": 1,
    }
    # User 1 keeps one membership, the primary one; the other is archived.
    assert q(conn, "SELECT user_id, team_id, is_primary FROM team_memberships ORDER BY 1") == [
        (1, 10, True),
        (2, 10, False),
    ]
    assert q(conn, "SELECT user_id, team_id, is_primary, reason FROM etl_archive.team_memberships") == [
        (1, 10, False, "merge")
    ]
    # Two copies of one practice session: the lowest id stays.
    assert q(conn, "SELECT id FROM practice_times ORDER BY id") == [(1,), (3,)]
    assert q(conn, "SELECT id, team_id, reason FROM etl_archive.practice_times") == [(2, 10, "merge")]
    # The merged row is archived and removed; the survivor takes the current spelling, keeps its key.
    assert q(conn, "SELECT id, team_name, run_id, reason FROM etl_archive.teams") == [
        (11, "Wilmette Park District 11", "merge-1", "rename")
    ]
    assert q(conn, "SELECT id, team_name, team_key, is_active FROM teams WHERE id IN (10, 11)") == [
        (10, "Wilmette Park District 11", "wilmettepd", True)
    ]
    assert q(conn, "SELECT merged_into, merged_run FROM etl.team_key_map WHERE team_id = 11") == [(10, "merge-1")]
    assert q(conn, "SELECT merged_into FROM etl.team_key_map WHERE team_id = 10") == [(None,)]
    assert q(
        conn, "SELECT league_code, series_key, spelling, team_key, team_id, source, created_by FROM etl.team_aliases"
    ) == [("L", "11", "Wilmette Park District 11", "wilmetteparkdistrict", 10, "merge", "tester")]

    # A row the app still writes on the merged id is repaired by the key map.
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, created_by, question) VALUES (3, 11, 2, 'Late')")
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    repaired = restore_mapping(conn, "repair-1")
    assert repaired["by_strategy"]["key_map"] == 1
    assert one(conn, "SELECT team_id FROM polls WHERE id = 3") == 10


@pytest.mark.parametrize(
    ("survivor", "merged", "message"),
    [
        (10, 10, "cannot be merged into itself"),
        (10, 12, "not in one league and series"),
        (10, 404, "team 404 does not exist"),
    ],
)
def test_a_merge_that_cannot_be_made_changes_nothing(renamed, survivor, merged, message):
    conn = renamed
    before = state(conn)
    with pytest.raises(DecisionError, match=message):
        with conn.transaction(), conn.cursor() as cur:
            merge(cur, survivor, merged, "merge-1", reason="rename", by="tester")
    assert state(conn) == before


def test_aliases_are_added_listed_moved_and_removed(renamed):
    conn = renamed
    with conn.transaction(), conn.cursor() as cur:
        first = add_alias(cur, "L", "Series 11", "WPD 11", 10, source="operator", by="op")
        # Another spelling with the same key is the same alias: it moves to the team named last.
        again = add_alias(cur, "L", "Series 11", "W.P.D. 11", 11, source="operator", by="op2")
        listed = list_aliases(cur, "L")
        assert list_aliases(cur, "NSTF") == []
    assert first == again
    assert [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in listed] == [
        (first, "L", "11", "W.P.D. 11", 11, "Wilmette Park District 11", "operator", "op2")
    ]
    with conn.transaction(), conn.cursor() as cur:
        with pytest.raises(DecisionError, match="not a team of league L, series 12"):
            add_alias(cur, "L", "Series 12", "WPD 12", 10, source="operator", by="op")
        with pytest.raises(DecisionError, match="only a series label"):
            add_alias(cur, "L", "Series 11", " - 11", 10, source="operator", by="op")
        assert remove_alias(cur, first) == ("L", "11", "W.P.D. 11", 11)
        with pytest.raises(DecisionError, match=f"no alias with id {first}"):
            remove_alias(cur, first)
    assert one(conn, "SELECT count(*) FROM etl.team_aliases") == 0


def team_of(conn, name) -> int:
    return one(conn, "SELECT id FROM teams WHERE team_name = %s", name)


def old_rules(conn) -> tuple[int, int, int]:
    """What the first release's rules (version 1) stored: club and team keys with the words as
    written ('glen ellyn'), so 'Glen-Ellyn 1' was another team than 'Glen Ellyn 1'. User 1 is on
    both, primary on the newer; a poll on the newer."""
    glen, glenbrook = team_of(conn, "Glen Ellyn 1"), team_of(conn, "Glenbrook RC 1")
    for team_id, old_key in ((glen, "glen ellyn"), (glenbrook, "glenbrook rc")):
        conn.execute("UPDATE teams SET team_key = %s WHERE id = %s", (old_key, team_id))
        conn.execute(
            "UPDATE clubs SET name_key = %s WHERE id = (SELECT club_id FROM teams WHERE id = %s)", (old_key, team_id)
        )
        conn.execute(
            "UPDATE etl.team_key_map SET team_key = %s, club_key = %s WHERE team_id = %s", (old_key, old_key, team_id)
        )
    conn.execute("INSERT INTO clubs (name, name_key) VALUES ('Glen-Ellyn', 'glen-ellyn')")
    dash = conn.execute(
        """INSERT INTO teams (league_id, club_id, series_id, team_name, team_key, created_at)
           SELECT league_id, (SELECT id FROM clubs WHERE name = 'Glen-Ellyn'), series_id, 'Glen-Ellyn 1', 'glen-ellyn',
                  now() + interval '1 day'
           FROM teams WHERE id = %s RETURNING id""",
        (glen,),
    ).fetchone()[0]
    conn.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    conn.execute("INSERT INTO team_memberships VALUES (1, %s, false), (1, %s, true)", (glen, dash))
    conn.execute("INSERT INTO polls (id, team_id, created_by, question) VALUES (1, %s, 1, 'Who plays?')", (dash,))
    conn.execute("UPDATE etl.settings SET value = '1' WHERE name = 'identity_key_version'")
    conn.commit()
    return glen, dash, glenbrook


def test_rekey_merges_teams_the_new_rules_see_as_one_and_rekeys_the_rest_once(conn):
    night(conn, "night-1")
    glen, dash, glenbrook = old_rules(conn)
    assert glen < dash

    night(conn, "night-2")
    rekey = one(conn, "SELECT report -> 'upsert_teams' -> 'rekey' FROM etl.runs WHERE run_id = 'night-2'")
    assert rekey["from_version"] == 1 and rekey["to_version"] == KEY_VERSION
    assert rekey["teams_merged"] == [{"survivor": glen, "merged": dash}]  # the older id survives
    assert rekey["clubs_merged"] == 1
    assert one(conn, "SELECT count(*) FROM teams WHERE id = %s", dash) == 0
    assert one(conn, "SELECT team_key FROM teams WHERE id = %s", glen) == "glenellyn"
    assert one(conn, "SELECT team_key FROM teams WHERE id = %s", glenbrook) == "glenbrookrc"  # re-keyed only
    assert one(conn, "SELECT count(*) FROM clubs WHERE name_key IN ('glen ellyn', 'glen-ellyn', 'glenbrook rc')") == 0
    assert q(conn, "SELECT name, reason FROM etl_archive.clubs") == [("Glen-Ellyn", "rekey")]
    assert q(conn, "SELECT id, reason FROM etl_archive.teams") == [(dash, "rekey")]
    # The user rows moved with the merge; one membership stays, the primary.
    assert q(conn, "SELECT team_id, is_primary FROM team_memberships WHERE user_id = 1") == [(glen, True)]
    assert one(conn, "SELECT team_id FROM polls WHERE id = 1") == glen
    assert q(conn, "SELECT merged_into FROM etl.team_key_map WHERE team_id = %s", dash) == [(glen,)]
    assert q(conn, "SELECT team_key FROM etl.team_key_map WHERE team_id = %s", glen) == [("glenellyn",)]
    assert one(conn, "SELECT count(*) FROM etl.team_aliases") == 0  # the keys agree now: no alias needed
    assert one(conn, "SELECT value FROM etl.settings WHERE name = 'identity_key_version'") == str(KEY_VERSION)
    # The files' spelling resolved to the survivor: no team created, none deactivated.
    counts = one(
        conn, "SELECT report -> 'upsert_teams' -> 'leagues' -> 'APTA_CHICAGO' FROM etl.runs WHERE run_id = 'night-2'"
    )
    assert (counts["teams_created"], counts["teams_deactivated"]) == (0, 0)

    # Once: the next night, and a direct call, change nothing.
    teams, users = snapshot(conn), placement(conn)
    night(conn, "night-3")
    assert one(conn, "SELECT report -> 'upsert_teams' ? 'rekey' FROM etl.runs WHERE run_id = 'night-3'") is False
    with conn.transaction(), conn.cursor() as cur:
        assert rekey_teams(cur, "again") == {}
    assert snapshot(conn) == teams and placement(conn) == users
