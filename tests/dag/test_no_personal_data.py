"""No email address, from data that has duplicated ones, in anything a run prints: its stdout and
stderr, where `airflow dags test` writes every task's log (at INFO here, not the tests' WARNING),
any task log file, its reports and its health page."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from helpers import CONF, create_user_data, one, q

pytestmark = pytest.mark.dag
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def emails_in(texts: dict[str, str]) -> dict[str, list[str]]:
    """Every address found, by where it was found."""
    return {where: found for where, text in texts.items() if (found := EMAIL.findall(text))}


def night(airflow_home: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """One run of the DAG as an operator starts it, logging at INFO: what it printed and every
    task log it wrote."""
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "league_import", "-c", json.dumps(CONF)], capture_output=True, text=True, env=env
    )
    logs = {str(p): p.read_text(errors="replace") for p in (airflow_home / "logs").rglob("*") if p.is_file()}
    return done, {"stdout": done.stdout, "stderr": done.stderr, **logs}


def test_duplicated_emails_never_reach_a_log_a_report_or_a_page(airflow_db, db_uri):
    done, _ = night(airflow_db)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with psycopg.connect(db_uri) as conn:
        create_user_data(conn, captains=12)
        # The old system's users table: no key on the email; the same people twice, and written
        # on teams too, so every step meets them (deduplicate, backup, repair's samples).
        conn.execute("ALTER TABLE users DROP CONSTRAINT users_natural_key")
        conn.execute(
            "INSERT INTO users (id, email, first_name, last_name) "
            "SELECT 100 + id, email, 'First' || id, 'Last' || id FROM users"
        )
        conn.execute("INSERT INTO polls (team_id, created_by, question) SELECT team_id, 100 + user_id, 'Q' FROM team_memberships")
        conn.commit()
        assert one(conn, "SELECT count(*) - count(DISTINCT email) FROM users") == 12

    done, printed = night(airflow_db)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with psycopg.connect(db_uri) as conn:
        report = latest = q(conn, "SELECT report FROM etl.runs ORDER BY started_at DESC LIMIT 1")[0][0]
        assert latest["deduplicate"]["tables"]["users"]["duplicates"] == 12  # the step met them
        page = Path(report["health_check"]["report_path"]).read_text()
        reports = json.dumps(q(conn, "SELECT report FROM etl.runs"), default=str)
    # Every task's INFO log is in what was read (not an empty capture): each task's own lines.
    for line in ("staged {'APTA_CHICAGO': 537}", "users: 12 duplicates removed", "league APTA_CHICAGO:",
                 "rows repaired:", "health: {"):  # fmt: skip
        assert line in printed["stdout"], line
    assert emails_in({**printed, "etl.runs": reports, "health page": page}) == {}
