"""Health checks against a real PostgreSQL: a clean database is all ok; each injected fault is an error."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from helpers import night

from league_import.backup import backup
from league_import.health import failure_message, report, run_checks, thresholds
from league_import.notifications import LoggingNotifier, WebhookNotifier
from league_import.repair import restore_mapping


@pytest.fixture
def clean(conn):
    checks = night(conn, "night-1")
    conn.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    conn.execute(
        "INSERT INTO polls (id, team_id, created_by, question) VALUES (1, (SELECT min(id) FROM teams), 1, 'Q')"
    )
    conn.execute(
        """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location)
           SELECT (SELECT min(id) FROM teams), 'Mon', '18:00', '19:00', 'Court ' || n FROM generate_series(1, 150) n"""
    )
    conn.commit()
    night(conn, "night-2")
    return conn, checks


def errors(checks):
    return {(c.check, c.subject) for c in checks if c.status == "error"}


def test_a_clean_database_is_all_ok(clean):
    conn, first = clean
    checks = run_checks(conn, "night-2")
    assert {c.status for c in first} == {"ok"} and {c.status for c in checks} == {"ok"}
    kinds = {c.check for c in checks}
    assert kinds == {"orphans", "duplicates", "constraint", "rows", "row_balance", "quarantine"}
    assert report(checks)["status"] == "ok"
    rows = {c.subject: c.figure for c in checks if c.check == "rows"}
    assert rows["teams"] == 537 and rows["schedule"] == 4931 and rows["practice_times"] == 150


def test_an_orphan(clean):
    conn, _ = clean
    conn.execute("SET session_replication_role = replica")
    conn.execute("UPDATE polls SET team_id = 424242 WHERE id = 1")
    conn.commit()
    checks = run_checks(conn, "night-2")
    assert errors(checks) == {("orphans", "polls.team_id")}
    orphan = next(c for c in checks if c.subject == "polls.team_id")
    assert (orphan.figure, orphan.sample) == (1, [424242])
    assert "orphans polls.team_id: 1 (threshold 0) 1 rows point at no team" in failure_message(checks)


def test_a_duplicate_and_the_dropped_key_behind_it(clean):
    conn, _ = clean
    conn.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_natural_key")
    conn.execute(
        "INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location) "
        "SELECT team_id, day_of_week, start_time, end_time, location FROM practice_times WHERE location = 'Court 7'"
    )
    conn.commit()
    checks = run_checks(conn, "night-2")
    assert errors(checks) == {("duplicates", "practice_times"), ("constraint", "practice_times_natural_key")}
    dup = next(c for c in checks if c.check == "duplicates" and c.subject == "practice_times")
    assert dup.figure == 1 and dup.sample[0]["copies"] == 2


def test_a_dropped_foreign_key(clean):
    conn, _ = clean
    conn.execute("ALTER TABLE polls DROP CONSTRAINT polls_created_by_fkey")
    conn.commit()
    checks = run_checks(conn, "night-2")
    assert errors(checks) == {("constraint", "polls_created_by_fkey")}
    assert "constraint polls_created_by_fkey: 1 (threshold present and valid) missing" in failure_message(checks)


def test_a_table_growing_100x(clean):
    conn, _ = clean
    conn.execute(
        """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location)
           SELECT (SELECT min(id) FROM teams), 'Tue', '18:00', '19:00', 'Court ' || n FROM generate_series(1, 14850) n"""
    )
    conn.commit()
    checks = run_checks(conn, "night-3")  # the next night, compared with night-2
    assert errors(checks) == {("rows", "practice_times")}
    grown = next(c for c in checks if c.check == "rows" and c.subject == "practice_times")
    assert grown.figure == 15000 and "150 rows after the last successful run (100.00x)" in grown.detail


def test_growth_and_drop_levels_and_the_small_table_baseline(clean):
    conn, _ = clean
    conn.execute("DELETE FROM series_stats WHERE id IN (SELECT id FROM series_stats ORDER BY id LIMIT 100)")  # 19 %
    conn.execute("INSERT INTO users (id, email) SELECT n, 'u' || n FROM generate_series(2, 50) n")  # 1 -> 50 users
    conn.commit()
    checks = {(c.check, c.subject): c for c in run_checks(conn, "night-3")}
    assert checks[("rows", "series_stats")].status == "warn"
    assert checks[("rows", "users")].status == "ok"  # below the minimum baseline of 100 rows
    relaxed = run_checks(conn, "night-3", {"drop_warn": 0.5})
    assert next(c for c in relaxed if (c.check, c.subject) == ("rows", "series_stats")).status == "ok"
    with pytest.raises(ValueError, match="unknown health thresholds: grwoth_warn"):
        thresholds({"grwoth_warn": 3})


def test_a_user_row_removed_outside_the_archive(clean):
    conn, _ = clean
    backup(conn, "night-3")
    conn.execute("DELETE FROM polls WHERE id = 1")  # not by the pipeline: no archived copy
    conn.commit()
    checks = run_checks(conn, "night-3")
    assert errors(checks) == {("row_balance", "polls")}
    balance = next(c for c in checks if c.check == "row_balance" and c.subject == "polls")
    assert balance.detail == "backup 1, live 0, archived 0: 1 rows removed without an archived copy"


def test_quarantine_waiting_is_a_warning(clean):
    conn, _ = clean
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (2, 999999, 'no author')")
    conn.commit()
    restore_mapping(conn, "night-3")
    checks = run_checks(conn)
    waiting = next(c for c in checks if c.check == "quarantine")
    assert (waiting.status, waiting.figure) == ("warn", 1)
    assert not errors(checks) and report(checks)["status"] == "warn"


def test_read_only_session_is_enough(clean, db_uri):
    import psycopg

    conn, _ = clean
    with psycopg.connect(db_uri, options="-c default_transaction_read_only=on") as readonly:
        assert {c.status for c in run_checks(readonly)} == {"ok"}


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((self.path, self.headers.get("Authorization"), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_and_logging_notifiers(monkeypatch, caplog):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_LEAGUE_IMPORT_WEBHOOK", f"http://:s3cret@127.0.0.1:{server.server_port}/alerts")
    context = {"run_id": "night-9", "exception": "1 health checks failed:\n- orphans polls.team_id: 1"}
    WebhookNotifier().notify(context)
    thread.join(5)
    server.server_close()
    path, auth, body = _Hook.received[0]
    assert (path, auth) == ("/alerts", "Bearer s3cret")
    assert body["run_id"] == "night-9" and "orphans polls.team_id" in body["error"]
    LoggingNotifier().notify(context)
