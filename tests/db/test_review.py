"""Decisions a person makes, against a real PostgreSQL: what is asked, with which evidence, and
what each answer does."""

from __future__ import annotations

import json
import re

import pytest
from helpers import copy_demo, night, one, q, read, write

from league_import.errors import DecisionError
from league_import.review import DIFFERENT, LEAVE, SAME, decide, pending, release
from league_import.sources import SCHEDULE_FILE, STATS_FILE

RENAMES = {"Skokie 11": "Skokie Park 11", "Skokie 14": "Skokie Village 14"}


def team(conn, name) -> int:
    return one(conn, "SELECT id FROM teams WHERE team_name = %s", name)


def renamed_source(tmp_path):
    """The season with two teams spelled anew, in both files."""
    src = copy_demo(tmp_path)
    stats = read(src, STATS_FILE)
    for r in stats:
        r["team"] = RENAMES.get(r["team"], r["team"])
    write(src, STATS_FILE, stats)
    schedule = read(src, SCHEDULE_FILE)
    for r in schedule:
        r["home_team"] = RENAMES.get(r["home_team"], r["home_team"])
        r["away_team"] = RENAMES.get(r["away_team"], r["away_team"])
    write(src, SCHEDULE_FILE, schedule)
    return src


@pytest.fixture
def questions(conn, tmp_path):
    """A night that leaves rows in quarantine and two suspected renames."""
    night(conn, "night-1")
    skokie, hinsdale, glenbrook = (
        team(conn, "Skokie 11"),
        team(conn, "Hinsdale PC I - 13 SW"),
        team(conn, "Glenbrook RC 1"),
    )
    conn.execute(
        "INSERT INTO users (id, email) VALUES (1, 'one@example.com'), (7, 'seven@example.com'), (8, 'eight@example.com')"
    )
    conn.execute(
        "INSERT INTO team_memberships VALUES (1, %s, true), (7, %s, true), (8, %s, true)", (glenbrook, skokie, hinsdale)
    )
    conn.execute("INSERT INTO polls (id, team_id, created_by, question) VALUES (7, %s, 7, 'Who plays?')", (skokie,))
    conn.execute("SET session_replication_role = replica")  # written on ids nobody knows
    conn.execute(
        "INSERT INTO captain_messages (id, team_id, captain_user_id, message) VALUES (103, 999999, 8, 'Series 13 SW lineup')"
    )
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (300, 999999, 'Nobody wrote this')")
    conn.execute("INSERT INTO team_memberships VALUES (1, 999998, false), (1, 999997, false)")
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    src = renamed_source(tmp_path)
    night(conn, "night-2", src)
    return conn, src


def by_subject(items, fragment):
    return next(i for i in items if fragment in i.subject)


def test_pending_lists_each_question_with_its_evidence_and_options(questions):
    conn, _ = questions
    items = pending(conn)
    assert [i.kind for i in items] == ["quarantine"] * 4 + ["rename"] * 2
    hinsdale_i, hinsdale_ii = team(conn, "Hinsdale PC I - 13 SW"), team(conn, "Hinsdale PC II - 13 SW")

    message = by_subject(items, "captain_messages row 103")
    assert message.evidence["text"] == "Series 13 SW lineup"
    assert message.evidence["author"] == "user 8"
    assert message.evidence["author's teams"] == f"Hinsdale PC I - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_i})"
    assert message.evidence["reason"] == "the series named fits 2 of the author's teams"
    assert message.evidence["old team"] == "id 999999, unknown"
    assert message.options == [
        f"Hinsdale PC I - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_i})",
        f"Hinsdale PC II - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_ii})",
        LEAVE,
    ]
    assert message.option_teams == dict(zip(message.options[:2], [hinsdale_i, hinsdale_ii]))
    assert "**text**: Series 13 SW lineup" in message.body()

    poll = by_subject(items, "polls row 300")
    assert (poll.evidence["author"], poll.evidence["text"], poll.options) == (
        "(no author)",
        "Nobody wrote this",
        [LEAVE],
    )

    # A membership is named by its whole key; its user is its subject.
    memberships = [i for i in items if "team_memberships" in i.subject]
    assert sorted(json.loads(i.evidence["row"])["team_id"] for i in memberships) == [999997, 999998]
    assert {i.evidence["author"] for i in memberships} == {"user 1"}
    assert memberships[0].options == [
        f"Glenbrook RC 1 (APTA_CHICAGO, series 1, id {team(conn, 'Glenbrook RC 1')})",
        LEAVE,
    ]

    rename = by_subject(items, "'Skokie 11' and 'Skokie Park 11'")
    assert rename.options == [SAME, DIFFERENT]
    assert rename.evidence["old spelling"] == f"Skokie 11 (id {team(conn, 'Skokie 11')})"
    assert rename.evidence["new spelling"] == f"Skokie Park 11 (id {team(conn, 'Skokie Park 11')})"
    assert rename.evidence["user rows on the old id"] == "1 polls, 1 team_memberships"
    # Evidence names users by id only.
    text = json.dumps([(i.subject, i.evidence, i.options) for i in items])
    assert re.findall(r"[\w.+-]+@[\w-]+\.\w+", text) == []


def decisions(conn):
    return q(conn, "SELECT item, choice, decided_by, via FROM etl.decisions ORDER BY id")


def test_releasing_puts_rows_back_on_the_chosen_team(questions):
    conn, _ = questions
    items = pending(conn)
    message, poll = by_subject(items, "captain_messages row 103"), by_subject(items, "polls row 300")
    memberships = sorted((i for i in items if "team_memberships" in i.subject), key=lambda i: i.evidence["row"])
    hinsdale_ii = team(conn, "Hinsdale PC II - 13 SW")
    glenbrook = team(conn, "Glenbrook RC 1")

    # A removed message comes back from its archived copy, on the team chosen.
    done = decide(conn, message.id, message.options[1], by="ops@league", via="cli")
    assert done == f"captain_messages row 103: restored from etl_archive.captain_messages with team_id = {hinsdale_ii}"
    assert q(conn, "SELECT team_id, captain_user_id, message FROM captain_messages WHERE id = 103") == [
        (hinsdale_ii, 8, "Series 13 SW lineup")
    ]
    # A detached poll is attached again (a team id is an answer too).
    assert (
        decide(conn, poll.id, str(hinsdale_ii), by="ops", via="cli") == f"polls row 300: team_id set to {hinsdale_ii}"
    )
    assert one(conn, "SELECT team_id FROM polls WHERE id = 300") == hinsdale_ii
    # One of user 1's two memberships is released, the other left waiting.
    done = decide(conn, memberships[0].id, str(hinsdale_ii), by="ops", via="airflow", dag_run_id="review-1")
    assert done.endswith(f"restored from etl_archive.team_memberships with team_id = {hinsdale_ii}")
    # The apply task retried: the same outcome, nothing applied or recorded twice.
    assert decide(conn, memberships[0].id, str(hinsdale_ii), by="ops", via="airflow", dag_run_id="review-1") == done
    assert decide(conn, memberships[1].id, LEAVE, by="ops", via="airflow").endswith("stays in quarantine")
    assert q(conn, "SELECT team_id, is_primary FROM team_memberships WHERE user_id = 1 ORDER BY 1") == sorted(
        [(glenbrook, True), (hinsdale_ii, False)]
    )
    assert one(conn, "SELECT count(*) FROM etl.quarantine WHERE resolved_at IS NULL") == 1
    assert [i.id for i in pending(conn) if i.kind == "quarantine"] == [memberships[1].id]
    resolved = q(
        conn,
        "SELECT row_id, resolved_team_id, resolved_by FROM etl.quarantine WHERE row_id IN ('103', '300') ORDER BY 1",
    )
    assert resolved == [("103", hinsdale_ii, "ops@league"), ("300", hinsdale_ii, "ops")]

    # Answering again is a no-op that says so; so is an answer after the CLI resolved the row.
    again = decide(conn, message.id, message.options[0], by="someone else", via="cli")
    assert again.startswith("already resolved by ops@league") and again.endswith("nothing done")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 103") == hinsdale_ii
    # Released onto the team user 1 is already on: the same membership is not inserted twice.
    row = memberships[1].evidence["row"]
    done = release(conn, "team_memberships", row, glenbrook, by="cli-user")
    assert done == f"team_memberships row {row}: the same row already exists on team {glenbrook}; nothing inserted"
    assert one(conn, "SELECT count(*) FROM team_memberships WHERE user_id = 1") == 2
    assert decide(conn, memberships[1].id, LEAVE, by="ops", via="airflow").startswith("already resolved by cli-user")

    assert decisions(conn) == [
        (message.id, message.options[1], "ops@league", "cli"),
        (poll.id, str(hinsdale_ii), "ops", "cli"),
        (memberships[0].id, str(hinsdale_ii), "ops", "airflow"),
        (memberships[1].id, LEAVE, "ops", "airflow"),
        (message.id, message.options[0], "someone else", "cli"),
        (memberships[1].id, str(glenbrook), "cli-user", "cli release"),
        (memberships[1].id, LEAVE, "ops", "airflow"),
    ]
    assert one(conn, "SELECT dag_run_id FROM etl.decisions WHERE via = 'airflow' ORDER BY id LIMIT 1") == "review-1"


def test_answers_that_cannot_be_applied_are_refused(questions):
    conn, _ = questions
    message = by_subject(pending(conn), "captain_messages row 103")
    with pytest.raises(DecisionError, match="is not one of"):
        decide(conn, message.id, "Some other team", by="ops", via="cli")
    with pytest.raises(DecisionError, match="team 888888 does not exist"):
        decide(conn, message.id, "888888", by="ops", via="cli")
    with pytest.raises(DecisionError, match="expected quarantine:<id> or rename:<id>"):
        decide(conn, "poll:1", LEAVE, by="ops", via="cli")
    with pytest.raises(DecisionError, match="no quarantine entry 9999"):
        decide(conn, "quarantine:9999", LEAVE, by="ops", via="cli")
    with pytest.raises(DecisionError, match="no unresolved quarantine entry for polls.team_id row 1"):
        release(conn, "polls", "1", 12345, by="ops")
    assert one(conn, "SELECT count(*) FROM etl.decisions") == 0  # nothing half-applied, nothing recorded
    assert one(conn, "SELECT count(*) FROM etl.quarantine WHERE resolved_at IS NULL") == 4


def test_same_team_merges_and_different_teams_is_not_asked_again(questions):
    conn, src = questions
    renames = {i.subject: i for i in pending(conn) if i.kind == "rename"}
    same = renames["Are 'Skokie 11' and 'Skokie Park 11' one team?"]
    different = renames["Are 'Skokie 14' and 'Skokie Village 14' one team?"]
    old, new = team(conn, "Skokie 11"), team(conn, "Skokie Park 11")
    matches = one(conn, "SELECT count(*) FROM schedule WHERE %s IN (home_team_id, away_team_id)", new)
    assert matches > 0

    done = decide(conn, same.id, SAME, by="ops", via="cli")
    assert done.startswith(f"team {new} ('Skokie Park 11') merged into {old} ('Skokie 11')")
    # The old id survives, active, under the new spelling, with the new id's matches and the user rows.
    assert q(conn, "SELECT id, is_active FROM teams WHERE team_name = 'Skokie Park 11'") == [(old, True)]
    assert one(conn, "SELECT count(*) FROM teams WHERE id = %s", new) == 0
    assert one(conn, "SELECT count(*) FROM schedule WHERE %s IN (home_team_id, away_team_id)", old) == matches
    assert q(conn, "SELECT team_id FROM polls WHERE id = 7") == [(old,)]
    assert q(conn, "SELECT spelling, team_id, source, created_by FROM etl.team_aliases") == [
        ("Skokie Park 11", old, "merge", "ops")
    ]
    assert q(conn, "SELECT merged_into FROM etl.team_key_map WHERE team_id = %s", new) == [(old,)]

    assert decide(conn, different.id, DIFFERENT, by="ops", via="cli").endswith("not asked again")
    assert q(conn, "SELECT status, decided_by FROM etl.rename_suspects ORDER BY id") == [
        ("same", "ops"),
        ("different", "ops"),
    ]
    village = team(conn, "Skokie Village 14")
    assert one(conn, "SELECT is_active FROM teams WHERE id = %s", village) is True

    # Answering either again changes nothing and says so.
    teams = one(conn, "SELECT count(*) FROM teams")
    assert decide(conn, same.id, DIFFERENT, by="late", via="cli").startswith("already decided (same) by ops")
    assert decide(conn, different.id, SAME, by="late", via="cli").startswith("already decided (different) by ops")
    assert one(conn, "SELECT count(*) FROM teams") == teams and one(
        conn, "SELECT count(*) FROM teams WHERE id = %s", village
    )

    # The next night reads the new spelling as the old id, and asks nothing again.
    night(conn, "night-3", src)
    counts = one(
        conn, "SELECT report -> 'upsert_teams' -> 'leagues' -> 'APTA_CHICAGO' FROM etl.runs WHERE run_id = 'night-3'"
    )
    assert (counts["teams_created"], counts["teams_deactivated"]) == (0, 0)
    assert team(conn, "Skokie Park 11") == old
    assert [i for i in pending(conn) if i.kind == "rename"] == []
    assert [(c, b) for _, c, b, _ in decisions(conn)] == [
        (SAME, "ops"),
        (DIFFERENT, "ops"),
        (DIFFERENT, "late"),
        (SAME, "late"),
    ]
