"""Operator commands: `python -m league_import.cli demo | summary | health | release`.

`demo` starts the embedded PostgreSQL (unless AIRFLOW_CONN_LEAGUE_DB names a server), makes a
throwaway Airflow home with SQLite metadata, runs `airflow dags test league_import` on the
bundled demo data and prints what the run did.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from league_import.embedded import REPO, target_uri

DEMO_HOME = REPO / ".demo" / "airflow"


def airflow_env(home: Path, league_uri: str) -> dict[str, str]:
    """The environment for a self-contained Airflow: its own home, our DAGs and plugins, no examples."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_LEAGUE_DB": league_uri,
        "LEAGUE_IMPORT_REPORT_DIR": os.environ.get("LEAGUE_IMPORT_REPORT_DIR", str(home.parent / "reports")),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "plugins"), os.environ.get("PYTHONPATH")])),
    }


def run_dag(home: Path, league_uri: str, conf: dict, log: Path) -> int:
    """`airflow db migrate` once per home, then `airflow dags test`; output goes to `log`."""
    env = airflow_env(home, league_uri)
    airflow = str(Path(sys.executable).with_name("airflow"))
    home.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        if not (home / "airflow.db").exists():
            subprocess.run([airflow, "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
        cmd = [airflow, "dags", "test", "league_import", "-c", json.dumps(conf)]
        return subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def latest_run(league_uri: str) -> dict | None:
    from league_import.db import connect

    with connect(league_uri) as conn:
        row = conn.execute(
            "SELECT run_id, status, dry_run, report FROM etl.runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    return None if row is None else dict(zip(("run_id", "status", "dry_run", "report"), row))


def summary(run: dict) -> str:
    """A short human summary of one run: teams per league, schedule rows, errors."""
    lines = [f"run {run['run_id']}: {run['status']}{' (dry run, nothing written)' if run['dry_run'] else ''}"]
    upsert = run["report"].get("upsert_teams", {})
    for code, c in upsert.get("leagues", {}).items():
        kept = c["teams_in_sources"] - c["teams_created"]
        lines.append(
            f"  {code}: {c['teams_in_sources']} teams - {c['teams_created']} created, {kept} kept "
            f"({c['teams_updated']} updated), {c['teams_deactivated']} deactivated; "
            f"{c['schedule_rows']} schedule rows ({c['bye_rows']} BYE), {c['stats_rows']} stats rows"
        )
    if not upsert:
        lines.append("  no upsert report: the run stopped before upsert_teams")
    return "\n".join(lines)


def demo() -> int:
    uri = target_uri()
    log = REPO / ".demo" / "dags_test.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(
        "league_db:",
        "AIRFLOW_CONN_LEAGUE_DB" if os.environ.get("AIRFLOW_CONN_LEAGUE_DB") else "embedded PostgreSQL in .demo/pgdata",
    )
    print("running: airflow dags test league_import (log: .demo/dags_test.log)")
    code = run_dag(DEMO_HOME, uri, {}, log)
    run = latest_run(uri)
    if run:
        print(summary(run))
    health_report = (run or {}).get("report", {}).get("health_check", {}).get("report_path")
    if health_report:
        print(f"health report: {health_report}")
    if code != 0:
        print(f"errors: the DAG run failed (exit {code}); last lines of {log}:", file=sys.stderr)
        print("".join(log.read_text().splitlines(keepends=True)[-25:]), file=sys.stderr)
        return code
    print("errors: none")
    return 0


def health() -> int:
    """The checks of the health_check task, in a read-only session: nothing is written."""
    from league_import.db import connect
    from league_import.health import format_table, run_checks

    with connect(target_uri()) as conn:
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.commit()
        checks = run_checks(conn)
    print(format_table(checks))
    errors = sum(c.status == "error" for c in checks)
    warnings = sum(c.status == "warn" for c in checks)
    print(f"{len(checks)} checks: {errors} errors, {warnings} warnings")
    return 1 if errors else 0


def release_row(args) -> int:
    from league_import.db import connect
    from league_import.repair import ReleaseError, release

    with connect(target_uri()) as conn:
        try:
            print(release(conn, args.table, args.row_id, args.team_id, args.column))
        except ReleaseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="league_import.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the DAG on the bundled demo data and print a summary")
    sub.add_parser("summary", help="print the latest run's summary")
    sub.add_parser("health", help="run the health checks read-only; exit 1 when any is an error")
    release = sub.add_parser("release", help="put a quarantined row back on the team a person decided")
    release.add_argument("--table", required=True, help="the user table, e.g. polls")
    release.add_argument("--row-id", required=True, help="etl.quarantine.row_id of the row")
    release.add_argument("--team-id", required=True, type=int, help="the team the row belongs to")
    release.add_argument("--column", default="team_id", help="the team column (default team_id)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    if args.command == "release":
        return release_row(args)
    if args.command == "health":
        return health()
    run = latest_run(target_uri())
    print(summary(run) if run else "no runs yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
