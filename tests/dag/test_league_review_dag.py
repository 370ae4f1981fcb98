"""The league_review DAG: its wiring, collect and apply against a real PostgreSQL, and whole runs
with dag.test() (the answers written the way the REST API writes them; tests/e2e/test_review.py
answers through the API itself)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from helpers import REPO, copy_demo, night, one, q, read, user_counts, write

from league_import.errors import LockBusyError
from league_import.review import LEAVE, SAME, pending
from league_import.review_operators import apply_answers, collect
from league_import.runs import claim_run, finish_run, start_run
from league_import.sources import SCHEDULE_FILE, STATS_FILE

pytestmark = pytest.mark.dag

RENAME = {"Skokie 11": "Skokie Park 11"}
# The quarantined message's text: user-written, shown as evidence, never rendered as a template.
MESSAGE = "Series 13 SW lineup {{ run_id }}"


def renamed_source(folder):
    """The season with one team spelled anew, in both files: a suspected rename."""
    src = copy_demo(folder)
    stats = read(src, STATS_FILE)
    for r in stats:
        r["team"] = RENAME.get(r["team"], r["team"])
    write(src, STATS_FILE, stats)
    schedule = read(src, SCHEDULE_FILE)
    for r in schedule:
        r["home_team"] = RENAME.get(r["home_team"], r["home_team"])
        r["away_team"] = RENAME.get(r["away_team"], r["away_team"])
    write(src, SCHEDULE_FILE, schedule)
    return src


def team(conn, name) -> int:
    return one(conn, "SELECT id FROM teams WHERE team_name = %s", name)


def seed_users(conn, message_id: int | None = 103) -> None:
    """After a first night: user 7 on Skokie 11 with a poll, user 8 on Hinsdale PC I, and a
    message of user 8 written on a team id nobody knows (the next night quarantines it)."""
    skokie, hinsdale = team(conn, "Skokie 11"), team(conn, "Hinsdale PC I - 13 SW")
    conn.execute("INSERT INTO users (id, email) VALUES (7, 'seven@example.com'), (8, 'eight@example.com')")
    conn.execute("INSERT INTO team_memberships VALUES (7, %s, true), (8, %s, true)", (skokie, hinsdale))
    conn.execute("INSERT INTO polls (id, team_id, created_by, question) VALUES (7, %s, 7, 'Who plays?')", (skokie,))
    conn.commit()
    if message_id is not None:
        orphan_message(conn, message_id)


def orphan_message(conn, message_id, team_id=999999) -> None:
    conn.execute("SET session_replication_role = replica")  # written on an id nobody knows
    conn.execute(
        "INSERT INTO captain_messages (id, team_id, captain_user_id, message) VALUES (%s, %s, 8, %s)",
        (message_id, team_id, MESSAGE),
    )
    conn.execute("SET session_replication_role = origin")
    conn.commit()


def data_state(conn) -> dict:
    """What a decision changes: user rows and where they are, teams, open questions."""
    return {
        "users": user_counts(conn),
        "messages": q(conn, "SELECT id, team_id FROM captain_messages ORDER BY id"),
        "polls": q(conn, "SELECT id, team_id FROM polls ORDER BY id"),
        "teams": q(conn, "SELECT id, team_name, is_active FROM teams ORDER BY id"),
        "open": [i.id for i in pending(conn)],
    }


@pytest.fixture
def questions(conn, tmp_path):
    """A night, then the next night leaves one quarantined row and one suspected rename."""
    night(conn, "night-1")
    seed_users(conn)
    night(conn, "night-2", renamed_source(tmp_path))
    return conn


@pytest.fixture(scope="module")
def review_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("league_review")


def test_wiring(review_dag):
    from league_import.assets import TEAMS

    assert review_dag.dag_id == "league_review"
    assert list(review_dag.timetable.asset_condition.objects) == [TEAMS]  # schedule=[TEAMS]
    assert review_dag.catchup is False and review_dag.max_active_runs == 1
    assert review_dag.owner == "league-import" and review_dag.description and review_dag.doc_md
    assert "league-import review decide" in review_dag.doc_md
    collect_task, ask, apply = (review_dag.get_task(t) for t in ("collect_decisions", "ask", "apply_decisions"))
    assert ask.downstream_task_ids == {"apply_decisions"} and "ask" in collect_task.downstream_task_ids
    for task in (collect_task, ask, apply):
        assert task.owner == "league-import"
        assert task.doc_md and all(w in task.doc_md for w in ("Reads:", "Changes:", "Recover:"))
    # Every input a template field, shown in the rendered-template view.
    assert {"conn_id", "ask_task_id"} <= set(collect_task.template_fields)
    assert {"item", "response_timeout_minutes"} <= set(ask.template_fields)
    # What users wrote is shown as written: never a template (Jinja would run it).
    assert not {"subject", "body", "options"} & set(ask.template_fields)
    assert {"conn_id", "asked", "answers"} <= set(apply.template_fields)
    # One question per item (dynamic task mapping); no default answer, never retried.
    assert ask.is_mapped and ask.partial_kwargs["retries"] == 0
    assert ask.partial_kwargs["response_timeout_minutes"] == "{{ params.response_timeout_minutes }}"
    assert not ask.partial_kwargs.get("defaults") and ask.partial_kwargs.get("execution_timeout") is None
    assert apply.trigger_rule == "all_done" and apply.retries >= 5 and apply.retry_exponential_backoff
    timeout = review_dag.params.get_param("response_timeout_minutes")
    assert timeout.value == float(os.environ.get("LEAGUE_REVIEW_RESPONSE_TIMEOUT_MINUTES", 1200))
    assert timeout.schema["type"] == "number" and timeout.schema["title"] and timeout.description


def test_parsing_the_dag_file_stays_light():
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('pandas', 'psycopg', 'league_import.review', 'league_import.upsert') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "dags" / "league_review.py")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def answer(ask: dict, option: str, user: str = "reviewer") -> dict:
    """An answer as DecisionOperator returns it (the HITL response, with its item)."""
    return {"item": ask["item"], "chosen_options": [option], "responded_by_user": {"id": user, "name": user}}


def test_collect_asks_each_question_with_its_evidence_and_link(questions):
    conn = questions
    asks = collect(conn, dag_id="league_review", run_id="manual__2026-12-01T03:00:00+00:00", task_id="ask")
    message, rename = asks
    assert (message["item"].split(":")[0], rename["item"].split(":")[0]) == ("quarantine", "rename")
    hinsdale_i, hinsdale_ii = team(conn, "Hinsdale PC I - 13 SW"), team(conn, "Hinsdale PC II - 13 SW")
    assert message["options"] == [
        f"Hinsdale PC I - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_i})",
        f"Hinsdale PC II - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_ii})",
        LEAVE,
    ]
    assert message["subject"] == "Which team is captain_messages row 103 on?"
    assert f"**text**: {MESSAGE}" in message["body"] and "**author**: user 8" in message["body"]
    assert rename["options"] == [SAME, "different teams"]
    assert rename["subject"] == "Are 'Skokie 11' and 'Skokie Park 11' one team?"
    assert "**user rows on the old id**: 1 polls, 1 team_memberships" in rename["body"]
    assert "@" not in str(asks)  # users by id only
    links = q(conn, "SELECT item, dag_run_id, task_id, map_index, url_path FROM etl.review_links ORDER BY map_index")
    run = "manual__2026-12-01T03%3A00%3A00%2B00%3A00"
    assert links == [
        (
            ask["item"],
            "manual__2026-12-01T03:00:00+00:00",
            "ask",
            i,
            f"/dags/league_review/runs/{run}/tasks/ask/mapped/{i}/required_actions",
        )
        for i, ask in enumerate(asks)
    ]


def test_apply_puts_the_row_on_the_chosen_team_and_merges(questions, db_uri):
    conn = questions
    asks = collect(conn, dag_id="league_review", run_id="review-1", task_id="ask")
    message, rename = asks
    hinsdale_ii = team(conn, "Hinsdale PC II - 13 SW")
    old, new = team(conn, "Skokie 11"), team(conn, "Skokie Park 11")
    users = user_counts(conn)

    report = apply_answers(
        lambda: psycopg.connect(db_uri),
        asks,
        [answer(message, message["options"][1]), answer(rename, SAME)],
        dag_run_id="review-1",
    )
    assert report["unanswered"] == [] and report["refused"] == {}
    assert report["applied"][message["item"]].endswith(f"with team_id = {hinsdale_ii}")
    assert report["applied"][rename["item"]].startswith(f"team {new} ('Skokie Park 11') merged into {old}")
    assert q(conn, "SELECT team_id, captain_user_id, message FROM captain_messages WHERE id = 103") == [
        (hinsdale_ii, 8, MESSAGE)
    ]
    assert q(conn, "SELECT id FROM teams WHERE team_name = 'Skokie Park 11'") == [(old,)]  # the old id kept
    assert one(conn, "SELECT count(*) FROM teams WHERE id = %s", new) == 0
    assert q(conn, "SELECT team_id FROM polls WHERE id = 7") == [(old,)]
    assert q(conn, "SELECT team_id FROM team_memberships WHERE user_id = 7") == [(old,)]
    assert user_counts(conn) == {**users, "captain_messages": users["captain_messages"] + 1}  # restored
    assert pending(conn) == []
    assert q(conn, "SELECT item, choice, decided_by, via, dag_run_id FROM etl.decisions ORDER BY id") == [
        (message["item"], message["options"][1], "airflow:reviewer", "airflow", "review-1"),
        (rename["item"], SAME, "airflow:reviewer", "airflow", "review-1"),
    ]

    # Answered again (another run, the CLI first): a no-op that says so.
    again = apply_answers(
        lambda: psycopg.connect(db_uri), asks, [answer(message, LEAVE, "late")], dag_run_id="review-2"
    )
    assert again["applied"][message["item"]].startswith("already resolved by airflow:reviewer")
    assert again["unanswered"] == [rename["item"]]
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 103") == hinsdale_ii


def test_unanswered_questions_stay_pending_and_change_nothing(questions, db_uri):
    conn = questions
    asks = collect(conn, dag_id="league_review", run_id="review-1", task_id="ask")
    before = data_state(conn)
    report = apply_answers(lambda: psycopg.connect(db_uri), asks, [], dag_run_id="review-1")
    assert report == {"applied": {}, "unanswered": [a["item"] for a in asks], "refused": {}}
    assert data_state(conn) == before and one(conn, "SELECT count(*) FROM etl.decisions") == 0


def test_an_import_run_holding_the_database_makes_apply_wait(questions, db_uri):
    """A live lease: refused as transient (Airflow retries later), nothing applied; once the run
    has ended, the same answers apply."""
    conn = questions
    asks = collect(conn, dag_id="league_review", run_id="review-1", task_id="ask")
    answers = [answer(asks[0], asks[0]["options"][0])]
    start_run(conn, "night-3", False, "league_import")
    claim_run(conn, "night-3", "league_import")
    before = data_state(conn)
    with pytest.raises(LockBusyError, match="run night-3 of league_import"):
        apply_answers(lambda: psycopg.connect(db_uri), asks, answers, dag_run_id="review-1")
    assert data_state(conn) == before and one(conn, "SELECT count(*) FROM etl.decisions") == 0
    # The lock is free again: the import's next task is not held up.
    with psycopg.connect(db_uri) as other:
        assert other.execute("SELECT pg_try_advisory_lock(7412002)").fetchone()[0]
    finish_run(conn, "night-3", "success")
    report = apply_answers(lambda: psycopg.connect(db_uri), asks, answers, dag_run_id="review-1")
    assert list(report["applied"]) == [asks[0]["item"]]


def test_an_answer_that_no_longer_fits_is_refused_and_stays_pending(questions, db_uri):
    conn = questions
    asks = collect(conn, dag_id="league_review", run_id="review-1", task_id="ask")
    report = apply_answers(
        lambda: psycopg.connect(db_uri), asks, [answer(asks[0], "Some team since renamed")], dag_run_id="review-1"
    )
    assert "is not one of" in report["refused"][asks[0]["item"]]
    assert asks[0]["item"] in [i.id for i in pending(conn)]


# -- whole runs with dag.test() -----------------------------------------------------------------


def respond(dag_id: str, choices: dict[int, str | None], user: str, timeout: float = 90) -> threading.Thread:
    """In the background, answer each parked question (by map index) as PATCH .../hitlDetails does
    (the response written, the task resumed); None as the scheduler's timeout sweep does. Past
    `timeout`, every question still parked times out, so that dag.test() always ends."""

    def work():
        from airflow._shared.timezones import timezone
        from airflow.models.hitl import HITLUser
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        left, deadline = dict(choices), time.monotonic() + timeout
        while left:
            time.sleep(0.5)
            late = time.monotonic() > deadline
            try:
                with create_session() as session:
                    query = (
                        select(TI)
                        .where(TI.dag_id == dag_id, TI.state == TaskInstanceState.AWAITING_INPUT)
                        .options(joinedload(TI.hitl_detail))
                    )
                    for ti in session.scalars(query).all():
                        if ti.map_index not in left and not late:
                            continue
                        option = None if late else left[ti.map_index]
                        if option is None:
                            event = {"error": "no response", "error_type": "timeout"}
                        else:
                            detail = ti.hitl_detail
                            detail.responded_by = HITLUser(id=user, name=user)
                            detail.responded_at = timezone.utcnow()
                            detail.chosen_options = [option]
                            detail.params_input = {}
                            event = detail.as_resume_event_payload()
                        handle_event_submit(TriggerEvent(event), task_instance=ti, session=session)
                        session.commit()
                        left.pop(ti.map_index, None)
            except Exception as exc:  # noqa: BLE001 (SQLite busy with the run's own session: try again)
                print(f"respond: {exc!r}")
            if late and not left:
                break

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def task_states(run) -> dict:
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


def test_a_run_with_nothing_pending_maps_no_question_and_succeeds(review_dag, conn):
    night(conn, "night-1")
    run = review_dag.test(run_conf={"response_timeout_minutes": 60})
    assert run.state == "success"
    states = task_states(run)
    assert states[("collect_decisions", -1)] == "success" and states[("apply_decisions", -1)] == "success"
    assert [k for k in states if k[0] == "ask" and k[1] >= 0] == []  # zero mapped questions


def test_a_run_asks_applies_the_answer_and_leaves_the_unanswered_pending(review_dag, questions):
    conn = questions
    items = {i.kind: i for i in pending(conn)}
    before_rename = q(conn, "SELECT id, team_name FROM teams WHERE team_name LIKE 'Skokie%%' ORDER BY id")
    hinsdale_i = team(conn, "Hinsdale PC I - 13 SW")
    # Map index i asks the i-th pending item (collect's order); the rename is left to time out.
    worker = respond("league_review", {0: items["quarantine"].options[0], 1: None}, user="reviewer")
    run = review_dag.test(run_conf={"response_timeout_minutes": 60})
    worker.join(5)
    assert run.state == "success"  # a question left unanswered is no failure of the run
    states = task_states(run)
    assert sorted(v for k, v in states.items() if k[0] == "ask") == ["failed", "success"]
    assert states[("apply_decisions", -1)] == "success"
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 103") == hinsdale_i
    assert q(conn, "SELECT id, team_name FROM teams WHERE team_name LIKE 'Skokie%%' ORDER BY id") == before_rename
    assert [i.id for i in pending(conn)] == [items["rename"].id]
    decided = q(conn, "SELECT item, decided_by, via, dag_run_id FROM etl.decisions")
    assert decided == [(items["quarantine"].id, "airflow:reviewer", "airflow", run.run_id)]
    # The question showed the evidence as written (never rendered as a template).
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        bodies = session.scalars(
            select(HITLDetail.body).join(TI, TI.id == HITLDetail.ti_id).where(TI.run_id == run.run_id)
        ).all()
    assert len(bodies) == 2 and any(f"**text**: {MESSAGE}" in b for b in bodies)


def test_a_decision_has_no_default_answer():
    """A default would be a guess taken at the timeout; the pipeline never guesses."""
    from league_import.review_operators import DecisionOperator

    with pytest.raises(ValueError, match="no default answer"):
        DecisionOperator(
            task_id="t", item="rename:1", subject="s", options=["a"], defaults="a", response_timeout_minutes=1
        )
