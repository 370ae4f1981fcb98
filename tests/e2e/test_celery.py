"""Airflow on the CeleryExecutor with a real Redis broker: scheduler, dag-processor, api-server and
two `airflow celery worker` processes on loopback, PostgreSQL for the metadata; league_import
triggered over the REST API runs with its tasks spread over both workers, and a worker killed
mid-transaction loses its task to the other worker, which finishes the night as a clean run would.

One source for commands and settings: this test reads docker-compose.yaml itself, the commands and
environments of airflow-scheduler, airflow-dag-processor, airflow-apiserver and airflow-worker,
and replaces only what differs on loopback (`loopback()`: hosts, ports, secrets, paths; and each
worker's hostname and log-server port, which a container has of its own). A compose setting that
names a compose host, a secret or an /opt/airflow path fails this test until `loopback()` says
what it is here. TEST_ONLY lists the few settings added for the test (a lost task noticed in
seconds rather than minutes).

Redis: the one on 127.0.0.1:6379 when it answers, else a redis-server this test starts on a free
loopback port (no persistence) and stops, else a skip that says why. The test claims an empty
Redis database of its own and flushes only that one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import yaml
from faults import FAULTS, end_state, prepare
from helpers import FRESH_DEMO
from live_airflow import AIRFLOW, IMPORT_TASKS, REPO, Airflow, free_port, sqlalchemy_url, wait_for

from league_import.db import CLIENT_CHECK
from league_import.runs import TASK_LOCK

pytestmark = pytest.mark.e2e

COMPOSE = REPO / "docker-compose.yaml"
COMPONENTS = ("airflow-scheduler", "airflow-dag-processor", "airflow-apiserver")
WORKERS = ("worker-a", "worker-b")
COMPOSE_HOSTS = re.compile(r"[/@](airflow-apiserver|airflow-db|league-db|redis)[:/]")
# Added for the test only: a task whose worker died is failed after 20 s without a heartbeat
# (Airflow's default is 300 s), checked every 2 s. live_airflow adds LEAGUE_IMPORT_RETRY_DELAY=2
# (the DAG's default is 30 s) and a 5 s DAG folder refresh. The all-admins switch live_airflow
# turns on for its other tests is turned off: the REST API is used with compose's logins.
TEST_ONLY = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
}
# How long the dead worker's locks may hold up the retry: PostgreSQL ends the dead client's backend
# within client_connection_check_interval (league_import.db.CLIENT_CHECK, 5 s) of its death, even
# mid-query, freeing its task lock and row locks; 3 s more for the kill and this test's 0.1 s
# sampling on a busy 2-core machine. The lease is the run's own, so it never holds the retry up.
BLOCK_BOUND = int(CLIENT_CHECK.removesuffix("s")) + 3
QUEUE = "default"  # Airflow's [operators] default_queue, which compose keeps
REDIS_DEFAULT = 6379
CLAIM_KEY, LEASE_KEY = "league-import:e2e", "league-import:e2e:lease"
# A database is ours when it is empty, or was ours and its lease expired (a test that died).
CLAIM = """
if redis.call('DBSIZE') == 0 or (redis.call('EXISTS', KEYS[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 0) then
    redis.call('FLUSHDB')
    redis.call('SET', KEYS[1], 'claimed by league-import tests/e2e/test_celery.py')
    redis.call('SET', KEYS[2], ARGV[1], 'EX', 3600)
    return 1
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('FLUSHDB') return 1 end
return 0
"""


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def command(service: str) -> list[str]:
    """A service's command as the image runs it (its entrypoint runs `airflow <command>`)."""
    given = compose()["services"][service]["command"]
    return [str(AIRFLOW), *(given.split() if isinstance(given, str) else given)]


def loopback(server: Airflow, broker_url: str, passwords: Path) -> dict[str, str]:
    """The compose settings that differ on loopback: hosts, ports, secrets, paths."""
    return {
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{server.base}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(server.pg_server, server.meta),
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sqlalchemy_url(server.pg_server, server.meta)}",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW_CONN_LEAGUE_DB": server.league_uri,
        "AIRFLOW_VAR_LEAGUE_IMPORT_SOURCE_DIR": str(FRESH_DEMO),
        "LEAGUE_IMPORT_REPORT_DIR": str(server.home / "reports"),
    }


def environment(service: str, local: dict[str, str]) -> dict[str, str]:
    """A service's environment in compose, with the loopback values in place of compose's."""
    given = {k: str(v) for k, v in compose()["services"][service]["environment"].items()}
    unknown = [
        k for k, v in given.items() if k not in local and ("${" in v or "/opt/airflow" in v or COMPOSE_HOSTS.search(v))
    ]
    assert not unknown, f"{service} in docker-compose.yaml: no loopback value in this test for {unknown}"
    assert set(local) <= set(given), f"{service} in docker-compose.yaml no longer sets {set(local) - set(given)}"
    return {**given, **local, **TEST_ONLY}


def worker(name: str, local: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Compose's worker command and environment, with what a container has of its own: a hostname
    (Celery's node name and the one task instances record) and the log server's port."""
    env = {
        **environment("airflow-worker", local),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "live_airflow.worker_hostname",
        "LIVE_AIRFLOW_HOSTNAME": name,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    }
    return [*command("airflow-worker"), "--celery-hostname", f"{name}@%h"], env


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Broker:
    port: int
    db: int
    token: str  # our claim on the database, checked before it is flushed at the end

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"


def claim_database(port: int) -> Broker:
    import redis

    token = secrets.token_hex(8)
    for db in range(15, 0, -1):  # 0 left to whoever else uses this Redis
        with redis.Redis(host="127.0.0.1", port=port, db=db) as client:
            if client.eval(CLAIM, 2, CLAIM_KEY, LEASE_KEY, token):
                return Broker(port, db, token)
    pytest.skip(f"no empty Redis database on 127.0.0.1:{port} for the test to claim")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A Redis database of this test's own, on the machine's Redis or on one started here."""
    import redis

    process = None
    if redis_answers(REDIS_DEFAULT):
        port = REDIS_DEFAULT
    else:
        server = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
        if server is None:
            pytest.skip(
                f"no Redis answers on 127.0.0.1:{REDIS_DEFAULT} and redis-server is not installed "
                "(Debian: apt-get install redis-server)"
            )
        port, folder = free_port(), tmp_path_factory.mktemp("redis")
        process = subprocess.Popen(
            [
                server,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(folder),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=(folder / "redis.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for("redis-server", lambda: redis_answers(port), 20, folder / "redis.log", every=0.2)
    try:
        claimed = claim_database(port)
        yield claimed
        with redis.Redis(host="127.0.0.1", port=port, db=claimed.db) as client:
            client.eval(RELEASE, 1, LEASE_KEY, claimed.token)
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)


def ping_workers(broker_url: str) -> dict[str, str]:
    """The Celery workers answering on the broker: worker name -> Celery node name."""
    from celery import Celery

    with Celery(broker=broker_url) as app:
        return {node.split("@")[0]: node for reply in app.control.ping(timeout=1) or [] for node in reply}


def consume(server: Airflow, name: str, on: bool) -> None:
    """Drain a worker from Airflow's queue, or put it back: the Celery control calls behind
    `airflow celery remove-queue` / `add-queue` (a task it runs goes on, it takes no other)."""
    from celery import Celery

    with Celery(broker=server.broker_url) as app:
        control = app.control.add_consumer if on else app.control.cancel_consumer
        replies = control(QUEUE, destination=[server.nodes[name]], reply=True, timeout=10)
    assert replies and all("ok" in r for reply in replies for r in reply.values()), replies


def scheduled_runs(server: Airflow) -> list[dict]:
    runs = server.api("GET", "/dags/league_import/dagRuns")["dag_runs"]
    return [r for r in runs if r["run_type"] == "scheduled"]


def both(nodes: dict[str, str]) -> dict[str, str] | None:
    return nodes if set(nodes) == set(WORKERS) else None


@pytest.fixture(scope="module")
def celery(pg_server, broker, tmp_path_factory):
    """Compose's Airflow on loopback: scheduler, dag-processor, api-server and two workers."""
    home = tmp_path_factory.mktemp("airflow-celery")
    password = secrets.token_urlsafe(16)
    passwords = home / "passwords.json"  # as airflow-init writes it
    passwords.write_text(json.dumps({"admin": password}))
    server = Airflow(pg_server, home, commands=[command(name) for name in COMPONENTS])
    local = loopback(server, broker.url, passwords)
    envs = [environment(name, local) for name in COMPONENTS]
    assert all(env == envs[0] for env in envs), "compose gives these three one environment, as the test does"
    server.env.update(envs[0])
    with server:
        server.workers = {name: server.start(*worker(name, local)) for name in WORKERS}
        server.login("admin", password)
        server.wait_for_dag("league_import")
        server.broker_url = broker.url
        server.nodes = wait_for("both Celery workers", lambda: both(ping_workers(broker.url)), 180, server.log)
        # Unpaused, the DAG's latest nightly slot is due at once (catchup=False); that night reads
        # the folder compose names in AIRFLOW_VAR_LEAGUE_IMPORT_SOURCE_DIR. It is the first import.
        night = wait_for("the scheduled night", lambda: scheduled_runs(server), 120, server.log)[0]
        assert server.wait_for_run("league_import", night["dag_run_id"], timeout=600) == "success"
        yield server
    logged = server.log.read_text()
    for secret in (password, local["AIRFLOW__API_AUTH__JWT_SECRET"]):
        assert secret not in logged, "a secret was written to the components' log"


def placement(server: Airflow, run_id: str) -> dict[str, list[tuple[int, str, str, float]]]:
    """Each task's tries: (try number, worker, state, seconds), from the REST API."""
    out = {}
    for task in IMPORT_TASKS:
        tries = server.api("GET", f"/dags/league_import/dagRuns/{run_id}/taskInstances/{task}/tries")
        out[task] = [
            (t["try_number"], t["hostname"], t["state"], t["duration"] or 0.0) for t in tries["task_instances"]
        ]
    return out


def show(server: Airflow, run_id: str, what: str, placed: dict, capsys) -> str:
    """Which worker ran which task, and how long the run took, shown in the test run's output."""
    run = server.api("GET", f"/dags/league_import/dagRuns/{run_id}")
    title = f"run {run_id}: {what}; {run['duration']:.1f} s from its start to its end"
    lines = [title] + [
        f"  {task:22} " + ", ".join(f"try {n} on {host} ({state}, {secs:.1f} s)" for n, host, state, secs in tries)
        for task, tries in placed.items()
    ]
    text = "\n".join(lines)
    with capsys.disabled():
        print("\n" + text)
    return text


def import_once(server: Airflow) -> str:
    run_id = server.trigger("league_import", {"source_dir": str(FRESH_DEMO)})
    assert server.wait_for_run("league_import", run_id, timeout=600) == "success"
    return run_id


def test_league_import_runs_on_two_celery_workers(celery, capsys):
    """Which idle worker Celery gives a task to is a matter of timing (whose poll of Redis is served
    first, whether the last task's worker is still busy), so the spread is likely, not certain.
    The test makes it certain the way an operator drains a worker: worker-b takes nothing when the
    run starts; once validate_constraints runs on worker-a, worker-a is drained and worker-b takes
    the queue, and the run goes on there."""
    first, second = WORKERS
    consume(celery, second, on=False)
    try:
        run_id = celery.trigger("league_import", {"source_dir": str(FRESH_DEMO)})
        path = f"/dags/league_import/dagRuns/{run_id}/taskInstances/{IMPORT_TASKS[0]}"
        wait_for(
            "the first task to start",
            lambda: celery.api("GET", path)["state"] in ("running", "success"),
            300,
            celery.log,
            every=0.2,
        )
        consume(celery, first, on=False)
        consume(celery, second, on=True)
        assert celery.wait_for_run("league_import", run_id, timeout=600) == "success"
    finally:
        for name in WORKERS:
            consume(celery, name, on=True)
    placed = placement(celery, run_id)
    text = show(celery, run_id, "which worker ran which task", placed, capsys)
    assert all([t[:3] for t in tries] == [(1, tries[0][1], "success")] for tries in placed.values()), text
    hosts = [tries[0][1] for tries in placed.values()]
    assert hosts[0] == first and hosts[-1] == second, text  # both workers ran the pipeline's tasks
    with psycopg.connect(celery.league_uri) as conn:
        assert conn.execute("SELECT count(*) FROM teams WHERE is_active").fetchone()[0] == 537
        assert conn.execute("SELECT status FROM etl.runs WHERE run_id = %s", (run_id,)).fetchone()[0] == "success"


# Sleeps inside the task's transaction, once: the test knows the task is mid-transaction (holding
# the task lock and its row locks) when it kills the worker. Named as the triggers of
# tests/dag/test_faults.py FAULTS call it, which this test installs unchanged.
SLEEP_ONCE = """
CREATE SEQUENCE fault_once;
CREATE FUNCTION fault_kill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('fault_once') = 1 THEN PERFORM pg_sleep(600); END IF;
    RETURN NULL;
END $$;
"""
KILLED_TASK = "upsert_teams"


class LockWatch(threading.Thread):
    """Samples the league database every 0.1 s: whether the dead task's backend is still there,
    whether any backend waits for a lock (the task lock, a row, a table), and the lease's holder."""

    def __init__(self, uri: str, dead_pid: int):
        super().__init__(daemon=True)
        self.uri, self.dead_pid = uri, dead_pid
        self.samples: list[tuple[float, bool, int, str | None]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.uri, autocommit=True) as conn:
            while not self.done.is_set():
                alive, waiting, holder = conn.execute(
                    """SELECT count(*) FILTER (WHERE pid = %s),
                              count(*) FILTER (WHERE wait_event_type = 'Lock' AND datname = current_database()),
                              (SELECT holder FROM etl.run_lock)
                       FROM pg_stat_activity""",
                    (self.dead_pid,),
                ).fetchone()
                self.samples.append((time.time(), alive > 0, waiting, holder))
                time.sleep(0.1)

    def dead_backend_gone(self) -> float | None:
        return next((t for t, alive, _, _ in self.samples if not alive), None)

    def waited(self, until: float) -> float:
        """Seconds until `until` during which some backend waited for a lock (0.1 s a sample)."""
        return round(sum(0.1 for t, _, waiting, _ in self.samples if waiting and t <= until), 1)

    def reclaimed(self, dead_holder: str) -> tuple[float, str] | None:
        """When, and by whom, the lease was next held by another process than the dead one."""
        return next(((t, h) for t, _, _, h in self.samples if h and h != dead_holder), None)


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_a_worker_killed_mid_transaction_loses_its_task_to_the_other(celery, request, capsys):
    """SIGKILL of the worker (every process of it) while its task sleeps inside its transaction:
    Airflow notices the lost task by its missing heartbeat, retries it on the other worker, and the
    night ends as a clean one does; the dead worker's task lock and lease hold the retry up for at
    most BLOCK_BOUND."""
    clean = request.getfixturevalue("clean_end_state")  # the same night without a fault (conftest)
    with psycopg.connect(celery.league_uri) as conn:
        imported = conn.execute(
            "SELECT to_regclass('etl.runs') IS NOT NULL AND EXISTS (SELECT 1 FROM etl.runs WHERE status = 'success')"
        ).fetchone()[0]
        conn.rollback()
        if not imported:  # the test above failed before its night: the reference had one
            import_once(celery)
        prepare(conn)
        conn.execute(SLEEP_ONCE)
        conn.execute(FAULTS[KILLED_TASK])
        conn.commit()

    run_id = celery.trigger("league_import", {"source_dir": str(FRESH_DEMO)})

    def asleep():
        """The task's backend, asleep in its transaction and holding the task lock."""
        with psycopg.connect(celery.league_uri, autocommit=True) as conn:
            return conn.execute(
                """SELECT a.pid FROM pg_stat_activity a
                   JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.objid = %s AND l.granted
                   WHERE a.wait_event = 'PgSleep' AND a.xact_start IS NOT NULL""",
                (TASK_LOCK,),
            ).fetchone()

    (dead_pid,) = wait_for("the task asleep mid-transaction", asleep, 300, celery.log, every=0.5)
    with psycopg.connect(celery.league_uri, autocommit=True) as conn:
        lease_run, dead_holder = conn.execute("SELECT run_id, holder FROM etl.run_lock").fetchone()
    assert lease_run == run_id
    running = celery.api("GET", f"/dags/league_import/dagRuns/{run_id}/taskInstances/{KILLED_TASK}")
    assert running["state"] == "running"
    victim = running["hostname"]
    survivor = next(name for name in WORKERS if name != victim)
    watch = LockWatch(celery.league_uri, dead_pid)
    watch.start()
    killed_at = time.time()
    celery.kill_tree(celery.workers[victim])
    try:
        assert celery.wait_for_run("league_import", run_id, timeout=600) == "success"
    finally:
        watch.done.set()
        watch.join(10)

    placed = placement(celery, run_id)
    text = show(celery, run_id, f"{victim} killed during {KILLED_TASK}", placed, capsys)
    first, retry = placed[KILLED_TASK]
    assert first[1:3] == (victim, "failed") and retry[1:3] == (survivor, "success"), text
    assert all(len(tries) == 1 for task, tries in placed.items() if task != KILLED_TASK), text
    with psycopg.connect(celery.league_uri) as conn:
        assert conn.execute("SELECT is_called FROM fault_once").fetchone()[0]  # the fault fired
        conn.rollback()
        assert end_state(conn) == clean
        report = conn.execute("SELECT report FROM etl.runs WHERE run_id = %s", (run_id,)).fetchone()[0]
        assert conn.execute("SELECT run_id FROM etl.run_lock").fetchone()[0] is None  # freed at the end

    # The timeline, from the REST API (the tries) and the sampled database, all on this clock.
    tries = celery.api("GET", f"/dags/league_import/dagRuns/{run_id}/taskInstances/{KILLED_TASK}/tries")
    lost_at = timestamp(tries["task_instances"][0]["end_date"])
    retry_at = timestamp(tries["task_instances"][-1]["start_date"])
    gone = watch.dead_backend_gone()
    assert gone is not None, "the dead worker's backend outlived the run"
    reclaimed = watch.reclaimed(dead_holder)
    assert reclaimed is not None and reclaimed[0] >= retry_at - 1, "the retry never re-claimed the lease"
    lock_held = gone - killed_at
    # Held up: the retry started while the dead backend still held its locks, or was seen waiting
    # for a lock before it had the task lock and the lease.
    blocked = max(gone - retry_at, watch.waited(until=reclaimed[0]), 0.0)
    with capsys.disabled():
        print(
            f"\n{victim} killed (SIGKILL, every process) while {KILLED_TASK} slept in its transaction:\n"
            f"  {lock_held:5.1f} s  its backend ended by PostgreSQL (task lock and row locks freed)\n"
            f"  {lost_at - killed_at:5.1f} s  Airflow failed the try (no heartbeat for 20 s)\n"
            f"  {retry_at - killed_at:5.1f} s  the retry started on {survivor}\n"
            f"  {reclaimed[0] - killed_at:5.1f} s  the retry held the task lock and had re-claimed its run's lease\n"
            f"  retry blocked by the dead worker's lock and lease: {blocked:.1f} s (bound {BLOCK_BOUND} s)"
        )
    assert lock_held <= BLOCK_BOUND
    assert blocked <= BLOCK_BOUND
    # The lease is the run's own: re-claimed by the retry, never taken over as a dead run's.
    assert "lease_takeover" not in report[KILLED_TASK], report[KILLED_TASK]
