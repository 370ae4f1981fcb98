"""A real Airflow, as operators run it: scheduler, dag-processor, api-server and triggerer
(`airflow standalone`, LocalExecutor) on loopback, with PostgreSQL as its metadata database.
The DAG is unpaused and triggered through the REST API with a conf, as the UI form does, through
the UI itself in headless Chromium, and by the scheduler itself (every minute, for the test)."""

from __future__ import annotations

import psycopg
import pytest
from helpers import CHROMIUM, CHROMIUM_FLAGS, FRESH_DEMO
from live_airflow import IMPORT_TASKS, Airflow, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def airflow(pg_server, tmp_path_factory):
    with Airflow(pg_server, tmp_path_factory.mktemp("airflow-e2e")) as server:
        server.wait_for_dag("league_import")
        yield server


def test_rest_api_trigger_runs_the_dag_to_success(airflow):
    run = airflow.api(
        "POST", "/dags/league_import/dagRuns", {"logical_date": None, "conf": {"source_dir": str(FRESH_DEMO)}}
    )
    assert run["logical_date"] is None  # keyed on run_id, as every step is
    assert airflow.wait_for_run("league_import", run["dag_run_id"]) == "success"
    tasks = airflow.task_instances("league_import", run["dag_run_id"])
    # Every step succeeded; the teardown found no question waiting: skipped, nothing announced.
    expected = {**{t: "success" for t in IMPORT_TASKS}, "announce_questions": "skipped"}
    assert {t["task_id"]: t["state"] for t in tasks} == expected
    with psycopg.connect(airflow.league_uri) as conn:
        assert conn.execute("SELECT count(*) FROM teams WHERE is_active").fetchone()[0] == 537
        status, report = conn.execute(
            "SELECT status, report FROM etl.runs WHERE run_id = %s", (run["dag_run_id"],)
        ).fetchone()
    assert status == "success" and report["health_check"]["status"] == "ok"
    # The rendered-template view shows what each task ran with.
    rendered = airflow.api(
        "GET", f"/dags/league_import/dagRuns/{run['dag_run_id']}/taskInstances/validate_constraints"
    )["rendered_fields"]
    assert rendered["source_dir"] == str(FRESH_DEMO) and rendered["dry_run"] is False
    # The health report is linked from its task (an operator extra link).
    links = airflow.api("GET", f"/dags/league_import/dagRuns/{run['dag_run_id']}/taskInstances/health_check/links")
    assert links["extra_links"]["Health report"].endswith(".html")
    # The Asset event carries the run's counts.
    events = airflow.api("GET", "/assets/events?limit=5")["asset_events"]
    assert events[-1]["extra"]["run_id"] == run["dag_run_id"] and events[-1]["extra"]["status"] == "ok"


def test_ui_trigger_form_shows_the_params_and_runs_a_dry_run(airflow):
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{airflow.base}/dags/league_import", wait_until="networkidle")
        page.get_by_role("button", name="Trigger").first.click()
        form = page.get_by_role("dialog")
        for text in (
            "Source folder",
            "Leagues",
            "Dry run",
            "Max deactivation ratio",
            "Compute and report everything, change nothing (all writes rolled back).",
            "A new season needs 1.0.",
        ):
            assert form.get_by_text(text, exact=False).first.is_visible(), text
        form.locator("input[name='element_source_dir']").fill(str(FRESH_DEMO))
        dry_run = form.locator("input[name='element_dry_run']")
        dry_run.locator("xpath=..").click()  # the switch's label; the input itself is hidden
        assert dry_run.is_checked()
        with page.expect_response(lambda r: r.url.endswith("/dagRuns") and r.request.method == "POST") as posted:
            form.get_by_role("button", name="Trigger").click()
        run = posted.value.json()
        browser.close()
    assert run["conf"]["dry_run"] is True
    assert airflow.wait_for_run("league_import", run["dag_run_id"]) == "success"
    with psycopg.connect(airflow.league_uri) as conn:
        dry, report = conn.execute(
            "SELECT dry_run, report FROM etl.runs WHERE run_id = %s", (run["dag_run_id"],)
        ).fetchone()
    assert dry is True and report["upsert_teams"]["dry_run"] is True


def _scheduled_runs(server: Airflow) -> list[dict]:
    runs = server.api("GET", "/dags/league_import/dagRuns?order_by=-start_date&limit=10")["dag_runs"]
    return [r for r in runs if r["run_type"] == "scheduled"]


def test_a_scheduled_run_never_reads_the_demo_data(pg_server, tmp_path_factory):
    """Unpaused with neither the Variable nor the environment variable set, the scheduler's run
    fails at once naming both; with the Variable set, the next scheduled run imports that folder."""
    env = {"LEAGUE_IMPORT_SCHEDULE": "* * * * *", "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1"}
    with Airflow(pg_server, tmp_path_factory.mktemp("airflow-scheduled"), env=env) as server:
        server.wait_for_dag("league_import")
        first = wait_for("a scheduled run", lambda: _scheduled_runs(server), 150, server.log)[-1]
        assert server.wait_for_run("league_import", first["dag_run_id"]) == "failed"
        tries = {
            t["task_id"]: (t["state"], t["try_number"])
            for t in server.task_instances("league_import", first["dag_run_id"])
        }
        assert tries["validate_constraints"] == ("failed", 1)  # at once: no retry
        with psycopg.connect(server.league_uri) as conn:
            error = conn.execute("SELECT report->>'error' FROM etl.runs WHERE run_id = %s", (first["dag_run_id"],))
            message = error.fetchone()[0]
            assert conn.execute(
                "SELECT to_regclass('public.teams') IS NULL OR NOT EXISTS (SELECT 1 FROM teams)"
            ).fetchone()[0]  # nothing imported
        assert "league_import_source_dir" in message and "LEAGUE_IMPORT_SOURCE_DIR" in message
        server.api("POST", "/variables", {"key": "league_import_source_dir", "value": str(FRESH_DEMO)})

        def imported():
            done = [r for r in _scheduled_runs(server) if r["dag_run_id"] != first["dag_run_id"]]
            return [r for r in done if r["state"] == "success"]

        run = wait_for("a scheduled run with the Variable set", imported, 240, server.log)[0]
        with psycopg.connect(server.league_uri) as conn:
            source = conn.execute(
                "SELECT report->'validate_constraints'->>'source_dir' FROM etl.runs WHERE run_id = %s",
                (run["dag_run_id"],),
            ).fetchone()[0]
            assert source == str(FRESH_DEMO)
            assert conn.execute("SELECT count(*) FROM teams WHERE is_active").fetchone()[0] == 537
