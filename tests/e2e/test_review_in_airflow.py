"""league_review in a real Airflow (`airflow standalone`, as operators run it): an import that
leaves questions starts it through the `league_questions` Asset; a person answers over the REST
API and in the Required Actions page of the UI (headless Chromium), each answer applied as soon
as it is given; an unanswered question times out (skipped) and stays pending. The server has
named users, so that each decision records who made it."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import quote

import psycopg
import pytest
from dag.test_league_review_dag import MESSAGE, data_state, orphan_message, renamed_source, seed_users, team
from helpers import CHROMIUM, CHROMIUM_FLAGS, FRESH_DEMO, one, q, read, user_counts, write
from live_airflow import Airflow, wait_for

from league_import.review import SAME, TYPED
from league_import.sources import SCHEDULE_FILE, STATS_FILE

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
    """A league_import run to success; returns the league_review run its questions' Asset event
    started (None when nothing waits for a person, or league_review is paused)."""
    before = review_runs(server)
    run_id = server.trigger("league_import", conf)
    assert server.wait_for_run("league_import", run_id) == "success"
    announced = server.task_instances("league_import", run_id)
    if any(t["task_id"] == "announce_questions" and t["state"] == "skipped" for t in announced):
        return None
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
            f"task_id='question.ask', run_id='{run_id}', try_number=1, map_index={d['task_instance']['map_index']})"
            in log
            for d in found
        )

    if settled:
        wait_for("the scheduler to see the parked processes exit", exits_seen, 60, server.log, every=0.5)
    return found


def answer(server, run_id: str, question: dict, option: str, user: str, fields: dict | None = None) -> dict:
    """PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"""
    ti = question["task_instance"]
    path = f"/dags/league_review/dagRuns/{run_id}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
    params = {"team_id": None, "inactive_team": False} if question["params"] else {}
    body = {"chosen_options": [option], "params_input": {**params, **(fields or {})}}
    return server.api("PATCH", path, body, user=user)


def applied(server, message_id: int):
    """The message's team, once an answer has put it back (None while it waits)."""
    with psycopg.connect(server.league_uri) as conn:
        found = conn.execute("SELECT team_id FROM captain_messages WHERE id = %s", (message_id,)).fetchone()
    return found[0] if found else None


def decisions(conn) -> list[tuple]:
    return q(conn, "SELECT item, choice, decided_by, via, dag_run_id FROM etl.decisions ORDER BY id")


def states(server, run_id: str) -> dict[tuple[str, int], str]:
    return {(t["task_id"], t["map_index"]): t["state"] for t in server.task_instances("league_review", run_id)}


def test_an_import_that_leaves_questions_is_reviewed_and_answered_over_rest(airflow, renamed):
    # A first night leaves nothing to ask: no question is announced, no review starts.
    assert import_night(airflow, {"source_dir": str(FRESH_DEMO)}) is None

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

    # What the person sees: the question, its evidence (as written), its options and its form.
    assert message["subject"] == "Which team is captain_messages row 103 on?"
    assert "**author**: user 8" in message["body"] and "lineup \\{\\{ run\\_id \\}\\}" in message["body"]
    chosen = f"Hinsdale PC II - 13 SW (APTA_CHICAGO, series 13 SW, id {hinsdale_ii})"
    assert chosen in message["options"] and message["options"][-2:] == [TYPED, "leave in quarantine"]
    assert set(message["params"]) == {"team_id", "inactive_team"}
    assert rename["subject"] == "Are 'Skokie 11' and 'Skokie Park 11' one team?"
    assert rename["options"] == [SAME, "different teams"] and "**similarity**" in rename["body"]
    assert message["response_received"] is False and message["defaults"] is None
    assert [m["task_instance"]["rendered_map_index"] for m in (message, rename)] == sorted(links)
    run_path = quote(review, safe="")
    assert sorted(links.values()) == [
        f"/dags/league_review/runs/{run_path}/tasks/question.ask/mapped/{i}/required_actions" for i in (0, 1)
    ]

    # Each answer applied as soon as it is given: the message's while the rename still waits.
    assert answer(airflow, review, message, TYPED, "reviewer", {"team_id": hinsdale_ii})["responded_by"]["name"] == (
        "reviewer"
    )
    wait_for("the message's answer applied", lambda: applied(airflow, 103), 120, airflow.log)
    assert states(airflow, review)[("question.ask", 1)] == "awaiting_input"
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
            (items[0], f"{TYPED}: {hinsdale_ii}", "airflow:reviewer", "airflow", review),
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


def renamed_again(folder):
    """The season with a second team spelled anew ('Skokie 14' as 'Skokie Village 14'), beside the first."""
    src = renamed_source(folder)
    for name in (STATS_FILE, SCHEDULE_FILE):
        records = read(src, name)
        for r in records:
            for field in ("team", "home_team", "away_team"):
                if r.get(field) == "Skokie 14":
                    r[field] = "Skokie Village 14"
        write(src, name, records)
    return src


def answer_in_the_browser(page, base: str, link: str, option: str, fields: dict | None = None):
    """Open a question from its link, fill its form, click an option; returns the PATCH response."""
    page.goto(f"{base}{link}", wait_until="networkidle")
    page.get_by_role("button", name=option, exact=True).wait_for(state="visible", timeout=30_000)
    for label, value in (fields or {}).items():
        page.get_by_label(label, exact=False).first.fill(str(value))
    with page.expect_response(lambda r: r.url.endswith("/hitlDetails") and r.request.method == "PATCH") as sent:
        page.get_by_role("button", name=option, exact=True).click()
    return sent.value


def test_required_actions_in_the_browser(airflow, tmp_path):
    """A person opens each question from its link (as the health report gives it), reads the
    evidence as written, types a team id for the quarantined row, and sees it applied at once
    while the rename still waits; then answers the rename, applied at once too."""
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    first_night(airflow)
    with psycopg.connect(airflow.league_uri) as conn:
        orphan_message(conn, 104)
    review = import_night(airflow, {"source_dir": str(renamed_again(tmp_path)), "max_deactivation_ratio": 1.0})
    with psycopg.connect(airflow.league_uri) as conn:
        asked = questions(airflow, review, len(data_state(conn)["open"]))
        hinsdale_i = team(conn, "Hinsdale PC I - 13 SW")
        skokie_14 = team(conn, "Skokie 14")
    message = next(a for a in asked if a["subject"] == "Which team is captain_messages row 104 on?")
    rename = next(a for a in asked if a["subject"] == "Are 'Skokie 14' and 'Skokie Village 14' one team?")
    for other in asked:  # a test run alone has the first rename too
        if other not in (message, rename):
            answer(airflow, review, other, other["options"][-1], "reviewer")
    with psycopg.connect(airflow.league_uri) as conn:
        links = dict(q(conn, "SELECT item, url_path FROM etl.review_links WHERE dag_run_id = %s", review))
    item = message["task_instance"]["rendered_map_index"]

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        # Signed in as the steward (the cookie the login page sets).
        context.add_cookies([{"name": "_token", "value": airflow.token_for("steward"), "url": airflow.base}])
        page = context.new_page()
        page.goto(f"{airflow.base}{links[item]}", wait_until="networkidle")
        # The question, its evidence as written (the user's braces shown, never rendered), its options.
        for text in ("Which team is captain_messages row 104 on?", MESSAGE, "the series named fits", "is a member"):
            page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=30_000)
        options = [
            b.inner_text().strip()
            for b in page.locator("button").all()
            if b.inner_text().strip() in message["options"]
        ]
        assert options == message["options"] and TYPED in options
        sent = answer_in_the_browser(page, airflow.base, links[item], TYPED, {"Team id": hinsdale_i})
        assert sent.ok and sent.json()["responded_by"]["name"] == "steward"
        assert sent.json()["params_input"]["team_id"] == hinsdale_i
        # Applied at once: the rename has not been answered yet.
        assert wait_for("the typed team applied", lambda: applied(airflow, 104), 120, airflow.log) == hinsdale_i
        assert states(airflow, review)[("question.ask", rename["task_instance"]["map_index"])] == "awaiting_input"

        renamed_item = rename["task_instance"]["rendered_map_index"]
        sent = answer_in_the_browser(page, airflow.base, links[renamed_item], SAME)
        assert sent.ok
        assert airflow.wait_for_run("league_review", review) == "success"
        browser.close()

    with psycopg.connect(airflow.league_uri) as conn:
        assert one(conn, "SELECT team_id FROM captain_messages WHERE id = 104") == hinsdale_i
        assert one(conn, "SELECT id FROM teams WHERE team_name = 'Skokie Village 14'") == skokie_14
        assert (item, f"{TYPED}: {hinsdale_i}", "airflow:steward", "airflow", review) in decisions(conn)
        assert (renamed_item, SAME, "airflow:steward", "airflow", review) in decisions(conn)


def test_a_question_left_unanswered_times_out_and_stays_pending(airflow, renamed):
    """Asked with a 30-second response timeout and never answered: the question's task
    is skipped, the run succeeds, and the item stays pending with the data unchanged."""
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
    assert tasks.pop(("collect_decisions", -1)) == "success"
    assert set(tasks.values()) == {"skipped"}  # no answer, no default: asked and applied by no one
    for a in asked:
        ti = a["task_instance"]
        detail = airflow.api(
            "GET", f"/dags/league_review/dagRuns/{review}/taskInstances/question.ask/{ti['map_index']}/hitlDetails"
        )
        assert detail["response_received"] is False and detail["chosen_options"] is None
    with psycopg.connect(airflow.league_uri) as conn:
        assert data_state(conn) == before and decisions(conn) == recorded
