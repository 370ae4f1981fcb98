"""Never a wrong team, never stuck (issue 10), through DAG runs on a real PostgreSQL: re-used ids,
quarantine that holds any number of rows of one user, locks and leases that heal, no personal
data in reports or logs."""

from __future__ import annotations

import json
import re
import threading
import time

import psycopg
import pytest
from helpers import CONF, create_user_data, one, placement, q, restart_identity_churn

from league_import import runs
from league_import.runs import TASK_LOCK

pytestmark = pytest.mark.dag
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def latest(conn) -> tuple[str, dict]:
    found = conn.execute("SELECT status, report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()
    conn.rollback()
    return found


def test_restarted_ids_put_every_row_back_on_its_real_team(league_dag, db_uri, capsys):
    """The old system re-created the teams with the id sequence restarted, in another order: every
    user row points at an existing id of another team. The next run puts each back."""
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        create_user_data(conn, captains=20)
        assert league_dag.test(run_conf=CONF).state == "success"  # the backup that shows where rows were
        before = placement(conn)
        restart_identity_churn(conn)
        assert placement(conn) != before and one(conn, "SELECT count(*) FROM teams") == 537

        assert league_dag.test(run_conf=CONF).state == "success"
        assert placement(conn) == before  # same league, series and team for every row
        status, report = latest(conn)
        repair = report["restore_mapping"]
        assert status == "success" and repair["by_strategy"]["key_map"] == 4 * 20
        assert repair["reused_ids"] >= 20 and all(r["was"] != r["now"] for r in repair["reused_sample"])
        # Every id re-used: the key map gains a meaning for each, which the growth check reports.
        problems = {(p["check"], p["subject"], p["status"]) for p in report["health_check"]["problems"]}
        assert problems <= {("rows", "etl.team_key_map", "warn")}, problems
        # The key map keeps each id's first meaning; the new one is a new epoch, never a rewrite.
        assert one(conn, "SELECT count(*) FROM etl.team_key_map WHERE epoch = 0") >= 537
        assert one(conn, "SELECT count(*) FROM etl.team_key_map WHERE epoch = 1") == repair["reused_ids"]

        assert league_dag.test(run_conf=CONF).state == "success"  # the next night: nothing more
        assert latest(conn)[1]["restore_mapping"]["orphans"] == 0 and placement(conn) == before
        reports = json.dumps(q(conn, "SELECT report FROM etl.runs"))
    assert not EMAIL.search(reports), EMAIL.search(reports)
    assert not EMAIL.search(capsys.readouterr().out)  # nor in the task logs


def test_two_unplaceable_memberships_of_one_user_wait_and_the_next_run_succeeds(league_dag, db_uri):
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        conn.execute("INSERT INTO users (id, email) VALUES (7, 'seven@example.com')")
        conn.execute("SET session_replication_role = replica")
        conn.execute("INSERT INTO team_memberships VALUES (7, 999001, true), (7, 999002, false)")
        conn.execute("SET session_replication_role = origin")
        conn.commit()
        for night in (1, 2):
            assert league_dag.test(run_conf=CONF).state == "success", night
        waiting = q(conn, "SELECT row_id FROM etl.quarantine WHERE resolved_at IS NULL ORDER BY row_id")
        assert waiting == [('{"team_id": 999001, "user_id": 7}',), ('{"team_id": 999002, "user_id": 7}',)]
        assert one(conn, "SELECT count(*) FROM etl_archive.team_memberships") == 2


def test_a_moments_lock_between_two_tasks_does_not_kill_the_run(league_dag, db_uri, monkeypatch):
    """Something holds the task lock for a moment after validate_constraints: the next task of the
    run that holds the lease waits for it instead of failing."""
    assert league_dag.test(run_conf=CONF).state == "success"
    held = threading.Event()
    real = runs.record_step

    def then_hold(conn, run_id, step, report):
        real(conn, run_id, step, report)
        if step == "validate_constraints":

            def hold():
                with psycopg.connect(db_uri, autocommit=True) as other:
                    other.execute("SELECT pg_advisory_lock(%s)", (TASK_LOCK,))
                    held.set()
                    time.sleep(3)

            threading.Thread(target=hold, daemon=True).start()
            held.wait(10)

    monkeypatch.setattr(runs, "record_step", then_hold)
    started = time.monotonic()
    dag_run = league_dag.test(run_conf=CONF)
    assert dag_run.state == "success"
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert all(n == 1 for n in tries.values()), tries
    assert time.monotonic() - started > 3  # it waited for the lock


def test_a_dead_runs_lease_is_taken_over_and_reported(league_dag, db_uri):
    """A run killed with kill -9 leaves its lease and its 'running' row. Past the heartbeat bound
    (STALE_LEASE) the next run takes the lease over and says so."""
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        conn.execute("INSERT INTO etl.runs (run_id, status) VALUES ('killed-run', 'running')")
        conn.execute(
            "UPDATE etl.run_lock SET run_id = 'killed-run', holder = 'worker pid 1', acquired_at = now(), "
            "heartbeat_at = now() - %s::interval - interval '1 minute'",
            (runs.STALE_LEASE,),
        )
        conn.commit()
        dag_run = league_dag.test(run_conf=CONF)
        assert dag_run.state == "success"
        status, report = latest(conn)
        assert "took over the lease of run killed-run" in report["validate_constraints"]["lease_takeover"]
        assert "no heartbeat for more than 15 minutes" in report["validate_constraints"]["lease_takeover"]
        # The dead run is no longer 'running' in etl.runs: failed, with the reason.
        dead = q(conn, "SELECT status, report->>'error', finished_at IS NOT NULL FROM etl.runs WHERE run_id = 'killed-run'")
        assert dead[0][0] == "failed" and dead[0][2]
        assert dead[0][1].startswith("lease taken over by run ") and "no heartbeat for more than 15 minutes" in dead[0][1]
        # While its heartbeat is fresh, a run that still says it is running is not taken over.
        conn.execute("UPDATE etl.runs SET status = 'running', finished_at = NULL WHERE run_id = 'killed-run'")
        conn.execute("UPDATE etl.run_lock SET run_id = 'killed-run', heartbeat_at = now()")
        conn.commit()
        assert league_dag.test(run_conf=CONF).state == "failed"
        assert "run killed-run" in latest(conn)[1]["error"] and "league-import unlock" in latest(conn)[1]["error"]


def test_a_lease_whose_airflow_run_ended_is_taken_over_at_once(conn):
    """Asked of Airflow (from inside a task), a holder whose run ended is dead whatever its heartbeat."""
    from league_import.schema import ensure_schema

    ensure_schema(conn)
    runs.start_run(conn, "killed-run", False, "league_import")
    assert runs.claim_run(conn, "killed-run", "league_import") is None
    with pytest.raises(runs.ConcurrentRunError):
        runs.check_lease(conn, "next-run", lambda dag_id, run_id: "running")
    took = runs.check_lease(conn, "next-run", lambda dag_id, run_id: "failed")
    assert "its Airflow run is failed" in took
    assert "took over the lease of run killed-run" in runs.claim_run(
        conn, "next-run", "league_import", lambda dag_id, run_id: "failed"
    )
    assert runs.lease(conn).run_id == "next-run"
