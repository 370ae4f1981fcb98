"""The HTML health report, opened by a real browser (Debian's chromium) with networking disabled:
its Plotly charts draw from the file alone, with dates on their axes."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import CHROMIUM, CHROMIUM_FLAGS, REPO, night

from league_import.health import run_checks
from league_import.report import write_report
from league_import.runs import run_report


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
        night(conn, f"night-{n}")
    # One night a day, as the schedule runs them (the charts' date axis).
    conn.execute("UPDATE etl.runs SET started_at = started_at - (5 - right(run_id, 1)::int) * interval '1 day'")
    conn.commit()
    return conn


def test_report_lists_pending_decisions_and_needs_no_cdn(nights, tmp_path):
    conn = nights
    path = write_report(conn, "night-5", run_checks(conn, "night-5"), run_report(conn, "night-5"), folder=tmp_path)
    html = path.read_text()
    assert path.name == "health_night-5.html" and (tmp_path / "latest.html").exists()
    assert '<script src="assets/plotly-' in html and (tmp_path / "assets").is_dir()
    assert "cdn" not in html.lower() and "https://" not in html.split("<body>")[0]
    assert "Decisions waiting for a person" in html and "polls row 1" in html
    assert "league-import review decide quarantine:" in html


def test_report_draws_its_charts_offline_in_chromium(nights, tmp_path):
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    conn = nights
    path = write_report(conn, "night-5", run_checks(conn, "night-5"), run_report(conn, "night-5"), folder=tmp_path)
    refused = []

    def offline(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_FLAGS, "--proxy-server=http://127.0.0.1:9"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1400}, offline=True)
        page.route("**/*", offline)
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=20_000)
        charts = page.locator(".chart .js-plotly-plot")
        assert charts.count() == 4
        titles = page.locator(".chart .gtitle").all_text_contents()
        assert titles == [
            "Rows repaired per run, by strategy",
            "Rows quarantined and released",
            "Suspected renames",
            "Rows per table",
        ]
        # Dates on the x axis: Plotly writes the month on date ticks ("Dec 1, 2026", "15:40\nDec 1").
        ticks = " ".join(page.locator(".chart .xtick text").all_text_contents())
        months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
        assert any(m in ticks for m in months), ticks
        assert page.locator(".chart .trace").count() >= 4  # lines and bars were drawn
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert refused == []  # nothing was fetched from a network
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("UPDATE_DOCS"):  # UPDATE_DOCS=1 make test refreshes the README's picture
        shutil.copy(shot, REPO / "docs" / "health_report.png")
