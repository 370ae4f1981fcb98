"""A real Airflow, as operators run it: scheduler, dag-processor, api-server and triggerer
(`airflow standalone`, LocalExecutor) on loopback, with PostgreSQL as its metadata database.
The DAG is unpaused and triggered through the REST API with a conf, as the UI form does, and
through the UI itself in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from helpers import CHROMIUM, CHROMIUM_FLAGS, REPO
from psycopg import sql

pytestmark = pytest.mark.e2e

AIRFLOW = Path(sys.executable).with_name("airflow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlalchemy_url(uri: str, dbname: str) -> str:
    """The same server for SQLAlchemy and psycopg 3; a Unix socket folder goes in ?host=."""
    parts = urlsplit(uri)
    user = f"{parts.username}{f':{parts.password}' if parts.password else ''}@"
    host = unquote(parts.hostname or "")
    if host.startswith("/"):
        return f"postgresql+psycopg://{user}/{dbname}?host={host}"
    return f"postgresql+psycopg://{user}{parts.hostname}:{parts.port or 5432}/{dbname}"


def api(base: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}/api/v2{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def wait_for(what: str, check, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except OSError:
            pass
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}; last lines of {log}:\n" + log.read_text()[-3000:])


@pytest.fixture(scope="module")
def airflow(pg_server, tmp_path_factory):
    """`airflow standalone` with its own home, PostgreSQL metadata and a fresh league database."""
    home = tmp_path_factory.mktemp("airflow-e2e")
    meta, league = f"meta_{uuid.uuid4().hex[:8]}", f"league_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        for name in (meta, league):
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    from conftest import with_database

    port = free_port()
    league_uri = with_database(pg_server, league)
    env = {
        **os.environ,
        "PATH": f"{AIRFLOW.parent}{os.pathsep}{os.environ['PATH']}",  # standalone starts `airflow ...`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(pg_server, meta),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # a test server on loopback only
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW_CONN_LEAGUE_DB": league_uri,
        "PYTHONPATH": str(REPO / "plugins"),
    }
    log = home / "standalone.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(AIRFLOW), "standalone"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the api-server", lambda: api(base, "GET", "/version"), 180, log)
        wait_for("league_import to be parsed", lambda: api(base, "GET", "/dags/league_import"), 120, log)
        api(base, "PATCH", "/dags/league_import", {"is_paused": False})
        yield {"base": base, "league_uri": league_uri, "log": log}
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # standalone and every component it started
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:  # a component still shutting down once standalone has gone
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        with psycopg.connect(pg_server, autocommit=True) as admin:
            for name in (meta, league):
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_for_run(airflow, run_id: str) -> str:
    def finished():
        state = api(airflow["base"], "GET", f"/dags/league_import/dagRuns/{run_id}")["state"]
        return state if state in ("success", "failed") else None

    return wait_for(f"run {run_id}", finished, 300, airflow["log"])


def test_rest_api_trigger_runs_the_dag_to_success(airflow):
    run = api(airflow["base"], "POST", "/dags/league_import/dagRuns", {"logical_date": None, "conf": {"leagues": []}})
    assert run["logical_date"] is None  # keyed on run_id, as every step is
    assert wait_for_run(airflow, run["dag_run_id"]) == "success"
    tasks = api(airflow["base"], "GET", f"/dags/league_import/dagRuns/{run['dag_run_id']}/taskInstances")
    assert {t["task_id"]: t["state"] for t in tasks["task_instances"]} == {
        t: "success"
        for t in ("validate_constraints", "deduplicate", "backup", "upsert_teams", "restore_mapping", "health_check")
    }
    with psycopg.connect(airflow["league_uri"]) as conn:
        assert conn.execute("SELECT count(*) FROM teams WHERE is_active").fetchone()[0] == 537
        status, report = conn.execute(
            "SELECT status, report FROM etl.runs WHERE run_id = %s", (run["dag_run_id"],)
        ).fetchone()
    assert status == "success" and report["health_check"]["status"] == "ok"


def test_ui_trigger_form_shows_the_params_and_runs_a_dry_run(airflow):
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{airflow['base']}/dags/league_import", wait_until="networkidle")
        page.get_by_role("button", name="Trigger").first.click()
        form = page.get_by_role("dialog")
        for text in (
            "source_dir",
            "leagues",
            "dry_run",
            "max_deactivation_ratio",
            "Compute and report everything, change nothing (all writes rolled back).",
            "A new season needs 1.0.",
        ):
            assert form.get_by_text(text, exact=False).first.is_visible(), text
        dry_run = form.locator("input[name='element_dry_run']")
        dry_run.locator("xpath=..").click()  # the switch's label; the input itself is hidden
        assert dry_run.is_checked()
        with page.expect_response(lambda r: r.url.endswith("/dagRuns") and r.request.method == "POST") as posted:
            form.get_by_role("button", name="Trigger").click()
        run = posted.value.json()
        browser.close()
    assert run["conf"]["dry_run"] is True
    assert wait_for_run(airflow, run["dag_run_id"]) == "success"
    with psycopg.connect(airflow["league_uri"]) as conn:
        dry, report = conn.execute(
            "SELECT dry_run, report FROM etl.runs WHERE run_id = %s", (run["dag_run_id"],)
        ).fetchone()
    assert dry is True and report["upsert_teams"]["dry_run"] is True
