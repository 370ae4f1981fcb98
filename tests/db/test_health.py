"""Health checks against a real PostgreSQL: a clean database is all ok; each injected fault is an
error; the seed's own incidents raise their alarms, and what the sources explain does not."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from helpers import LEAGUE, copy_demo, night, one, q, read, write

from league_import.backup import backup
from league_import.config import Thresholds, thresholds
from league_import.errors import ConfigError
from league_import.health import decisions_needed, failure_message, report, rollup, run_checks
from league_import.notifications import LoggingNotifier, WebhookNotifier, notify_decisions
from league_import.repair import restore_mapping
from league_import.sources import SCHEDULE_FILE, STATS_FILE


@pytest.fixture
def clean(conn):
    checks = night(conn, "night-1")
    conn.execute("INSERT INTO users (id, email) VALUES (1, 'a@example.com')")
    conn.execute(
        "INSERT INTO polls (id, team_id, created_by, question) VALUES (1, (SELECT min(id) FROM teams), 1, 'Q')"
    )
    conn.execute(
        """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location)
           SELECT (SELECT min(id) FROM teams), 'Mon', '18:00', '19:00', 'Court ' || n FROM generate_series(1, 41) n"""
    )
    conn.commit()
    night(conn, "night-2")
    return conn, checks


def errors(checks):
    return {(c.check, c.subject) for c in checks if c.status == "error"}


def by_key(checks):
    return {(c.check, c.subject): c for c in checks}


def test_a_clean_database_is_all_ok(clean):
    conn, first = clean
    checks = run_checks(conn, "night-2")
    assert {c.status for c in first} == {"ok"} and {c.status for c in checks} == {"ok"}, [
        (c.check, c.subject, c.detail) for c in checks if c.status != "ok"
    ]
    kinds = {c.check for c in checks}
    assert kinds == {
        "orphans", "duplicates", "constraint", "reconcile", "rows", "row_balance", "leagues", "quarantine", "renames",
        "freshness",
    }
    assert report(checks)["status"] == "ok" and rollup(checks) == ("ok", {"ok": len(checks), "warn": 0, "error": 0})
    figures = by_key(checks)
    assert figures[("reconcile", f"teams {LEAGUE}")].figure == 537
    assert figures[("reconcile", f"schedule {LEAGUE}")].figure == 4931
    assert figures[("rows", "practice_times")].figure == 41


def test_an_orphan(clean):
    conn, _ = clean
    conn.execute("SET session_replication_role = replica")
    conn.execute("UPDATE polls SET team_id = 424242 WHERE id = 1")
    conn.commit()
    checks = run_checks(conn, "night-2")
    assert errors(checks) == {("orphans", "polls.team_id")}
    orphan = by_key(checks)[("orphans", "polls.team_id")]
    assert (orphan.figure, orphan.sample) == (1, [424242])
    assert "orphans polls.team_id: 1 (threshold 0) 1 row points at no team" in failure_message(checks)


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
    dup = by_key(checks)[("duplicates", "practice_times")]
    assert dup.figure == 1 and dup.sample[0]["copies"] == 2


def test_duplicate_emails_are_reported_without_the_address(clean):
    conn, _ = clean
    conn.execute("ALTER TABLE users DROP CONSTRAINT users_natural_key")
    conn.execute("INSERT INTO users (id, email) VALUES (2, 'a@example.com')")
    conn.commit()
    checks = run_checks(conn, "night-2")
    dup = by_key(checks)[("duplicates", "users")]
    assert dup.status == "error" and dup.sample[0]["copies"] == 2
    assert "@" not in json.dumps(report(checks)) and dup.sample[0]["key"]["email"].startswith("hmac:")


def test_a_dropped_foreign_key(clean):
    conn, _ = clean
    conn.execute("ALTER TABLE polls DROP CONSTRAINT polls_created_by_fkey")
    conn.commit()
    checks = run_checks(conn, "night-2")
    assert errors(checks) == {("constraint", "polls_created_by_fkey")}
    assert "constraint polls_created_by_fkey: 1 (threshold present and valid) missing" in failure_message(checks)


def test_the_seed_incident_41_to_3_470_114_is_an_error(clean):
    """The old backup loop's shape: 41 practice sessions become 3,470,114 (distinct) rows."""
    conn, _ = clean
    conn.execute(
        """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location)
           SELECT (SELECT min(id) FROM teams), 'Tue', '18:00', '19:00', 'Court ' || n
           FROM generate_series(1, 3470114 - 41) n"""
    )
    conn.commit()
    checks = run_checks(conn, "night-3")  # the next night, compared with night-2's 41 rows
    assert errors(checks) == {("rows", "practice_times")}
    grown = by_key(checks)[("rows", "practice_times")]
    assert grown.figure == 3_470_114
    assert "41 rows at the last successful run, 3,470,114 now; growth 34,701.14x of max(baseline, 100)" in grown.detail


def test_growth_answered_not_expected_stays_an_error_and_is_asked_again(clean):
    from league_import.health import ask_growth
    from league_import.review import NOT_EXPECTED, decide, pending

    conn, _ = clean
    conn.execute(
        "INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location) "
        "SELECT (SELECT min(id) FROM teams), 'Tue', '18:00', '19:00', 'Court ' || n FROM generate_series(1, 5000) n"
    )
    conn.commit()
    (alarm,) = ask_growth(conn, "night-3", run_checks(conn, "night-3"))
    (item,) = [i for i in pending(conn) if i.kind == "growth"]
    assert item.id == f"growth:{alarm}" and item.evidence["rows that night"] == "5,041"
    assert decide(conn, item.id, NOT_EXPECTED, by="ops", via="cli").endswith("the alarm stands until the rows are mended")
    again = run_checks(conn, "night-4")
    assert by_key(again)[("rows", "practice_times")].status == "error"  # the baseline did not move
    (asked,) = ask_growth(conn, "night-4", again)
    assert asked != alarm and [i.id for i in pending(conn) if i.kind == "growth"] == [f"growth:{asked}"]


@pytest.mark.parametrize(("before", "after", "status"), [(0, 2000, "error"), (2, 5, "ok"), (0, 250, "warn")])
def test_growth_is_measured_against_a_floor(conn, before, after, status):
    """now / max(before, min_baseline): small tables alarm too, +3 rows on 2 does not."""
    night(conn, "night-1")
    conn.execute("INSERT INTO users (id, email) SELECT n, 'u' || n FROM generate_series(1, %s::int) n", (before,))
    conn.commit()
    night(conn, "night-2")
    conn.execute("INSERT INTO users (id, email) SELECT n, 'u' || n FROM generate_series(%s::int, %s::int) n", (before + 1, after))
    conn.commit()
    grown = by_key(run_checks(conn, "night-3"))[("rows", "users")]
    assert (grown.figure, grown.status) == (after, status)


def test_the_archive_grows_only_by_what_the_run_archived(clean):
    conn, _ = clean
    conn.execute("CREATE TABLE etl_archive.polls (LIKE polls, run_id text, reason text, archived_at timestamptz)")
    conn.execute(
        "INSERT INTO etl_archive.polls (id, question, created_at, run_id, reason, archived_at) "
        "SELECT n, 'q', now(), 'night-3', 'duplicate', now() FROM generate_series(1, 5000) n"
    )
    conn.commit()
    explained = by_key(run_checks(conn, "night-3"))[("rows", "etl_archive.polls")]
    assert explained.status == "ok" and "5,000 of them written by this run (not counted)" in explained.detail
    unexplained = by_key(run_checks(conn, "night-4"))[("rows", "etl_archive.polls")]
    assert unexplained.status == "error" and unexplained.figure == 5000


def test_history_tables_may_not_shrink(clean):
    conn, _ = clean
    conn.execute("DELETE FROM etl.team_key_map WHERE team_id IN (SELECT team_id FROM etl.team_key_map LIMIT 300)")
    conn.commit()
    shrunk = by_key(run_checks(conn, "night-3"))[("rows", "etl.team_key_map")]
    assert shrunk.status == "error" and "56% of its rows are gone" in shrunk.detail
    relaxed = by_key(run_checks(conn, "night-3", Thresholds(drop_error=0.9)))[("rows", "etl.team_key_map")]
    assert relaxed.status == "warn"


def test_a_schedule_row_deleted_by_hand_is_an_error_naming_the_league(clean):
    conn, _ = clean
    conn.execute("DELETE FROM schedule WHERE id = (SELECT min(id) FROM schedule)")
    conn.commit()
    checks = run_checks(conn, "night-3")
    assert errors(checks) == {("reconcile", f"schedule {LEAGUE}")}
    wrong = by_key(checks)[("reconcile", f"schedule {LEAGUE}")]
    assert wrong.detail == f"league {LEAGUE}: table schedule has 4930 schedule rows, the files imply 4931"


def test_adding_a_large_league_to_a_small_one_is_no_alarm(conn, tmp_path):
    """Reconciled against the files, not compared with yesterday: 57x more schedule rows is fine."""
    small = tmp_path / "small"
    (small / "TINY").mkdir(parents=True)
    stats = [r for r in read(copy_demo(tmp_path / "copy"), STATS_FILE) if r["series"] == "Series 1"]
    schedule = [r for r in read(tmp_path / "copy", SCHEDULE_FILE) if r["series"] == "Series 1"][:80]
    for records, name, field in ((stats, STATS_FILE, "league_id"), (schedule, SCHEDULE_FILE, "League")):
        (small / "TINY" / name).write_text(json.dumps([{**r, field: "TINY"} for r in records]))
    night(conn, "night-1", source=small)
    both = tmp_path / "copy"
    (small / "TINY").rename(both / "TINY")
    checks = night(conn, "night-2", source=both)
    assert not errors(checks), [(c.subject, c.detail) for c in checks if c.status == "error"]
    assert by_key(checks)[("reconcile", f"schedule {LEAGUE}")].figure == 4931


def test_a_user_row_removed_outside_the_archive(clean):
    conn, _ = clean
    backup(conn, "night-3")
    conn.execute("DELETE FROM polls WHERE id = 1")  # not by the pipeline: no archived copy
    conn.commit()
    checks = run_checks(conn, "night-3")
    assert errors(checks) == {("row_balance", "polls")}
    balance = by_key(checks)[("row_balance", "polls")]
    assert balance.detail == "backup 1, live 0, archived 0: 1 row removed without an archived copy"


def test_quarantine_waiting_is_a_warning_that_needs_a_person(clean):
    conn, _ = clean
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (2, 999999, 'no author')")
    conn.commit()
    restore_mapping(conn, "night-3")
    checks = run_checks(conn)
    waiting = by_key(checks)[("quarantine", "etl.quarantine")]
    assert (waiting.status, waiting.figure) == ("warn", 1)
    assert not errors(checks) and report(checks)["status"] == "warn"
    assert [c.check for c in decisions_needed(checks)] == ["quarantine"]
    assert "league-import review" in waiting.detail


def test_stale_files_warn(conn, tmp_path):
    src = copy_demo(tmp_path)
    old = time.time() - 50 * 3600
    for name in (STATS_FILE, SCHEDULE_FILE):
        os.utime(src / LEAGUE / name, (old, old))
    checks = night(conn, "night-1", source=src)
    stale = by_key(checks)[("freshness", LEAGUE)]
    assert stale.status == "warn" and "its newest file is 50 h old (more than 36 h)" in stale.detail
    assert [c.check for c in decisions_needed(checks)] == ["freshness"]


def test_identical_files_warn_only_while_the_season_still_runs(conn, tmp_path):
    src = copy_demo(tmp_path)
    future = read(src, SCHEDULE_FILE)
    future[0]["date"] = "12/31/2099"  # the season still has a match to play
    write(src, SCHEDULE_FILE, future)
    statuses = [by_key(night(conn, f"night-{n}", source=src))[("freshness", LEAGUE)] for n in (1, 2, 3)]
    assert [c.status for c in statuses] == ["ok", "ok", "warn"]
    assert "identical for 3 runs in a row while the schedule runs to 2099-12-31" in statuses[-1].detail


def test_read_only_session_is_enough(clean, db_uri):
    import psycopg

    conn, _ = clean
    with psycopg.connect(db_uri, options="-c default_transaction_read_only=on") as readonly:
        assert {c.status for c in run_checks(readonly)} == {"ok"}


def test_thresholds_are_parsed_with_a_schema_naming_the_key():
    assert thresholds('{"growth_warn": 3}').growth_warn == 3
    with pytest.raises(ConfigError, match="key 'grwoth_warn': unknown key"):
        thresholds({"grwoth_warn": 3})
    with pytest.raises(ConfigError, match="key 'min_baseline': Input should be a valid integer"):
        thresholds('{"min_baseline": "many"}')
    with pytest.raises(ConfigError, match="not JSON"):
        thresholds("{growth_warn: 3")


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
    thread = threading.Thread(target=lambda: [server.handle_request() for _ in range(2)], daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_LEAGUE_IMPORT_WEBHOOK", f"http://:s3cret@127.0.0.1:{server.server_port}/alerts")
    monkeypatch.setenv("LEAGUE_IMPORT_NOTIFY", "webhook")
    context = {"run_id": "night-9", "exception": "1 health checks failed:\n- orphans polls.team_id: 1"}
    WebhookNotifier().notify(context)
    from league_import.health import Check

    waiting = Check("quarantine", "etl.quarantine", 2, "< 1", "warn", "2 rows wait for a person: league-import review")
    notify_decisions({"run_id": "night-10"}, [waiting])
    thread.join(5)
    server.server_close()
    (path, auth, failed), (_, _, warned) = _Hook.received
    assert (path, auth) == ("/alerts", "Bearer s3cret")
    assert failed["run_id"] == "night-9" and "orphans polls.team_id" in failed["error"]
    assert warned["text"] == "league_import: 1 warning needs a person" and "league-import review" in warned["message"]
    LoggingNotifier().notify(context)


def test_a_file_absent_tonight_keeps_its_rows_and_warns(conn, tmp_path):
    """A league's files are "stats and/or schedule": a schedule that does not come one night says
    nothing about the matches, so none is archived, and a person hears of it."""
    src = copy_demo(tmp_path)
    night(conn, "night-1", source=src)
    stored = q(conn, "SELECT count(*), max(id) FROM schedule")[0]
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    checks = night(conn, "night-2", source=src)
    assert q(conn, "SELECT count(*), max(id) FROM schedule")[0] == stored
    assert one(conn, "SELECT to_regclass('etl_archive.schedule')") is None  # nothing archived
    assert not errors(checks), [(c.subject, c.detail) for c in checks if c.status == "error"]
    absent = by_key(checks)[("freshness", f"schedule {LEAGUE}")]
    assert (absent.status, absent.figure) == ("warn", stored[0])
    assert absent.detail.startswith(f"league {LEAGUE}: {SCHEDULE_FILE} was absent tonight; the 4,931 stored")
    assert "freshness" in [c.check for c in decisions_needed(checks)]
    assert by_key(checks)[("reconcile", f"series_stats {LEAGUE}")].status == "ok"


def test_a_league_with_only_a_stats_file_is_no_warning(conn, tmp_path):
    src = copy_demo(tmp_path)
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    checks = night(conn, "night-1", source=src)
    assert not [c for c in checks if c.status != "ok"], [(c.subject, c.detail) for c in checks if c.status != "ok"]
    assert by_key(checks)[("freshness", f"schedule {LEAGUE}")].figure == 0
