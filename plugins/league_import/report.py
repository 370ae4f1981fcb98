"""The health report as an HTML page per run, with small trend charts of the last runs.

Plain HTML with inline SVG: it opens from a file, in any browser, with nothing to load.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from psycopg import Connection

from league_import.health import Check
from league_import.sql import statements

TEMPLATES = Path(__file__).resolve().parents[2] / "include" / "templates"
TREND_RUNS = 30


def report_dir() -> Path:
    """LEAGUE_IMPORT_REPORT_DIR, else <AIRFLOW_HOME>/league_import_reports."""
    configured = os.environ.get("LEAGUE_IMPORT_REPORT_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "league_import_reports"


def sparkline(values: list[float], width: int = 210, height: int = 46) -> str:
    """An inline SVG line of the values, scaled to the box; one value is a flat line."""
    if not values:
        empty = '<text x="0" y="28" fill="#8a93a2">no runs yet</text>'
        return f'<svg width="{width}" height="{height}" role="img">{empty}</svg>'
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 4 - (v - low) / span * (height - 8):.1f}" for i, v in enumerate(values)
    )
    last_x, last_y = points.split(" ")[-1].split(",")
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<polyline points="{points}" fill="none" stroke="#3b6fd8" stroke-width="2"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="3" fill="#3b6fd8"/></svg>'
    )


def _fmt(value) -> str:
    number = float(value)
    return f"{int(number):,}" if number.is_integer() else f"{number:,.2f}"


def _charts(conn: Connection) -> tuple[list[dict], int]:
    with conn.cursor() as cur:
        totals = cur.execute(statements("health")["trends"], {"runs": TREND_RUNS}).fetchall()
        tables = cur.execute(statements("health")["table_trends"], {"runs": TREND_RUNS}).fetchall()
    conn.rollback()
    series: dict[str, list[float]] = {}
    for _, _, name, value in totals:
        series.setdefault(name, []).append(float(value))
    charts = [
        {"title": title, "values": series.get(name, [])}
        for name, title in (("orphans", "orphans"), ("duplicates", "duplicate rows"), ("quarantine", "quarantined"))
    ]
    per_table: dict[str, list[float]] = {}
    for subject, _, value in tables:
        per_table.setdefault(subject, []).append(float(value))
    charts += [{"title": f"rows: {t}", "values": v} for t, v in per_table.items()]
    runs = len({r for r, *_ in totals})
    for chart in charts:
        chart["svg"] = sparkline(chart["values"])
        chart["last"] = chart["values"][-1] if chart["values"] else 0
    return charts, runs


def _steps(run_report: dict) -> list[tuple[str, str]]:
    """A few of the other steps' counts, for the cards at the top."""
    steps = []
    upsert = run_report.get("upsert_teams", {}).get("leagues", {})
    if upsert:
        steps.append(("teams in sources", _fmt(sum(c["teams_in_sources"] for c in upsert.values()))))
        steps.append(("teams created", _fmt(sum(c["teams_created"] for c in upsert.values()))))
        steps.append(("teams deactivated", _fmt(sum(c["teams_deactivated"] for c in upsert.values()))))
    dedup = run_report.get("deduplicate", {}).get("tables", {})
    if dedup:
        steps.append(("duplicates removed", _fmt(sum(t["duplicates"] for t in dedup.values()))))
    repair = run_report.get("restore_mapping", {})
    if repair:
        steps.append(("orphans repaired", _fmt(repair["orphans"] - repair["by_strategy"]["quarantine"])))
        steps.append(("quarantined", _fmt(repair["by_strategy"]["quarantine"])))
    return steps


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

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["fmt"] = _fmt
    charts, runs = _charts(conn)
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "error")}
    html = env.get_template("health_report.html").render(
        run_id=run_id,
        dry_run=dry_run,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        status="error" if counts["error"] else "warn" if counts["warn"] else "ok",
        counts=counts,
        steps=_steps(run_report),
        problems=[c for c in checks if c.status != "ok"],
        checks=checks,
        charts=charts,
        runs=runs,
    )
    folder = folder or report_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"health_{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}.html"
    path.write_text(html, encoding="utf-8")
    (folder / "latest.html").write_text(html, encoding="utf-8")
    return path
