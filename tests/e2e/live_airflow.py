"""A real Airflow for the end-to-end tests: its components as operators run them, on loopback,
with PostgreSQL as the metadata database, driven over the REST API.

`Airflow` starts `airflow standalone` (LocalExecutor) by default, or any list of component
commands (the Celery tests start the scheduler, dag-processor, api-server and workers one by one);
it starts and stops them as `make ui` does (league_import.ui: a process group each, every process
it started stopped), on a free port (league_import.ui.server_env).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from league_import.demo import bin_dir, on_path
from league_import.ui import server_env, start_group, stop_group

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
IMPORT_TASKS = ("validate_constraints", "deduplicate", "backup", "upsert_teams", "restore_mapping", "health_check")


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


def with_database(uri: str, dbname: str) -> str:
    from urllib.parse import urlunsplit

    return urlunsplit(urlsplit(uri)._replace(path=f"/{dbname}"))


def api(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:  # an api-server with its auth manager's logins (not all-admins)
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{base}/api/v2{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def auth_token(base: str, username: str, password: str) -> str:
    """A JWT for one of the auth manager's users (POST /auth/token), as a script logs in."""
    request = urllib.request.Request(
        f"{base}/auth/token",
        method="POST",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def worker_hostname() -> str:
    """[core] hostname_callable for several Celery workers on one machine: each task instance
    records the name its worker was started with, as it would a container's hostname."""
    return os.environ["LIVE_AIRFLOW_HOSTNAME"]


def wait_for(what: str, check, timeout: float, log: Path, every: float = 2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last lines of {log}:\n" + log.read_text()[-3000:])


class Airflow:
    """Airflow's components on loopback with their own home, metadata database and league database."""

    def __init__(self, pg_server: str, home: Path, env: dict | None = None, commands: list[list[str]] | None = None):
        self.pg_server, self.home = pg_server, home
        self.meta, self.league = f"meta_{uuid.uuid4().hex[:8]}", f"league_{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.league_uri = with_database(pg_server, self.league)
        self.log = home / "airflow.log"
        self.processes: list[subprocess.Popen] = []
        self.token: str | None = None  # set by login(); None: the all-admins test server
        self.env = {
            **os.environ,
            "PATH": on_path(bin_dir(), os.environ["PATH"]),  # standalone starts `airflow ...`
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(pg_server, self.meta),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **server_env(self.port),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # a test server on loopback only
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW_CONN_LEAGUE_DB": self.league_uri,
            "LEAGUE_IMPORT_REPORT_DIR": str(home / "reports"),
            "LEAGUE_IMPORT_RETRY_DELAY": "2",
            **(env or {}),
        }
        self.commands = commands or [[str(AIRFLOW), "standalone"]]

    def __enter__(self) -> Airflow:
        with psycopg.connect(self.pg_server, autocommit=True) as admin:
            for name in (self.meta, self.league):
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            if self.commands != [[str(AIRFLOW), "standalone"]]:
                with self.log.open("a") as out:
                    subprocess.run([str(AIRFLOW), "db", "migrate"], env=self.env, stdout=out, stderr=out, check=True)
            for command in self.commands:
                self.start(command)
            wait_for("the api-server", lambda: api(self.base, "GET", "/version"), 180, self.log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self, command: list[str], env: dict | None = None) -> subprocess.Popen:
        """Start one more component (its own process group, so it can be stopped whole)."""
        process = start_group(command, {**self.env, **(env or {})}, self.log)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        """`sig` to the component's group, then SIGKILL to whatever it started that outlives 30 s
        (a component still shutting down: its workers would outlive it)."""
        stop_group(process, grace=30, sig=sig)

    def kill_tree(self, process: subprocess.Popen) -> None:
        """SIGKILL a component with every process it started, as a lost machine or container loses
        them: its process group and the groups its children made (Airflow's supervisor puts each
        task process in a group of its own, so killing the component's group alone leaves the task
        running)."""
        import psutil

        try:
            tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        groups = set()
        for member in tree:
            try:
                groups.add(os.getpgid(member.pid))
            except ProcessLookupError:
                pass
        groups.discard(os.getpgrp())  # never the test's own
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(30)

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            self.stop(process)
        with psycopg.connect(self.pg_server, autocommit=True) as admin:
            for name in (self.meta, self.league):
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        return api(self.base, method, path, body, self.token)

    def login(self, username: str, password: str) -> None:
        """A JWT from the simple auth manager's users, sent with every later REST call."""
        self.token = auth_token(self.base, username, password)

    def wait_for_dag(self, dag_id: str, unpause: bool = True) -> None:
        wait_for(f"{dag_id} to be parsed", lambda: self.api("GET", f"/dags/{dag_id}"), 180, self.log)
        if unpause:
            self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict) -> str:
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        def finished():
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state if state in ("success", "failed") else None

        return wait_for(f"run {run_id} of {dag_id}", finished, timeout, self.log)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
