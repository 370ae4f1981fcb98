"""Decisions a person makes, against a real PostgreSQL: what is asked, with which evidence, and
what each answer does."""

from __future__ import annotations

import json
import re

import pytest
from helpers import copy_demo, night, one, q, read, write

from league_import.errors import DecisionError
from league_import.review import DIFFERENT, LEAVE, SAME, TYPED, RowChangedError, decide, pending, release
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
    assert message.evidence["league"] == "(unknown)"  # no league column, an old team id nobody knew
    assert message.evidence["reason"] == "the series named fits 2 of the author's teams"
    assert message.evidence["old team"] == "id 999999, unknown"
    assert message.evidence["now"] == "removed; its copy waits in the archive"
    one_, two = (
        f"Hinsdale PC I - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_i})",
        f"Hinsdale PC II - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_ii})",
    )
    assert message.options == [one_, two, TYPED, LEAVE]
    assert message.option_teams == {one_: hinsdale_i, two: hinsdale_ii}
    # Each team offered with why it is offered.
    assert message.option_evidence == {
        one_: "in the series the text names (13 SW); the author is a member",
        two: "in the series the text names (13 SW)",
    }
    body = message.body()
    assert "**text**: Series 13 SW lineup" in body and r"**table**: captain\_messages\.team\_id" in body
    assert f"choose *{TYPED}* and type its id" in body

    poll = by_subject(items, "polls row 300")
    assert (poll.evidence["author"], poll.evidence["text"], poll.options) == (
        "(no author)",
        "Nobody wrote this",
        [TYPED, LEAVE],
    )
    assert poll.evidence["now"] == "detached (no team), waiting"

    # A membership is named by its whole key; its user is its subject.
    memberships = [i for i in items if "team_memberships" in i.subject]
    assert sorted(json.loads(i.evidence["row"])["team_id"] for i in memberships) == [999997, 999998]
    assert {i.evidence["author"] for i in memberships} == {"user 1"}
    assert memberships[0].options == [
        f"Glenbrook RC 1 (APTA_CHICAGO, series 1, id {team(conn, 'Glenbrook RC 1')})",
        TYPED,
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
    assert done == (
        f"team_memberships row {row}: not inserted on team {glenbrook}: the table already holds a row with the same "
        "unique key there (etl_archive.team_memberships keeps the copy)"
    )
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
    with pytest.raises(DecisionError, match="expected quarantine:<id>, rename:<id> or growth:<id>"):
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


# -- what the app did since the quarantine (the red team's reproductions) ------------------------


def quarantined(conn, fragment):
    return by_subject(pending(conn), fragment)


def entry(conn, item):
    return q(
        conn,
        "SELECT resolved_team_id, resolved_by, resolution FROM etl.quarantine WHERE id = %s",
        int(item.id.split(":")[1]),
    )[0]


def test_a_row_the_app_deleted_is_never_brought_back(questions):
    conn, _ = questions
    poll = quarantined(conn, "polls row 300")
    conn.execute("DELETE FROM polls WHERE id = 300")  # the app, after the quarantine
    conn.commit()
    assert quarantined(conn, "polls row 300").evidence["now"] == "deleted by the app since the quarantine"
    done = decide(conn, poll.id, TYPED, team_id=team(conn, "Glenbrook RC 1"), by="ops", via="cli")
    assert done == (
        "polls row 300: deleted by the app since the quarantine; not restored (etl_archive.polls keeps its copy)"
    )
    assert one(conn, "SELECT count(*) FROM polls WHERE id = 300") == 0
    assert one(conn, "SELECT count(*) FROM etl_archive.polls WHERE id = 300") == 1
    assert entry(conn, poll) == (None, "the app", done)
    assert poll.id not in [i.id for i in pending(conn)]
    assert q(conn, "SELECT choice, outcome FROM etl.decisions") == [(f"{TYPED}: {team(conn, 'Glenbrook RC 1')}", done)]


def test_a_row_the_app_reattached_is_resolved_by_the_app_on_its_team(questions):
    conn, _ = questions
    poll = quarantined(conn, "polls row 300")
    glenbrook, hinsdale = team(conn, "Glenbrook RC 1"), team(conn, "Hinsdale PC I - 13 SW")
    conn.execute("UPDATE polls SET team_id = %s WHERE id = 300", (glenbrook,))  # the app's own answer
    conn.commit()
    done = decide(conn, poll.id, str(hinsdale), by="ops", via="cli")
    assert done == (
        f"polls row 300: re-attached by the app to team {glenbrook} since the quarantine; "
        f"the answer (team {hinsdale}) not applied"
    )
    assert one(conn, "SELECT team_id FROM polls WHERE id = 300") == glenbrook
    assert entry(conn, poll) == (glenbrook, "the app", done)


def test_a_row_the_app_changed_is_refused_and_asked_again_as_it_is_now(questions):
    conn, _ = questions
    poll = quarantined(conn, "polls row 300")
    glenbrook = team(conn, "Glenbrook RC 1")
    conn.execute("UPDATE polls SET question = 'Who plays on Sunday?' WHERE id = 300")
    conn.commit()
    with pytest.raises(RowChangedError, match=r"polls row 300 was changed by the app since the quarantine \(question\)"):
        decide(conn, poll.id, str(glenbrook), by="ops", via="cli")
    assert q(conn, "SELECT team_id, question FROM polls WHERE id = 300") == [(None, "Who plays on Sunday?")]
    assert one(conn, "SELECT count(*) FROM etl.decisions") == 0
    again = quarantined(conn, "polls row 300")
    assert again.evidence["text"] == "Who plays on Sunday?"  # the question shows the row as it is now
    assert decide(conn, poll.id, str(glenbrook), by="ops", via="cli") == f"polls row 300: team_id set to {glenbrook}"
    assert q(conn, "SELECT team_id, question FROM polls WHERE id = 300") == [(glenbrook, "Who plays on Sunday?")]


def test_a_value_the_apps_trigger_wrote_while_the_row_was_detached_is_no_change(conn, tmp_path):
    """The app's triggers run on the quarantine's own detaching update (a stamp column): that is
    the quarantine's write, not the app's since."""
    night(conn, "night-1")
    conn.execute("ALTER TABLE polls ADD COLUMN touched integer NOT NULL DEFAULT 0")  # the app's own schema
    conn.execute(
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN NEW.touched := OLD.touched + 1; RETURN NEW; END $$"
    )
    conn.execute("CREATE TRIGGER polls_touch BEFORE UPDATE ON polls FOR EACH ROW EXECUTE FUNCTION touch()")
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (300, 999999, 'Nobody wrote this')")
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    night(conn, "night-2")
    assert q(conn, "SELECT team_id, touched FROM polls WHERE id = 300") == [(None, 1)]
    poll = quarantined(conn, "polls row 300")
    glenbrook = team(conn, "Glenbrook RC 1")
    assert decide(conn, poll.id, str(glenbrook), by="ops", via="cli") == f"polls row 300: team_id set to {glenbrook}"


def test_an_inactive_team_only_when_the_person_confirms_it(questions):
    conn, _ = questions
    poll = quarantined(conn, "polls row 300")
    skokie = team(conn, "Skokie 11")  # left the files the second night
    assert one(conn, "SELECT is_active FROM teams WHERE id = %s", skokie) is False
    with pytest.raises(DecisionError, match=f"team {skokie} is inactive .*confirm it"):
        decide(conn, poll.id, TYPED, team_id=skokie, by="ops", via="cli")
    assert one(conn, "SELECT team_id FROM polls WHERE id = 300") is None
    done = decide(conn, poll.id, TYPED, team_id=skokie, inactive_ok=True, by="ops", via="cli")
    assert done == f"polls row 300: team_id set to {skokie}"


def test_evidence_is_shown_as_written_in_the_ui_and_the_terminal(questions):
    from markdown_it import MarkdownIt

    conn, _ = questions
    text = "**bold** [x](javascript:alert(1)) <script>alert(1)</script> \x1b[2J zero\u200bwidth \u202eevil"
    conn.execute("UPDATE polls SET question = %s WHERE id = 300", (text,))  # the app's user wrote it
    conn.commit()
    poll = quarantined(conn, "polls row 300")
    html = MarkdownIt("commonmark").render(poll.body())
    line = next(li for li in html.splitlines() if li.startswith("<li><strong>text</strong>"))
    assert "<script>" not in html and "href" not in html and line.count("<strong>") == 1
    shown = r"**bold** [x](javascript:alert(1)) <script>alert(1)</script> \x1b[2J zero\u200bwidth \u202eevil"
    from html import unescape

    assert unescape(html).count(shown) == 1  # rendered, the page shows the characters typed
    printed = "\n".join(poll.lines())
    assert shown in printed and "\x1b" not in printed and "\u200b" not in printed


def test_a_decision_stays_in_the_rows_league_and_the_health_check_sees_one_that_did_not(conn, tmp_path):
    """A practice time of one league, quarantined: a team of another league is refused (the row's
    own league_id names its league); a row set across leagues behind the pipeline's back is a
    health warning."""
    from helpers import add_league

    from league_import.health import run_checks

    src = add_league(copy_demo(tmp_path), "SECOND_LEAGUE")
    night(conn, "night-1", src)
    apta, second = (one(conn, "SELECT id FROM leagues WHERE code = %s", c) for c in ("APTA_CHICAGO", "SECOND_LEAGUE"))
    here = one(conn, "SELECT id FROM teams WHERE team_name = 'Glenbrook RC 1' AND league_id = %s", apta)
    there = one(conn, "SELECT id FROM teams WHERE team_name = 'Glenbrook RC 1' AND league_id = %s", second)
    conn.execute("SET session_replication_role = replica")
    conn.execute(
        "INSERT INTO practice_times (id, team_id, day_of_week, start_time, end_time, location, league_id) "
        "VALUES (500, 999999, 'Tuesday', '18:00', '19:30', 'Court 1', %s)",
        (apta,),
    )
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    night(conn, "night-2", src)
    practice = quarantined(conn, "practice_times row 500")
    assert practice.evidence["league"] == "APTA_CHICAGO" and practice.options == [TYPED, LEAVE]
    with pytest.raises(DecisionError, match=f"team {there} is in league SECOND_LEAGUE, the row in league APTA_CHICAGO"):
        decide(conn, practice.id, TYPED, team_id=there, by="ops", via="cli")
    assert one(conn, "SELECT team_id FROM practice_times WHERE id = 500") is None
    assert decide(conn, practice.id, str(here), by="ops", via="cli") == f"practice_times row 500: team_id set to {here}"

    checks = {(c.check, c.subject): c for c in run_checks(conn, "night-2")}
    assert checks[("leagues", "practice_times.team_id")].status == "ok"
    conn.execute("UPDATE practice_times SET team_id = %s WHERE id = 500", (there,))  # behind our back
    conn.commit()
    crossed = {(c.check, c.subject): c for c in run_checks(conn, "night-2")}[("leagues", "practice_times.team_id")]
    assert (crossed.status, crossed.figure, crossed.sample) == ("warn", 1, ["500"])
    assert crossed.detail == "rows on a team of another league than their own league_id: 1"
