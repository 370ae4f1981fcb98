"""league_review in a real Airflow (`airflow standalone`, as operators run it): an import that
leaves questions starts it through the Asset; a person answers over the REST API and in the
Required Actions page of the UI (headless Chromium); an unanswered question times out and stays
pending. The server has named users, so that each decision records who made it."""

from __future__ import annotations

import json
import re
import urllib.request
from urllib.parse import quote

import psycopg
import pytest
from dag.test_league_review_dag import MESSAGE, data_state, orphan_message, renamed_source, seed_users, team
from helpers import CHROMIUM, CHROMIUM_FLAGS, FRESH_DEMO, one, q, user_counts
from live_airflow import Airflow, wait_for

from league_import.review import SAME

pytestmark = pytest.mark.e2e

# Throwaway users of this test's own server on loopback.
USERS = {"reviewer": "reviewer-e2e-password", "steward": "steward-e2e-password"}


class ReviewAirflow(Airflow):
    """The test server with named users instead of all-admins: every REST call is made as a
    user (a bearer token from POST /auth/token), so an answer names who gave it."""

    def __init__(self, pg_server, home, env=None):
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps(USERS))
        super().__init__(
            pg_server,
            home,
            env={
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:admin" for u in USERS),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                # The scheduler's sweep of HITL response timeouts (15 s by default).
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
                # The scheduler's log says when it has seen a parked task's process exit (questions()).
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                **(env or {}),
            },
        )
        self.tokens: dict[str, str] = {}

    def token_for(self, user: str) -> str:
        if user not in self.tokens:
            request = urllib.request.Request(
                f"{self.base}/auth/token",
                method="POST",
                data=json.dumps({"username": user, "password": USERS[user]}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self.tokens[user] = json.loads(response.read())["access_token"]
        return self.tokens[user]

    def api(self, method: str, path: str, body: dict | None = None, user: str = "reviewer") -> dict:
        request = urllib.request.Request(
            f"{self.base}/api/v2{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token_for(user)}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")


@pytest.fixture(scope="module")
def airflow(pg_server, tmp_path_factory):
    with ReviewAirflow(pg_server, tmp_path_factory.mktemp("airflow-review")) as server:
        server.wait_for_dag("league_import")
        server.wait_for_dag("league_review")
        yield server


@pytest.fixture(scope="module")
def renamed(tmp_path_factory):
    """The season with 'Skokie 11' spelled 'Skokie Park 11'."""
    return renamed_source(tmp_path_factory.mktemp("renamed"))


def review_runs(server) -> set[str]:
    return {r["dag_run_id"] for r in server.api("GET", "/dags/league_review/dagRuns?limit=100")["dag_runs"]}


def import_night(server, conf: dict) -> str | None:
    """A league_import run to success; returns the league_review run its Asset event started
    (None when league_review is paused)."""
    before = review_runs(server)
    run_id = server.trigger("league_import", conf)
    assert server.wait_for_run("league_import", run_id) == "success"
    if server.api("GET", "/dags/league_review")["is_paused"]:
        return None
    started = wait_for("league_review started by the Asset", lambda: review_runs(server) - before, 90, server.log)
    (review,) = started
    assert server.api("GET", f"/dags/league_review/dagRuns/{review}")["run_type"] == "asset_triggered"
    return review


def questions(server, run_id: str, count: int, settled: bool = True) -> list[dict]:
    """The run's questions (GET .../hitlDetails), once all `count` wait for an answer and the
    scheduler has seen each parked process exit. (Airflow 3.3.2 fails a task answered before
    that, up to ~6 s after it parked: finding it queued again, the scheduler takes the exit for
    "state changed externally"; the question stays pending. A person takes longer.)"""

    def asked():
        found = server.api("GET", f"/dags/league_review/dagRuns/{run_id}/hitlDetails")["hitl_details"]
        parked = [d for d in found if d["task_instance"]["state"] == "awaiting_input"]
        return sorted(parked, key=lambda d: d["task_instance"]["map_index"]) if len(parked) == count else None

    found = wait_for(f"{count} questions in {run_id}", asked, 120, server.log)

    def exits_seen():
        log = server.log.read_text(errors="replace")
        return all(
            "Received executor event with state success for task instance TaskInstanceKey(dag_id='league_review', "
            f"task_id='ask', run_id='{run_id}', try_number=1, map_index={d['task_instance']['map_index']})" in log
            for d in found
        )

    if settled:
        wait_for("the scheduler to see the parked processes exit", exits_seen, 60, server.log, every=0.5)
    return found


def answer(server, run_id: str, question: dict, option: str, user: str) -> dict:
    """PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"""
    ti = question["task_instance"]
    path = f"/dags/league_review/dagRuns/{run_id}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
    return server.api("PATCH", path, {"chosen_options": [option]}, user=user)


def decisions(conn) -> list[tuple]:
    return q(conn, "SELECT item, choice, decided_by, via, dag_run_id FROM etl.decisions ORDER BY id")


def states(server, run_id: str) -> dict[tuple[str, int], str]:
    return {(t["task_id"], t["map_index"]): t["state"] for t in server.task_instances("league_review", run_id)}


def test_an_import_that_leaves_questions_is_reviewed_and_answered_over_rest(airflow, renamed):
    # A first night: league_review runs after it, finds nothing to ask and succeeds.
    empty = import_night(airflow, {"source_dir": str(FRESH_DEMO)})
    assert airflow.wait_for_run("league_review", empty) == "success"
    assert [k for k in states(airflow, empty) if k[0] == "ask" and k[1] >= 0] == []
    assert states(airflow, empty)[("apply_decisions", -1)] == "success"

    # The next night quarantines a message written on an unknown id and suspects a rename.
    with psycopg.connect(airflow.league_uri) as conn:
        seed_users(conn)
    review = import_night(airflow, {"source_dir": str(renamed), "max_deactivation_ratio": 1.0})
    message, rename = questions(airflow, review, 2)
    with psycopg.connect(airflow.league_uri) as conn:
        hinsdale_ii = team(conn, "Hinsdale PC II - 13 SW")
        old, new = team(conn, "Skokie 11"), team(conn, "Skokie Park 11")
        before = user_counts(conn)
        links = dict(q(conn, "SELECT item, url_path FROM etl.review_links WHERE dag_run_id = %s", review))

    # What the person sees: the question, its evidence (as written), its options.
    assert message["subject"] == "Which team is captain_messages row 103 on?"
    assert f"**text**: {MESSAGE}" in message["body"] and "**author**: user 8" in message["body"]
    chosen = f"Hinsdale PC II - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_ii})"
    assert chosen in message["options"] and message["options"][-1] == "leave in quarantine"
    assert rename["subject"] == "Are 'Skokie 11' and 'Skokie Park 11' one team?"
    assert rename["options"] == [SAME, "different teams"] and "**similarity**" in rename["body"]
    assert message["response_received"] is False and message["defaults"] is None
    assert [m["task_instance"]["rendered_map_index"] for m in (message, rename)] == sorted(links)
    run_path = quote(review, safe="")
    assert sorted(links.values()) == [
        f"/dags/league_review/runs/{run_path}/tasks/ask/mapped/{i}/required_actions" for i in (0, 1)
    ]

    assert answer(airflow, review, message, chosen, "reviewer")["responded_by"]["name"] == "reviewer"
    assert answer(airflow, review, rename, SAME, "reviewer")["chosen_options"] == [SAME]
    assert airflow.wait_for_run("league_review", review) == "success"

    with psycopg.connect(airflow.league_uri) as conn:
        # The row is on the chosen team; the two teams are one, under the old id.
        assert q(conn, "SELECT team_id, captain_user_id, message FROM captain_messages WHERE id = 103") == [
            (hinsdale_ii, 8, MESSAGE)
        ]
        assert q(conn, "SELECT id, is_active FROM teams WHERE team_name = 'Skokie Park 11'") == [(old, True)]
        assert one(conn, "SELECT count(*) FROM teams WHERE id = %s", new) == 0
        # User rows intact: the rename's on the old id, the quarantined one back.
        assert q(conn, "SELECT team_id FROM polls WHERE id = 7") == [(old,)]
        assert q(conn, "SELECT team_id FROM team_memberships WHERE user_id = 7") == [(old,)]
        assert user_counts(conn) == {**before, "captain_messages": before["captain_messages"] + 1}
        # Both decisions recorded, with the Airflow user who answered and this run.
        items = [message["task_instance"]["rendered_map_index"], rename["task_instance"]["rendered_map_index"]]
        assert decisions(conn) == [
            (items[0], chosen, "airflow:reviewer", "airflow", review),
            (items[1], SAME, "airflow:reviewer", "airflow", review),
        ]
        assert data_state(conn)["open"] == []


def first_night(server) -> None:
    """The state the earlier tests leave (for a test run alone): a night imported, users seeded."""
    with psycopg.connect(server.league_uri) as conn:
        imported = one(conn, "SELECT to_regclass('public.teams') IS NOT NULL")
    if not imported:
        review = import_night(server, {"source_dir": str(FRESH_DEMO)})
        if review:
            server.wait_for_run("league_review", review)
    with psycopg.connect(server.league_uri) as conn:
        if not one(conn, "SELECT count(*) FROM users WHERE id = 8"):
            seed_users(conn, message_id=None)


def set_aside(server, run_id: str, asked: list[dict], keep: dict) -> None:
    """Answer every question but `keep` with its last option (leave in quarantine, different
    teams): only when a test runs alone, without the questions the earlier tests answered."""
    for other in asked:
        if other is not keep:
            answer(server, run_id, other, other["options"][-1], "reviewer")


def test_required_actions_in_the_browser(airflow, renamed):
    """A person opens the question from its link (as the health report gives it), reads the
    evidence, chooses a team, and sees the decision applied."""
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    first_night(airflow)
    with psycopg.connect(airflow.league_uri) as conn:
        orphan_message(conn, 104)
    review = import_night(airflow, {"source_dir": str(renamed), "max_deactivation_ratio": 1.0})
    with psycopg.connect(airflow.league_uri) as conn:
        asked = questions(airflow, review, len(data_state(conn)["open"]))
        hinsdale_i = team(conn, "Hinsdale PC I - 13 SW")
    question = next(a for a in asked if a["subject"] == "Which team is captain_messages row 104 on?")
    set_aside(airflow, review, asked, question)
    item = question["task_instance"]["rendered_map_index"]
    with psycopg.connect(airflow.league_uri) as conn:
        link = one(conn, "SELECT url_path FROM etl.review_links WHERE item = %s", item)
    chosen = f"Hinsdale PC I - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_i})"

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        # Signed in as the steward (the cookie the login page sets).
        context.add_cookies([{"name": "_token", "value": airflow.token_for("steward"), "url": airflow.base}])
        page = context.new_page()
        page.goto(f"{airflow.base}{link}", wait_until="networkidle")
        # The question, its evidence as written, and its options (one button each).
        for text in ("Which team is captain_messages row 104 on?", MESSAGE, "author's teams", "the series named fits"):
            page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=30_000)
        options = [
            b.inner_text().strip()
            for b in page.locator("button").all()
            if b.inner_text().strip() in question["options"]
        ]
        assert options == question["options"] and "leave in quarantine" in options
        with page.expect_response(lambda r: r.url.endswith("/hitlDetails") and r.request.method == "PATCH") as sent:
            page.get_by_role("button", name=chosen, exact=True).click()
        assert sent.value.ok and sent.value.json()["responded_by"]["name"] == "steward"
        page.get_by_text("Response received", exact=False).first.wait_for(timeout=30_000)
        assert airflow.wait_for_run("league_review", review) == "success"
        # The decision applied, as the UI shows it: apply_decisions' result (its XCom).
        run_path = quote(review, safe="")
        page.goto(
            f"{airflow.base}/dags/league_review/runs/{run_path}/tasks/apply_decisions/xcom", wait_until="networkidle"
        )
        page.get_by_role("button", name="Expand all extra JSON").first.click()
        page.get_by_text("captain_messages row 104: restored from", exact=False).first.wait_for(timeout=30_000)
        shown = re.sub(r"\s", "", page.inner_text("body"))  # the JSON viewer wraps long strings
        outcome = f"captain_messages row 104: restored from etl_archive.captain_messages with team_id = {hinsdale_i}"
        assert re.sub(r"\s", "", outcome) in shown
        browser.close()

    with psycopg.connect(airflow.league_uri) as conn:
        assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 104") == hinsdale_i
        assert (item, chosen, "airflow:steward", "airflow", review) in decisions(conn)


def test_a_question_left_unanswered_times_out_and_stays_pending(airflow, renamed):
    """Asked with a 30-second response timeout and never answered: the question's task fails
    (HITLTimeoutError), the run succeeds, and the item stays pending with the data unchanged."""
    first_night(airflow)
    airflow.api("PATCH", "/dags/league_review", {"is_paused": True})  # this import starts no review
    with psycopg.connect(airflow.league_uri) as conn:
        orphan_message(conn, 105)
    assert import_night(airflow, {"source_dir": str(renamed), "max_deactivation_ratio": 1.0}) is None
    with psycopg.connect(airflow.league_uri) as conn:
        before, recorded = data_state(conn), decisions(conn)
    assert before["open"]

    airflow.api("PATCH", "/dags/league_review", {"is_paused": False})
    review = airflow.trigger("league_review", {"response_timeout_minutes": 0.5})
    asked = questions(airflow, review, len(before["open"]), settled=False)
    assert [a["task_instance"]["rendered_map_index"] for a in asked] == before["open"]
    assert airflow.wait_for_run("league_review", review, timeout=180) == "success"
    tasks = states(airflow, review)
    assert tasks.pop(("collect_decisions", -1)) == tasks.pop(("apply_decisions", -1)) == "success"
    assert set(tasks.values()) == {"failed"}  # HITLTimeoutError: no answer, no default
    for a in asked:
        ti = a["task_instance"]
        detail = airflow.api(
            "GET", f"/dags/league_review/dagRuns/{review}/taskInstances/ask/{ti['map_index']}/hitlDetails"
        )
        assert detail["response_received"] is False and detail["chosen_options"] is None
    with psycopg.connect(airflow.league_uri) as conn:
        assert data_state(conn) == before and decisions(conn) == recorded
