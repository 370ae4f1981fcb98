"""The HTML health report, rendered by a real browser (Debian's chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from helpers import CHROMIUM, CHROMIUM_FLAGS, REPO, night

from league_import.health import run_checks
from league_import.report import sparkline, write_report

FLAGS = ["--headless", *CHROMIUM_FLAGS, "--hide-scrollbars"]


def test_sparkline_scales_into_its_box():
    svg = sparkline([0, 5, 10], width=100, height=40)
    assert 'points="0.0,36.0 50.0,20.0 100.0,4.0"' in svg
    assert "no runs yet" in sparkline([])


@pytest.fixture
def nights(conn):
    """Five nights with growing user data and, on the last, a row waiting in quarantine."""
    night(conn, "night-1")
    conn.execute("INSERT INTO users (id, email) SELECT n, 'u' || n || '@example.com' FROM generate_series(1, 40) n")
    conn.commit()
    for n in range(2, 6):
        conn.execute(
            """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location)
               SELECT id, 'Mon', '18:00', '19:00', 'Court ' || %s FROM teams ORDER BY id LIMIT 30 * %s""",
            (n, n),
        )
        if n == 5:
            conn.execute("SET session_replication_role = replica")
            conn.execute("INSERT INTO polls (id, team_id, question) VALUES (1, 999999, 'Lineup?')")
            conn.execute("SET session_replication_role = origin")
        conn.commit()
        checks = night(conn, f"night-{n}")
    return conn, checks


def test_report_renders_in_chromium(nights, tmp_path):
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    conn, checks = nights
    run_report = conn.execute("SELECT report FROM etl.runs WHERE run_id = 'night-5'").fetchone()[0]
    conn.rollback()
    path = write_report(conn, "night-5", run_checks(conn, "night-5"), run_report, folder=tmp_path)
    assert path.name == "health_night-5.html" and (tmp_path / "latest.html").exists()
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "league_import health" in dom and 'class="badge warn"' in dom
    assert len(re.findall(r"<polyline", dom)) == 14  # orphans, duplicates, quarantine and 11 tables
    assert "rows: practice_times" in dom and "1 rows wait for a person" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1280,1100",
            f"--screenshot={shot}",
            path.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("UPDATE_DOCS"):  # UPDATE_DOCS=1 make test refreshes the README's picture
        shutil.copy(shot, REPO / "docs" / "health_report.png")
