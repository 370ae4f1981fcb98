"""`make ui`, as the README gives it, driven in Debian's chromium as a newcomer uses it.

One Airflow for the module: the README's command (`UiCommand`: `make ui` in a session of its own,
as a terminal runs a foreground job, on a free port, with its own demo home and league database,
from a shell whose PATH lacks .venv/bin). The tests then run in this order, as one visit:

1. log in with the login the command printed, trigger league_import from its form with the
   defaults ("Unpause on trigger" ticked): that run and the scheduled run the unpause starts both
   succeed, on the bundled season (the demo's configured source folder);
2. open the health_check task's "Health report" link (Details, Extra Links): the report and its
   Plotly charts, over http, behind Airflow's login; nothing outside the report folder;
3. trigger a night that asks (its folder typed in the form): league_review asks in Required
   Actions; a quarantined row answered with a typed team id and a suspected rename answered
   "same team", each applied at once in the database, the first while the second still waits;
4. Ctrl-C (SIGINT to the command's process group): every process it started is gone.

Each step is a function on a `Newcomer` (the browser page logged in, the command, a REST token):
`log_in`, `trigger_from_the_form` (the defaults, or fields to fill), `wait_for_runs`,
`open_health_report`, `question_links`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
from helpers import CHROMIUM, CHROMIUM_FLAGS, DEMO_DATA, REPO
from live_airflow import api, auth_token, free_port, wait_for, with_database
from psycopg import sql

from league_import.demo import bin_dir
from league_import.ui import session_members

pytestmark = pytest.mark.e2e

COMPONENTS = ("standalone", "scheduler", "dag-processor", "triggerer", "api-server")
RUN_TIMEOUT = 600


class UiCommand:
    """`make ui` in a session of its own, its output read as it comes."""

    def __init__(self, home: Path, league_uri: str) -> None:
        self.home, self.port = home, free_port()
        shell = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEAGUE_IMPORT_"))}
        path = [p for p in shell.get("PATH", "").split(os.pathsep) if p and Path(p) != bin_dir()]
        self.env = {
            **shell,
            "PATH": os.pathsep.join(path),  # a newcomer's shell: `airflow` is not on it
            "AIRFLOW_CONN_LEAGUE_DB": league_uri,
            "LEAGUE_IMPORT_DEMO_HOME": str(home),
            "LEAGUE_IMPORT_UI_PORT": str(self.port),
            # Other Airflows may run on this machine: their log servers' fixed ports are taken.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        # The Makefile's own target, run with this test's environment (BIN) and not installing it
        # again (-o): the same `league-import ui` a user's `make ui` runs.
        command = ["make", "--no-print-directory", "-o", ".venv/.installed", "ui", f"BIN={bin_dir()}"]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the terminal's foreground job
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal starts it
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def printed(self, pattern: str, timeout: float = 300) -> re.Match:
        """The first line of the command's output matching `pattern`, waited for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.process.poll() is not None and not any(re.search(pattern, x) for x in self.lines):
                break
            time.sleep(0.5)
        raise AssertionError(f"`make ui` never printed {pattern!r}; it printed:\n{self.output}\n{self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.home / "standalone.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def sessions(self) -> set[int]:
        """The command's session and those below it (standalone runs in a session of its own)."""
        root = psutil.Process(self.process.pid)
        found = set()
        for member in (root, *root.children(recursive=True)):
            try:
                found.add(os.getsid(member.pid))
            except ProcessLookupError:
                continue
        return found

    def processes(self, sessions: set[int]) -> list[psutil.Process]:
        """Every live process it started: in one of its sessions (no Airflow process leaves its
        session), or with the demo home in its environment (where /proc still shows it)."""
        found = {p.pid: p for session in sessions for p in session_members(session)}
        for candidate in psutil.process_iter():
            try:
                env = candidate.environ()
            except (psutil.Error, OSError):
                continue
            if str(self.home) in (env.get("LEAGUE_IMPORT_DEMO_HOME"), env.get("AIRFLOW_HOME")):
                found.setdefault(candidate.pid, candidate)
        return [p for p in found.values() if alive(p)]

    def interrupt(self, timeout: float = 120) -> int:
        """Ctrl-C: SIGINT to the foreground process group; returns make's exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout)


class Newcomer:
    """A person at the browser: the page (logged in by log_in), the command, a REST token to
    watch runs with, and what the steps found."""

    def __init__(self, ui: UiCommand, page) -> None:
        self.ui, self.page = ui, page
        self.base = ui.printed(r"^Airflow UI: (http://\S+)$").group(1)
        login = ui.printed(r"^login: user (\S+), password (\S+)$")
        self.user, self.password = login.group(1), login.group(2)
        self.token = auth_token(self.base, self.user, self.password)
        self.run_id: str | None = None  # the run triggered from the form

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        return api(self.base, method, path, body, self.token)


def log_in(newcomer: Newcomer) -> None:
    """Open the URL the command printed: the login page; sign in with the printed login."""
    page = newcomer.page
    page.goto(newcomer.base, wait_until="networkidle")
    page.locator("input[name='username']").fill(newcomer.user)
    page.locator("input[name='password']").fill(newcomer.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Dags").first.wait_for(timeout=60_000)


def trigger_from_the_form(newcomer: Newcomer, fill: dict[str, str] | None = None) -> dict:
    """league_import's page, Trigger, the form as it comes (fields in `fill` typed in), Trigger:
    the run the UI created (its POST's answer)."""
    page = newcomer.page
    wait_for(
        "league_import to be parsed",
        lambda: newcomer.api("GET", "/dags/league_import"),
        180,
        newcomer.ui.home / "standalone.log",
    )
    page.goto(f"{newcomer.base}/dags/league_import", wait_until="networkidle")
    page.get_by_role("button", name="Trigger").first.click()
    form = page.get_by_role("dialog")
    unpause = form.get_by_text("Unpause league_import on trigger", exact=False)
    if unpause.count():  # shown while the DAG is paused, ticked
        assert form.locator("input[type='checkbox']").first.is_checked()
    for name, value in (fill or {}).items():
        form.locator(f"input[name='element_{name}']").fill(value)
    with page.expect_response(lambda r: r.url.endswith("/dagRuns") and r.request.method == "POST") as posted:
        form.get_by_role("button", name="Trigger").click()
    assert posted.value.ok, posted.value.text()
    return posted.value.json()


def wait_for_runs(newcomer: Newcomer, run_ids: list[str], timeout: float = RUN_TIMEOUT) -> dict[str, str]:
    """Until every run has ended; their states."""

    def ended():
        states = {r: newcomer.api("GET", f"/dags/league_import/dagRuns/{r}")["state"] for r in run_ids}
        return states if all(s in ("success", "failed") for s in states.values()) else None

    return wait_for(f"runs {run_ids}", ended, timeout, newcomer.ui.home / "standalone.log", every=3)


def imported(newcomer: Newcomer) -> str:
    """The run triggered from the form, triggered now if no step did yet (a test run alone)."""
    if newcomer.run_id is None:
        newcomer.run_id = trigger_from_the_form(newcomer)["dag_run_id"]
        wait_for_runs(newcomer, [newcomer.run_id])
    return newcomer.run_id


def open_health_report(newcomer: Newcomer, run_id: str):
    """The health_check task of the run, its Details, the "Health report" link: the page it opens."""
    page = newcomer.page
    page.goto(f"{newcomer.base}/dags/league_import/runs/{run_id}/tasks/health_check/details", wait_until="networkidle")
    link = page.get_by_role("link", name="Health report")
    link.wait_for(timeout=60_000)
    if link.get_attribute("target") == "_blank":  # the UI opens other sites' links in a new tab
        with page.context.expect_page() as opened:
            link.click()
        report = opened.value
    else:
        link.click()
        report = page
    report.wait_for_url("**/league-import/reports/*", timeout=30_000)
    report.wait_for_load_state("load")
    return report


@pytest.fixture(scope="module")
def ui(pg_server, tmp_path_factory):
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    league = f"ui_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(league)))
    command = UiCommand(tmp_path_factory.mktemp("make-ui") / "airflow", with_database(pg_server, league))
    try:
        command.start()
        yield command
    finally:
        if command.process is not None and command.process.poll() is None:
            command.interrupt()
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(league)))


@pytest.fixture(scope="module")
def newcomer(ui):
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        person = Newcomer(ui, context.new_page())
        log_in(person)
        yield person
        browser.close()


def test_trigger_with_the_form_defaults_and_the_scheduled_run_succeed_too(newcomer, ui):
    assert newcomer.base == f"http://127.0.0.1:{ui.port}" and newcomer.user == "admin"
    run = trigger_from_the_form(newcomer)
    assert run["conf"] == {"source_dir": None, "leagues": [], "dry_run": False, "max_deactivation_ratio": 0.2}
    newcomer.run_id = run["dag_run_id"]

    def unpaused():  # "Unpause on trigger": the form's own request, sent beside the run's
        return newcomer.api("GET", "/dags/league_import")["is_paused"] is False

    def scheduled():
        runs = newcomer.api("GET", "/dags/league_import/dagRuns?limit=20")["dag_runs"]
        return [r["dag_run_id"] for r in runs if r["run_type"] == "scheduled"]

    wait_for("the form to unpause league_import", unpaused, 30, ui.home / "standalone.log", every=0.5)
    (nightly,) = wait_for("the scheduled run the unpause starts", scheduled, 180, ui.home / "standalone.log")
    assert wait_for_runs(newcomer, [newcomer.run_id, nightly]) == {newcomer.run_id: "success", nightly: "success"}
    with psycopg.connect(ui.env["AIRFLOW_CONN_LEAGUE_DB"]) as conn:
        read = dict(
            conn.execute("SELECT run_id, report->'validate_constraints'->>'source_dir' FROM etl.runs").fetchall()
        )
        assert read == {newcomer.run_id: str(DEMO_DATA), nightly: str(DEMO_DATA)}  # the configured folder
        assert conn.execute("SELECT count(*) FROM teams WHERE is_active").fetchone()[0] == 537


def test_the_health_report_link_shows_the_report_and_its_charts_over_http(newcomer):
    run_id = imported(newcomer)
    links = newcomer.api("GET", f"/dags/league_import/dagRuns/{run_id}/taskInstances/health_check/links")
    url = links["extra_links"]["Health report"]
    assert url.startswith(f"{newcomer.base}/league-import/reports/health_") and url.endswith(".html")

    served = []
    newcomer.page.context.on("response", lambda r: served.append((r.url, r.status)))
    report = open_health_report(newcomer, run_id)
    assert report.url == url
    report.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    assert report.locator(".chart .js-plotly-plot").count() == 4
    assert report.locator(".chart .gtitle").all_text_contents() == [
        "Rows repaired per run, by strategy",
        "Rows quarantined and released",
        "Suspected renames",
        "Rows per table",
    ]
    assert run_id in report.inner_text("h1 + .meta")
    plotly = [(u, s) for u, s in served if re.search(r"/league-import/reports/assets/plotly-[\d.]+\.min\.js$", u)]
    assert plotly and all(s == 200 for _, s in plotly)  # plotly.js over http, from beside the pages
    # Every report, newest first, from the page's own link.
    report.get_by_role("link", name="every report").click()
    report.get_by_role("link", name=re.compile(re.escape(run_id.replace(":", "_").replace("+", "_")))).first.wait_for()
    if report is not newcomer.page:
        report.close()

    # Behind Airflow's login: a browser without it goes to the login page; a script is refused.
    stranger = newcomer.page.context.browser.new_context()
    page = stranger.new_page()
    page.goto(url, wait_until="networkidle")
    assert "/auth/login" in page.url and page.locator("input[name='password']").count() == 1
    stranger.close()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code == 401
    # Nothing outside the report folder, however the path is spelled.
    for path in ("..%2F..%2Fairflow.cfg", "%2E%2E/%2E%2E/airflow/airflow.cfg", "assets/..%2F..%2Fairflow/airflow.cfg"):
        request = urllib.request.Request(
            f"{newcomer.base}/league-import/reports/{path}", headers={"Authorization": f"Bearer {newcomer.token}"}
        )
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(request, timeout=30)
        assert missing.value.code == 404, path


def question_links(newcomer: Newcomer, review: str, count: int) -> dict[str, str]:
    """The review run's questions, once `count` wait in Required Actions: item -> its page."""

    def asked():
        found = newcomer.api("GET", f"/dags/league_review/dagRuns/{review}/hitlDetails")["hitl_details"]
        parked = [d for d in found if d["task_instance"]["state"] == "awaiting_input"]
        return parked if len(parked) == count else None

    parked = wait_for(f"{count} questions", asked, 180, newcomer.ui.home / "standalone.log")
    with psycopg.connect(newcomer.ui.env["AIRFLOW_CONN_LEAGUE_DB"]) as conn:
        links = dict(conn.execute("SELECT item, url_path FROM etl.review_links WHERE dag_run_id = %s", (review,)))
    assert sorted(links) == sorted(d["task_instance"]["rendered_map_index"] for d in parked)
    return links


def test_questions_answered_in_the_browser_each_applied_at_once(newcomer, ui, tmp_path):
    """A night that asks (a captain's message on a team id nobody knows, a team spelled anew),
    triggered from the form with its folder typed in; league_review, started by the questions'
    Asset, asks both; the message answered with a typed team id is applied while the rename still
    waits, then the rename, applied at once too."""
    from dag.test_league_review_dag import orphan_message, renamed_source, seed_users
    from e2e.test_review_in_airflow import answer_in_the_browser

    from league_import.review import SAME, TYPED

    imported(newcomer)
    league_db = ui.env["AIRFLOW_CONN_LEAGUE_DB"]
    with psycopg.connect(league_db) as conn:
        seed_users(conn, message_id=None)
        orphan_message(conn, 104)
    newcomer.api("PATCH", "/dags/league_review", {"is_paused": False})  # new DAGs start paused
    source = renamed_source(tmp_path)
    night = trigger_from_the_form(newcomer, fill={"source_dir": str(source), "max_deactivation_ratio": "1"})
    assert wait_for_runs(newcomer, [night["dag_run_id"]]) == {night["dag_run_id"]: "success"}

    def review_started():
        runs = newcomer.api("GET", "/dags/league_review/dagRuns?limit=20")["dag_runs"]
        return [r["dag_run_id"] for r in runs if r["run_type"] == "asset_triggered"]

    (review,) = wait_for("league_review, started by the questions' Asset", review_started, 180, ui.home / "standalone.log")
    links = question_links(newcomer, review, 2)
    time.sleep(12)  # Airflow 3.3.2 fails a task answered in its first seconds of waiting (README)
    with psycopg.connect(league_db) as conn:
        team = conn.execute("SELECT id FROM teams WHERE team_name = 'Hinsdale PC I - 13 SW'").fetchone()[0]
        old, new = (
            conn.execute("SELECT id FROM teams WHERE team_name = %s", (name,)).fetchone()[0]
            for name in ("Skokie 11", "Skokie Park 11")
        )
    message = next(item for item in links if item.startswith("quarantine:"))
    rename = next(item for item in links if item.startswith("rename:"))

    sent = answer_in_the_browser(newcomer.page, newcomer.base, links[message], TYPED, {"Team id": team})
    assert sent.ok and sent.json()["params_input"]["team_id"] == team

    def message_on(conn_uri=league_db):
        with psycopg.connect(conn_uri) as conn:
            return conn.execute("SELECT team_id FROM captain_messages WHERE id = 104").fetchone()

    assert wait_for("the message's answer applied", message_on, 120, ui.home / "standalone.log") == (team,)
    states = newcomer.api("GET", f"/dags/league_review/dagRuns/{review}/taskInstances?limit=50")["task_instances"]
    waiting = [t for t in states if t["task_id"] == "question.ask" and t["state"] == "awaiting_input"]
    assert [t["rendered_map_index"] for t in waiting] == [rename]  # applied while the rename waited

    assert answer_in_the_browser(newcomer.page, newcomer.base, links[rename], SAME).ok

    def merged():
        with psycopg.connect(league_db) as conn:
            return conn.execute("SELECT count(*) FROM teams WHERE id = %s", (new,)).fetchone()[0] == 0

    wait_for("the rename's answer applied", merged, 120, ui.home / "standalone.log")
    with psycopg.connect(league_db) as conn:
        assert conn.execute("SELECT id FROM teams WHERE team_name = 'Skokie Park 11'").fetchone() == (old,)
        decided = conn.execute("SELECT item, choice, decided_by FROM etl.decisions ORDER BY id").fetchall()
    assert decided == [(message, f"{TYPED}: {team}", "airflow:admin"), (rename, SAME, "airflow:admin")]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_stops_every_process_it_started(ui):
    """Last: SIGINT to the command's process group, as Ctrl-C in its terminal sends it."""
    sessions = ui.sessions()
    running = ui.processes(sessions)
    commands = [" ".join(p.cmdline()) for p in running]
    for component in (*COMPONENTS, "worker -- LocalExecutor"):
        pattern = rf"airflow {component.replace('-', '[-_]')}"
        assert any(re.search(pattern, c) for c in commands), (component, commands)
    ui.interrupt()  # make itself ends by the signal, once league-import has ended
    assert "stopping Airflow ..." in ui.output and re.search(r"^stopped", ui.output, re.MULTILINE), ui.output
    print(f"{len(running)} processes before Ctrl-C; {ui.lines[-1]}")  # any killed after the grace?
    time.sleep(2)  # a process the kernel still reaps
    left = [(p.pid, " ".join(p.cmdline())) for p in ui.processes(sessions)]
    assert left == [], left
    assert [p.pid for p in running if alive(p)] == []
    with pytest.raises(OSError):  # nothing listens on its port any more
        urllib.request.urlopen(f"http://127.0.0.1:{ui.port}/api/v2/monitor/health", timeout=5)
