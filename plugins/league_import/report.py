"""The health report: an HTML page per run, with trend charts of the last runs drawn by Plotly.

Offline: plotly.js is written once beside the pages (assets/), never loaded from a CDN, so a
page opens from the file on a machine without internet. The charts carry dates on their axis:
rows repaired per run by strategy, rows quarantined and released, suspected renames, and rows per
table. Pending decisions are listed with a link to each in the Airflow UI.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from psycopg import Connection

from league_import.health import Check, rollup
from league_import.sql import statements

TEMPLATES = Path(__file__).resolve().parents[2] / "include" / "templates"
TREND_RUNS = 30
ASSET = "plotly-{version}.min.js"


def report_dir() -> Path:
    """LEAGUE_IMPORT_REPORT_DIR, else <AIRFLOW_HOME>/league_import_reports."""
    configured = os.environ.get("LEAGUE_IMPORT_REPORT_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "league_import_reports"


# Where Airflow's API server serves the report folder (league_import.reports_app, the plugin).
SERVED_AT = "/league-import/reports"


def report_url(path: Path) -> str:
    """Where a person opens a report: LEAGUE_IMPORT_REPORT_URL (the folder served elsewhere) + its
    name, else Airflow's own page for it (behind Airflow's login): under [api] base_url when it is
    set, else a path on the server the UI was opened from (the UI shows such a link as well)."""
    base = os.environ.get("LEAGUE_IMPORT_REPORT_URL")
    if base:
        return f"{base.rstrip('/')}/{quote(path.name)}"
    return f"{(os.environ.get('AIRFLOW__API__BASE_URL') or '').rstrip('/')}{SERVED_AT}/{quote(path.name)}"


def airflow_ui() -> str:
    return (os.environ.get("AIRFLOW__API__BASE_URL") or "http://localhost:8080").rstrip("/")


def _fmt(value) -> str:
    number = float(value)
    return f"{int(number):,}" if number.is_integer() else f"{number:,.2f}"


def _rows(conn: Connection, name: str) -> list[tuple]:
    with conn.cursor() as cur:
        found = cur.execute(statements("report")[name], {"runs": TREND_RUNS}).fetchall()
    conn.rollback()
    return found


def _figure(title: str, series: dict[str, tuple[list, list]], kind: str = "bar") -> str:
    """One chart as a Plotly div (plotly.js itself is loaded once by the page)."""
    from datetime import timedelta

    import plotly.graph_objects as go

    fig = go.Figure()
    for name, (x, y) in series.items():
        if kind == "bar":
            fig.add_trace(go.Bar(x=x, y=y, name=name, width=0.8 * 86_400_000))  # 0.8 day, in ms
        else:
            fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers"))
    xaxis: dict = {"type": "date", "tickformat": "%b %d"}
    days = sorted({x for xs, _ in series.values() for x in xs})
    if kind == "bar" and days:  # whole days, a day of margin: one night is a bar, not the whole width
        xaxis["range"] = [days[0] - timedelta(days=1), days[-1] + timedelta(days=1)]
        xaxis["dtick"] = 86_400_000
    fig.update_layout(
        title={"text": title, "font": {"size": 13}},
        barmode="stack",
        height=260,
        margin={"l": 40, "r": 10, "t": 36, "b": 30},
        legend={"font": {"size": 10}},
        xaxis=xaxis,
        template="plotly_white",
    )
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displayModeBar": False})


def _series(rows: list[tuple]) -> dict[str, tuple[list, list]]:
    """(when, name, value) rows -> name: (dates, values)."""
    out: dict[str, tuple[list, list]] = {}
    for when, name, value in rows:
        xs, ys = out.setdefault(name, ([], []))
        xs.append(when)
        ys.append(float(value))
    return out


def charts(conn: Connection) -> list[dict]:
    """The trend charts, each as a Plotly div, and how many runs they cover."""
    specs = [
        ("Rows repaired per run, by strategy", "repairs_by_strategy", "bar"),
        ("Rows quarantined and released", "quarantine_flow", "bar"),
        ("Suspected renames", "renames_flow", "bar"),
        ("Rows per table", "rows_per_table", "line"),
    ]
    out = []
    for title, query, kind in specs:
        series = _series(_rows(conn, query))
        out.append({"title": title, "html": _figure(title, series, kind), "empty": not series})
    return out


def _asset(folder: Path) -> str:
    """plotly.js beside the pages, written once per version; returns its relative path."""
    import plotly
    from plotly.offline import get_plotlyjs

    name = ASSET.format(version=plotly.__version__)
    target = folder / "assets" / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial_file = target.with_suffix(".tmp")
        partial_file.write_text(get_plotlyjs(), encoding="utf-8")
        partial_file.replace(target)
    return f"assets/{name}"


def _steps(run_report: dict) -> list[tuple[str, str]]:
    """A few of the other steps' counts, for the cards at the top (found by their content)."""
    steps = []
    for report in run_report.values():
        if not isinstance(report, dict):
            continue
        if "leagues" in report and isinstance(report["leagues"], dict) and "suspected_renames" in report:
            leagues = report["leagues"].values()
            steps.append(("teams in sources", _fmt(sum(c["teams_in_sources"] for c in leagues))))
            steps.append(("teams created", _fmt(sum(c["teams_created"] for c in leagues))))
            steps.append(("teams deactivated", _fmt(sum(c["teams_deactivated"] for c in leagues))))
            steps.append(("suspected renames", _fmt(len(report["suspected_renames"]))))
        if "by_strategy" in report:
            steps.append(("rows repaired", _fmt(report["orphans"] - report["by_strategy"]["quarantine"])))
            steps.append(("quarantined", _fmt(report["by_strategy"]["quarantine"])))
        if "tables" in report and isinstance(report["tables"], dict):
            steps.append(("duplicates removed", _fmt(sum(t.get("duplicates", 0) for t in report["tables"].values()))))
    return steps


def pending_decisions(conn: Connection) -> list[dict]:
    """Decisions waiting for a person, each with its link in the Airflow UI."""
    ui = airflow_ui()
    out = []
    for kind, item_id, what, link in _rows(conn, "pending_decisions"):
        out.append(
            {"kind": kind, "id": item_id, "what": what, "url": f"{ui}{link}" if link else f"{ui}/required_actions"}
        )
    return out


def write_report(
    conn: Connection,
    run_id: str,
    checks: list[Check],
    run_report: dict,
    *,
    dry_run: bool = False,
    folder: Path | None = None,
) -> Path:
    """Render the page to <folder>/health_<run>.html (and latest.html); returns its path."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    folder = folder or report_dir()
    folder.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["fmt"] = _fmt
    status, counts = rollup(checks)
    html = env.get_template("health_report.html").render(
        run_id=run_id,
        dry_run=dry_run,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        status=status,
        counts=counts,
        steps=_steps(run_report),
        problems=[c for c in checks if c.status != "ok"],
        checks=checks,
        charts=charts(conn),
        plotly=_asset(folder),
        decisions=pending_decisions(conn),
        runs=TREND_RUNS,
    )
    path = folder / f"health_{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}.html"
    path.write_text(html, encoding="utf-8")
    (folder / "latest.html").write_text(html, encoding="utf-8")
    return path
