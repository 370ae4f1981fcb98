"""Shared fixtures: a real PostgreSQL (embedded unless AIRFLOW_CONN_LEAGUE_DB is set), a fresh
database per test, and a throwaway Airflow home with SQLite metadata for DAG runs."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "include" / "demo_data"

# Airflow reads its configuration at import: point it at a private home before anything imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="league-import-airflow-"))
_SERVER_URI = os.environ.get("AIRFLOW_CONN_LEAGUE_DB")
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "LEAGUE_IMPORT_REPORT_DIR": str(_AIRFLOW_HOME / "reports"),
        "LEAGUE_IMPORT_RETRY_DELAY": "1",  # dag.test() waits out retry_delay between tries
    }
)


def with_database(uri: str, dbname: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory) -> str:
    """The server's URI: AIRFLOW_CONN_LEAGUE_DB as given, or an embedded server for this session."""
    if _SERVER_URI:
        yield _SERVER_URI
        return
    from league_import.embedded import ensure_server

    # A short path: the server's Unix socket lives in this folder (107-byte limit). Removed at exit,
    # registered first so that it runs after pgserver's own exit hook has stopped the server.
    folder = Path(tempfile.mkdtemp(prefix="lipg-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    yield ensure_server(folder / "data", delete_on_exit=True)


@pytest.fixture
def db_uri(pg_server, monkeypatch) -> str:
    """A fresh, empty database for one test, named in AIRFLOW_CONN_LEAGUE_DB for the DAG."""
    import psycopg
    from psycopg import sql

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    uri = with_database(pg_server, name)
    monkeypatch.setenv("AIRFLOW_CONN_LEAGUE_DB", uri)
    yield uri
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(db_uri):
    import psycopg

    with psycopg.connect(db_uri) as connection:
        yield connection


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's own metadata database (SQLite), migrated once per session."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def league_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("league_import")


@pytest.fixture(scope="session")
def clean_end_state(league_dag, pg_server):
    """The reference for the fault tests: the same night without a fault, in a database of its own."""
    import psycopg
    from faults import end_state, prepare
    from helpers import CONF
    from psycopg import sql

    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier("fault_reference")))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("fault_reference")))
    uri = with_database(pg_server, "fault_reference")
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_LEAGUE_DB", uri)
    try:
        assert league_dag.test(run_conf=CONF).state == "success"
        with psycopg.connect(uri) as conn:
            damage = prepare(conn)
            assert league_dag.test(run_conf=CONF).state == "success"
            state = end_state(conn)
    finally:
        mp.undo()
    # Every row on its team as before (the message with no history is decided as well).
    assert damage["placement"].items() <= state["placement"].items() and state["orphans"] == 0
    yield state
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier("fault_reference")))


# CI proves that the tests needing chromium, Redis and docker-compose ran (.ci/run installs them
# and sets this); on a machine without them they skip, each saying why.
NO_SKIPS = os.environ.get("LEAGUE_IMPORT_NO_SKIPS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and LEAGUE_IMPORT_NO_SKIPS=1 allows no skip: {reason}"
