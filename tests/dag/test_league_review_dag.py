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

from league_import.errors import DecisionError, LockBusyError
from league_import.review import LEAVE, SAME, TYPED, pending
from league_import.review_operators import apply_answer, collect, form, question
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
    from league_import.assets import QUESTIONS

    assert review_dag.dag_id == "league_review"
    assert list(review_dag.timetable.asset_condition.objects) == [QUESTIONS]  # schedule=[QUESTIONS]
    assert review_dag.catchup is False and review_dag.max_active_runs == 1
    assert review_dag.owner == "league-import" and review_dag.description and review_dag.doc_md
    assert "league-import review decide" in review_dag.doc_md
    collect_task, ask, apply = (
        review_dag.get_task(t) for t in ("collect_decisions", "question.ask", "question.apply")
    )
    # One group per question: its answer is applied by its own task, as soon as it is given.
    assert "question.ask" in collect_task.downstream_task_ids and ask.downstream_task_ids == {"question.apply"}
    assert review_dag.task_group_dict["question"].__class__.__name__ == "MappedTaskGroup"
    for task in (collect_task, ask, apply):
        assert task.owner == "league-import"
        assert task.doc_md and all(w in task.doc_md for w in ("Reads:", "Changes:", "Recover:"))
    # Every input a template field, shown in the rendered-template view.
    assert {"conn_id", "ask_task_id"} <= set(collect_task.template_fields)
    assert {"item", "response_timeout_minutes", "conn_id"} <= set(ask.template_fields)
    # What users wrote is shown as written: never a template (Jinja would run it).
    assert not {"subject", "body", "options"} & set(ask.template_fields)
    assert {"conn_id", "answer"} <= set(apply.template_fields)
    # No default answer, never retried; applying retries while an import holds the database.
    assert ask.retries == 0 and not ask.defaults and ask.execution_timeout is None
    assert apply.retries >= 5 and apply.retry_exponential_backoff
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


def answer(item: str, option: str, user: str = "reviewer", **fields) -> dict:
    """An answer as DecisionOperator returns it (the HITL response, with its item)."""
    return {
        "item": item,
        "chosen_options": [option],
        "params_input": fields,
        "responded_by_user": {"id": user, "name": user},
    }


def test_collect_lists_each_question_and_its_link(questions):
    conn = questions
    asks = collect(conn, dag_id="league_review", run_id="manual__2026-12-01T03:00:00+00:00", task_id="question.ask")
    assert [a["item"].split(":")[0] for a in asks] == ["quarantine", "rename"]
    assert all(set(a) == {"item"} for a in asks)  # the question itself is read when it is asked
    message = question(conn, asks[0]["item"])
    hinsdale_i, hinsdale_ii = team(conn, "Hinsdale PC I - 13 SW"), team(conn, "Hinsdale PC II - 13 SW")
    assert message.options == [
        f"Hinsdale PC I - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_i})",
        f"Hinsdale PC II - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_ii})",
        TYPED,
        LEAVE,
    ]
    assert message.subject == "Which team is captain_messages row 103 on?"
    assert "**author**: user 8" in message.body()
    assert set(form(message.id)) == {"team_id", "inactive_team"} and form(asks[1]["item"]) == {}
    rename = question(conn, asks[1]["item"])
    assert rename.options == [SAME, "different teams"]
    assert rename.subject == "Are 'Skokie 11' and 'Skokie Park 11' one team?"
    assert "@" not in str([message.body(), rename.body()])  # users by id only
    links = q(conn, "SELECT item, dag_run_id, task_id, map_index, url_path FROM etl.review_links ORDER BY map_index")
    run = "manual__2026-12-01T03%3A00%3A00%2B00%3A00"
    assert links == [
        (
            ask["item"],
            "manual__2026-12-01T03:00:00+00:00",
            "question.ask",
            i,
            f"/dags/league_review/runs/{run}/tasks/question.ask/mapped/{i}/required_actions",
        )
        for i, ask in enumerate(asks)
    ]


def test_apply_puts_the_row_on_the_chosen_team_and_merges(questions):
    conn = questions
    message, rename = (question(conn, a["item"]) for a in collect(conn, dag_id="d", run_id="r", task_id="t"))
    hinsdale_ii = team(conn, "Hinsdale PC II - 13 SW")
    old, new = team(conn, "Skokie 11"), team(conn, "Skokie Park 11")
    users = user_counts(conn)

    done = apply_answer(conn, answer(message.id, message.options[1]), dag_run_id="review-1")
    assert done.endswith(f"with team_id = {hinsdale_ii}")
    assert apply_answer(conn, answer(rename.id, SAME), dag_run_id="review-1").startswith(
        f"team {new} ('Skokie Park 11') merged into {old}"
    )
    assert q(conn, "SELECT team_id, captain_user_id, message FROM captain_messages WHERE id = 103") == [
        (hinsdale_ii, 8, MESSAGE)
    ]
    assert q(conn, "SELECT id FROM teams WHERE team_name = 'Skokie Park 11'") == [(old,)]  # the old id kept
    assert one(conn, "SELECT count(*) FROM teams WHERE id = %s", new) == 0
    assert q(conn, "SELECT team_id FROM polls WHERE id = 7") == [(old,)]
    assert user_counts(conn) == {**users, "captain_messages": users["captain_messages"] + 1}  # restored
    assert pending(conn) == []
    assert q(conn, "SELECT item, choice, decided_by, via, dag_run_id FROM etl.decisions ORDER BY id") == [
        (message.id, message.options[1], "airflow:reviewer", "airflow", "review-1"),
        (rename.id, SAME, "airflow:reviewer", "airflow", "review-1"),
    ]
    # Answered again (another run, the CLI first): a no-op that says so.
    again = apply_answer(conn, answer(message.id, LEAVE, "late"), dag_run_id="review-2")
    assert again.startswith("already resolved by airflow:reviewer")
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 103") == hinsdale_ii


def test_a_typed_team_id_is_validated_as_the_cli_validates(questions):
    conn = questions
    message = question(conn, collect(conn, dag_id="d", run_id="r", task_id="t")[0]["item"])
    skokie = team(conn, "Skokie 11")  # inactive since the second night
    with pytest.raises(DecisionError, match="needs a team id"):
        apply_answer(conn, answer(message.id, TYPED), dag_run_id="review-1")
    with pytest.raises(DecisionError, match="team 888888 does not exist"):
        apply_answer(conn, answer(message.id, TYPED, team_id=888888), dag_run_id="review-1")
    with pytest.raises(DecisionError, match=f"team {skokie} is inactive"):
        apply_answer(conn, answer(message.id, TYPED, team_id=skokie, inactive_team=False), dag_run_id="review-1")
    assert one(conn, "SELECT count(*) FROM etl.decisions") == 0
    done = apply_answer(conn, answer(message.id, TYPED, team_id=skokie, inactive_team=True), dag_run_id="review-1")
    assert done.endswith(f"with team_id = {skokie}")
    assert q(conn, "SELECT choice FROM etl.decisions") == [(f"{TYPED}: {skokie}",)]


def test_an_import_run_holding_the_database_makes_apply_wait(questions):
    """A live lease: refused as transient (Airflow retries later), nothing applied; once the run
    has ended, the same answer applies."""
    conn = questions
    message = question(conn, collect(conn, dag_id="d", run_id="r", task_id="t")[0]["item"])
    start_run(conn, "night-3", False, "league_import")
    claim_run(conn, "night-3", "league_import")
    before = data_state(conn)
    with pytest.raises(LockBusyError, match="run night-3 of league_import"):
        apply_answer(conn, answer(message.id, message.options[0]), dag_run_id="review-1")
    assert data_state(conn) == before and one(conn, "SELECT count(*) FROM etl.decisions") == 0
    finish_run(conn, "night-3", "success")
    assert apply_answer(conn, answer(message.id, message.options[0]), dag_run_id="review-1")


# -- whole runs with dag.test() -----------------------------------------------------------------


def respond(dag_id: str, steps: list, user: str, timeout: float = 120) -> tuple[threading.Thread, list]:
    """In the background, take `steps` in order: (map_index, option, fields) answers that question
    once it is parked, as PATCH .../hitlDetails does (the response written, the task resumed);
    (map_index, None, None) times it out, as the scheduler's sweep does; a callable is polled
    until it returns a truthy value, which is kept in the list returned. Past `timeout`, every
    question still parked times out, so that dag.test() always ends."""
    seen: list = []

    def parked(session, map_index):
        from airflow.models.taskinstance import TaskInstance as TI
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select
        from sqlalchemy.orm import joinedload

        query = (
            select(TI)
            .where(TI.dag_id == dag_id, TI.task_id == "question.ask", TI.state == TaskInstanceState.AWAITING_INPUT)
            .options(joinedload(TI.hitl_detail))
        )
        return [ti for ti in session.scalars(query).all() if map_index is None or ti.map_index == map_index]

    def submit(session, ti, option, fields):
        from airflow._shared.timezones import timezone
        from airflow.models.hitl import HITLUser
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent

        if option is None:
            event = {"error": "no response", "error_type": "timeout"}
        else:
            detail = ti.hitl_detail
            detail.responded_by = HITLUser(id=user, name=user)
            detail.responded_at = timezone.utcnow()
            detail.chosen_options = [option]
            detail.params_input = fields or {}
            event = detail.as_resume_event_payload()
        handle_event_submit(TriggerEvent(event), task_instance=ti, session=session)
        session.commit()

    def work():
        from airflow.utils.session import create_session

        deadline = time.monotonic() + timeout
        todo = list(steps)
        while todo and time.monotonic() < deadline:
            time.sleep(0.3)
            step = todo[0]
            try:
                if callable(step):
                    found = step()
                    if found:
                        seen.append(found)
                        todo.pop(0)
                    continue
                with create_session() as session:
                    waiting = parked(session, step[0])
                    if waiting:
                        submit(session, waiting[0], step[1], step[2])
                        todo.pop(0)
            except Exception as exc:  # noqa: BLE001 (SQLite busy with the run's own session: try again)
                print(f"respond: {exc!r}")
        while True:  # past the deadline (or done): nothing may stay parked
            try:
                with create_session() as session:
                    for ti in parked(session, None):
                        submit(session, ti, None, None)
                return
            except Exception as exc:  # noqa: BLE001
                print(f"respond: {exc!r}")
                time.sleep(0.3)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, seen


def task_states(run) -> dict:
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


def test_a_run_with_nothing_pending_maps_no_question_and_succeeds(review_dag, conn):
    night(conn, "night-1")
    run = review_dag.test(run_conf={"response_timeout_minutes": 60})
    assert run.state == "success"
    states = task_states(run)
    assert states[("collect_decisions", -1)] == "success"
    assert [k for k in states if k[0].startswith("question.") and k[1] >= 0] == []  # zero mapped questions


def awaiting(task_id: str, map_index: int) -> bool:
    """Whether the question at `map_index` waits for its answer (in any run: one runs at a time)."""
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalar(
            select(TI.id).where(
                TI.dag_id == "league_review",
                TI.task_id == task_id,
                TI.map_index == map_index,
                TI.state == TaskInstanceState.AWAITING_INPUT,
            )
        )
    return found is not None


def test_each_answer_is_applied_as_soon_as_it_is_given(review_dag, questions, db_uri):
    """The rename answered first is merged while the quarantined row's question still waits; the
    row is then answered with a typed team id, and applied at once too."""
    conn = questions
    items = {i.kind: i for i in pending(conn)}  # map index 0: the quarantined message, 1: the rename
    old, new = team(conn, "Skokie 11"), team(conn, "Skokie Park 11")
    hinsdale_ii = team(conn, "Hinsdale PC II - 13 SW")

    def merged_while_the_other_waits():
        with psycopg.connect(db_uri) as other:
            merged = other.execute("SELECT count(*) FROM teams WHERE id = %s", (new,)).fetchone()[0] == 0
        return merged and ("still waiting" if awaiting("question.ask", 0) else "no longer waiting")

    def message_applied():
        with psycopg.connect(db_uri) as other:
            return other.execute("SELECT team_id FROM captain_messages WHERE id = 103").fetchone()

    worker, seen = respond(
        "league_review",
        [
            (1, SAME, {}),
            merged_while_the_other_waits,
            (0, TYPED, {"team_id": hinsdale_ii, "inactive_team": False}),
            message_applied,
        ],
        user="reviewer",
    )
    run = review_dag.test(run_conf={"response_timeout_minutes": 60})
    worker.join(10)
    assert run.state == "success", task_states(run)
    assert seen == ["still waiting", (hinsdale_ii,)]  # the merge came while the row's question waited
    states = task_states(run)
    assert [states[("question.ask", i)] for i in (0, 1)] == ["success", "success"]
    assert [states[("question.apply", i)] for i in (0, 1)] == ["success", "success"]
    assert q(conn, "SELECT id FROM teams WHERE team_name = 'Skokie Park 11'") == [(old,)]
    assert pending(conn) == []
    decided = q(conn, "SELECT item, choice, decided_by, via, dag_run_id FROM etl.decisions ORDER BY id")
    assert decided == [
        (items["rename"].id, SAME, "airflow:reviewer", "airflow", run.run_id),
        (items["quarantine"].id, f"{TYPED}: {hinsdale_ii}", "airflow:reviewer", "airflow", run.run_id),
    ]
    # The question showed the evidence as written (never rendered as a template), with its form.
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        details = session.execute(
            select(TI.map_index, HITLDetail.body, HITLDetail.params, HITLDetail.options)
            .join(TI, TI.id == HITLDetail.ti_id)
            .where(TI.run_id == run.run_id)
            .order_by(TI.map_index)
        ).all()
    (_, body, params, options), (_, _, rename_params, _) = details
    assert "Series 13 SW lineup \\{\\{ run\\_id \\}\\}" in body  # escaped, never rendered
    assert set(params) == {"team_id", "inactive_team"} and not rename_params
    assert options[-2:] == [TYPED, LEAVE]


def test_an_unanswered_question_is_skipped_and_stays_pending(review_dag, questions):
    conn = questions
    items = {i.kind: i for i in pending(conn)}
    hinsdale_i = team(conn, "Hinsdale PC I - 13 SW")
    worker, _ = respond("league_review", [(0, items["quarantine"].options[0], {}), (1, None, None)], user="reviewer")
    run = review_dag.test(run_conf={"response_timeout_minutes": 60})
    worker.join(10)
    assert run.state == "success"  # a question left unanswered is no failure of the run
    states = task_states(run)
    assert (states[("question.ask", 1)], states[("question.apply", 1)]) == ("skipped", "skipped")
    assert states[("question.apply", 0)] == "success"
    assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 103") == hinsdale_i
    assert [i.id for i in pending(conn)] == [items["rename"].id]


def test_the_app_deleting_the_row_meanwhile_is_what_the_answer_reports(review_dag, conn, tmp_path, db_uri):
    """The red team's poll: quarantined (detached), deleted by the app while its question waits,
    answered in the UI with a team: never brought back, recorded as the app's doing."""
    night(conn, "night-1")
    seed_users(conn, message_id=None)
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (7778, 999999, 'Lineup?')")  # no author
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    night(conn, "night-2")
    (poll,) = pending(conn)
    hinsdale = team(conn, "Hinsdale PC I - 13 SW")

    def app_deletes():
        if not awaiting("question.ask", 0):
            return None
        with psycopg.connect(db_uri) as other:
            other.execute("DELETE FROM polls WHERE id = 7778")
        return "deleted"

    typed = {"team_id": hinsdale, "inactive_team": False}
    worker, _ = respond("league_review", [app_deletes, (0, TYPED, typed)], user="reviewer")
    run = review_dag.test(run_conf={"response_timeout_minutes": 60})
    worker.join(10)
    assert run.state == "success"
    assert one(conn, "SELECT count(*) FROM polls WHERE id = 7778") == 0
    assert q(conn, "SELECT resolved_team_id, resolved_by FROM etl.quarantine") == [(None, "the app")]
    outcome = one(conn, "SELECT outcome FROM etl.decisions")
    assert outcome.startswith("polls row 7778: deleted by the app since the quarantine; not restored")
    assert poll.options == [TYPED, LEAVE]


def test_a_decision_has_no_default_answer():
    """A default would be a guess taken at the timeout; the pipeline never guesses."""
    from league_import.review_operators import DecisionOperator

    with pytest.raises(ValueError, match="no default answer"):
        DecisionOperator(
            task_id="t", item="rename:1", subject="s", options=["a"], defaults="a", response_timeout_minutes=1
        )
