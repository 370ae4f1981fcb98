"""A database built and used by the first release (commit d0a6bff, taken from git history) runs
under this version: the migrations take it as it is, every team keeps its id, user rows stay."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import psycopg
import pytest
from helpers import CONF, FRESH_DEMO, REPO, create_user_data, one, row_teams, user_counts

from league_import.identity import KEY_VERSION

pytestmark = pytest.mark.dag

FIRST_RELEASE = "d0a6bff"
# The first release's own steps, run with its own code (its league_import package first on the path).
OLD_NIGHT = """
import sys
import league_import
assert league_import.__file__.startswith(sys.argv[2]), league_import.__file__
import psycopg
from league_import.backup import backup
from league_import.constraints import check_constraints
from league_import.health import record, run_checks
from league_import.repair import restore_mapping
from league_import.runs import finish_run, start_run
from league_import.schema import ensure_schema
from league_import.sources import read_leagues
from league_import.upsert import check_deactivation_guard, load_league

with psycopg.connect(sys.argv[1]) as conn:
    run_id = sys.argv[3]
    ensure_schema(conn)
    start_run(conn, run_id, False)
    check_constraints(conn)
    backup(conn, run_id)
    leagues = read_leagues(sys.argv[4], [])
    check_deactivation_guard(conn, leagues, 0.2)
    for league in leagues:
        load_league(conn, league)
    restore_mapping(conn, run_id)
    record(conn, run_id, run_checks(conn, run_id))
    finish_run(conn, run_id, "success")
"""


@pytest.fixture(scope="module")
def first_release(tmp_path_factory):
    """The first release's plugins/ and include/sql, as `git archive d0a6bff plugins include/sql`
    gave them (tests/data: a shallow clone has no history to take them from)."""
    folder = tmp_path_factory.mktemp("first-release")
    with tarfile.open(REPO / "tests" / "data" / f"first_release_{FIRST_RELEASE}.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    return folder


def old_night(first_release, uri: str, run_id: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(first_release / "plugins")}
    done = subprocess.run(
        [sys.executable, "-c", OLD_NIGHT, uri, str(first_release / "plugins"), run_id, str(FRESH_DEMO)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def team_ids(conn) -> dict[tuple[str, str], int]:
    """Each team by its spelling and series label (the one thing both releases store alike)."""
    rows = conn.execute("SELECT s.name, t.team_name, t.id FROM teams t JOIN series s ON s.id = t.series_id").fetchall()
    conn.rollback()
    return {(series, name): team_id for series, name, team_id in rows}


def test_a_first_release_database_runs_under_this_version(first_release, league_dag, db_uri):
    old_night(first_release, db_uri, "old-night-1")
    with psycopg.connect(db_uri) as conn:
        create_user_data(conn)
        old_night(first_release, db_uri, "old-night-2")  # user data through one more old night
        assert one(conn, "SELECT to_regclass('etl.alembic_version')") is None  # made without migrations
        before_ids, before_rows, before_counts = team_ids(conn), row_teams(conn), user_counts(conn)
        assert len(before_ids) == 537

        assert league_dag.test(run_conf=CONF).state == "success"

        from league_import.schema import head

        assert one(conn, "SELECT version_num FROM etl.alembic_version") == head()
        assert team_ids(conn) == before_ids  # same id for every team
        assert row_teams(conn) == before_rows and user_counts(conn) == before_counts
        status, report = conn.execute(
            "SELECT status, report FROM etl.runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        assert status == "success" and report["health_check"]["status"] == "ok", report["health_check"]["problems"]
        rekey = report["upsert_teams"]["rekey"]
        assert (rekey["from_version"], rekey["teams_merged"]) == (1, [])  # the sample's keys never coincided
        assert one(conn, "SELECT value FROM etl.settings WHERE name = 'identity_key_version'") == str(KEY_VERSION)
        # The key map of the first release is kept and re-expressed in the new keys.
        assert one(conn, "SELECT count(*) FROM etl.team_key_map WHERE team_key LIKE '%% %%'") == 0
        assert one(conn, "SELECT count(DISTINCT team_id) FROM etl.team_key_map") >= 537

        assert league_dag.test(run_conf=CONF).state == "success"  # and the next night is ordinary
        assert team_ids(conn) == before_ids and row_teams(conn) == before_rows
