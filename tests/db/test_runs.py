"""The run lease and the task lock on a real PostgreSQL: refused, waited for, healed."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from helpers import one

from league_import import runs
from league_import.errors import ConcurrentRunError, LockBusyError
from league_import.schema import ensure_schema


@pytest.fixture
def db(conn):
    ensure_schema(conn)
    return conn


def hold_lock(db_uri, seconds: float) -> threading.Event:
    held = threading.Event()

    def hold():
        with psycopg.connect(db_uri, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (runs.TASK_LOCK,))
            held.set()
            time.sleep(seconds)

    threading.Thread(target=hold, daemon=True).start()
    held.wait(10)
    return held


def test_a_newcomer_is_refused_at_once_and_the_lease_holder_waits(db, db_uri):
    hold_lock(db_uri, 1.5)
    started = time.monotonic()
    with pytest.raises(ConcurrentRunError, match="another league_import task is working on this database"):
        runs.lock_task(db, wait=False)
    assert time.monotonic() - started < 1
    runs.lock_task(db, wait=True)  # the holder lets go within the bound: this task goes on
    assert time.monotonic() - started >= 1


def test_past_the_bound_the_wait_is_a_transient_error(db, db_uri, monkeypatch):
    monkeypatch.setattr(runs, "TASK_LOCK_WAIT", "1s")
    hold_lock(db_uri, 5)
    with pytest.raises(LockBusyError, match="held by backend pid .* for more than 1s"):
        runs.lock_task(db, wait=True)


def test_the_heartbeat_refreshes_the_lease_while_a_task_works(db):
    runs.start_run(db, "run-1", False, "league_import")
    runs.claim_run(db, "run-1", "league_import")
    db.execute("UPDATE etl.run_lock SET heartbeat_at = now() - interval '10 minutes'")
    db.commit()
    with runs.Heartbeat(db, "run-1", every=0.2):
        time.sleep(1)
    assert one(db, "SELECT now() - heartbeat_at < interval '5 seconds' FROM etl.run_lock")


def test_a_finished_run_frees_its_lease_and_the_next_claims_it(db):
    runs.start_run(db, "run-1", False, "league_import")
    runs.claim_run(db, "run-1", "league_import")
    with pytest.raises(ConcurrentRunError, match="run run-1 of league_import .* is in progress"):
        runs.check_lease(db, "run-2")
    runs.finish_run(db, "run-1", "success")
    assert runs.lease(db) is None and runs.check_lease(db, "run-2") is None
    assert runs.claim_run(db, "run-2", "league_import") is None
    assert runs.lease(db).run_id == "run-2"


def test_a_taken_over_run_is_marked_failed_with_the_reason(db):
    runs.start_run(db, "dead-run", False, "league_import")
    runs.claim_run(db, "dead-run", "league_import")
    took = runs.claim_run(db, "next-run", "league_import", lambda dag_id, run_id: "failed")
    assert "took over the lease of run dead-run" in took
    status, error, finished = db.execute(
        "SELECT status, report->>'error', finished_at IS NOT NULL FROM etl.runs WHERE run_id = 'dead-run'"
    ).fetchone()
    assert (status, finished) == ("failed", True)
    assert error == "lease taken over by run next-run: its Airflow run is failed"
