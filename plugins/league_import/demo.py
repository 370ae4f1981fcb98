"""`make demo`: the pipeline's story on the bundled season, in a throwaway Airflow.

Night 1 imports the season; a few user rows are written (a poll, captain messages, practice
times, memberships); the old system's id churn is replayed (triggers off, every team deleted and
re-inserted with new ids); night 2 repairs it. The summary says what was repaired by which
strategy and what waits in quarantine for a person.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from league_import.embedded import REPO, target_uri
from league_import.runs import latest_run
from league_import.words import plural

DEMO_DATA = REPO / "include" / "demo_data"


def demo_home() -> Path:
    """The demo set-up's Airflow home: LEAGUE_IMPORT_DEMO_HOME, else .demo/airflow of this checkout
    (`make demo`, `make ui` and `league-import env` share it; the tests give each server its own)."""
    return Path(os.environ.get("LEAGUE_IMPORT_DEMO_HOME") or REPO / ".demo" / "airflow")

SEED = """
INSERT INTO users (id, email) VALUES
    (9001, 'captain.one@example.com'), (9002, 'captain.two@example.com'), (9003, 'captain.three@example.com')
ON CONFLICT DO NOTHING;
INSERT INTO team_memberships (user_id, team_id, is_primary)
SELECT u.id, t.id, true FROM (VALUES (9001, 1), (9002, 2), (9003, 3)) u(id, n)
JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM teams WHERE is_active) t USING (n)
ON CONFLICT DO NOTHING;
INSERT INTO polls (id, team_id, created_by, question)
SELECT 9001, team_id, user_id, 'Who can play Saturday?' FROM team_memberships WHERE user_id = 9001
ON CONFLICT DO NOTHING;
INSERT INTO captain_messages (id, team_id, captain_user_id, message)
SELECT user_id, team_id, user_id, 'Bring new balls on Tuesday' FROM team_memberships
WHERE user_id BETWEEN 9001 AND 9003
ON CONFLICT DO NOTHING;
INSERT INTO practice_times (id, team_id, day_of_week, start_time, end_time, location, league_id)
SELECT m.user_id, m.team_id, 'Thursday', '19:00', '20:30', 'Court 2', t.league_id
FROM team_memberships m JOIN teams t ON t.id = m.team_id WHERE m.user_id BETWEEN 9001 AND 9003
ON CONFLICT DO NOTHING;
"""
# A poll written by nobody on a team id nobody knows: no strategy can place it.
UNPLACEABLE = "INSERT INTO polls (id, team_id, question) VALUES (9009, 999999, 'Lineup?') ON CONFLICT DO NOTHING"


def replay_old_etl_churn(conn: psycopg.Connection, delete_outright=(), only_active: bool = False) -> None:
    """What the old ETL did: foreign-key triggers off, every team deleted and re-inserted with new
    ids, some teams not re-inserted at all (needs a role allowed session_replication_role)."""
    conn.execute("SET session_replication_role = replica")
    conn.execute("CREATE TEMP TABLE churned AS SELECT * FROM teams ORDER BY id")
    conn.execute("DELETE FROM teams")
    conn.execute(
        """INSERT INTO teams (league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
           SELECT league_id, club_id, series_id, team_name, team_key, sub_team, is_active FROM churned
           WHERE team_name <> ALL (%s) AND (is_active OR NOT %s) ORDER BY id""",
        (list(delete_outright), only_active),
    )
    conn.execute("DROP TABLE churned")
    conn.execute("SET session_replication_role = origin")
    conn.commit()


def airflow_env(home: Path, league_uri: str, inherit: bool = True) -> dict[str, str]:
    """The environment for a self-contained Airflow: its own home, our DAGs and plugins, no examples,
    this environment's commands first on PATH (`airflow standalone` starts each component as
    `airflow ...`), and the bundled season as the configured source folder, so that a scheduled run
    of the demo set-up has data to read (LEAGUE_IMPORT_SOURCE_DIR set beforehand wins). With
    `inherit`, on top of this process's environment."""
    from league_import.config import SOURCE_DIR_ENV

    return {
        **(os.environ if inherit else {}),
        "PATH": on_path(bin_dir(), os.environ.get("PATH", "")),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_LEAGUE_DB": league_uri,
        "LEAGUE_IMPORT_REPORT_DIR": os.environ.get("LEAGUE_IMPORT_REPORT_DIR", str(home.parent / "reports")),
        SOURCE_DIR_ENV: os.environ.get(SOURCE_DIR_ENV) or str(DEMO_DATA),
    }


def bin_dir() -> Path:
    """The folder of this environment's commands (airflow, league-import): beside its python."""
    return Path(sys.executable).parent


def on_path(folder: Path, path: str) -> str:
    """PATH with `folder` first (once)."""
    rest = [p for p in path.split(os.pathsep) if p and p != str(folder)]
    return os.pathsep.join([str(folder), *rest])


def prepare_airflow(home: Path, league_uri: str, log: Path | None = None) -> None:
    """`airflow db migrate` once per home (its SQLite metadata database)."""
    home.mkdir(parents=True, exist_ok=True)
    if (home / "airflow.db").exists():
        return
    airflow = str(bin_dir() / "airflow")
    with (log or home / "migrate.log").open("a") as out:
        env = airflow_env(home, league_uri)
        subprocess.run([airflow, "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def run_dag(home: Path, league_uri: str, conf: dict, log: Path) -> int:
    """`airflow dags test` on a prepared home; output appended to `log`."""
    prepare_airflow(home, league_uri, log)
    airflow = str(bin_dir() / "airflow")
    with log.open("a") as out:
        cmd = [airflow, "dags", "test", "league_import", "-c", json.dumps(conf)]
        env = airflow_env(home, league_uri)
        return subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def _step(report: dict, marker: str) -> dict:
    """A step's report, found by what it holds (reports are keyed by task id)."""
    return next((r for r in report.values() if isinstance(r, dict) and marker in r), {})


def _for_users(counts: dict, kind: str) -> tuple[str, int]:
    """What changed in the schedule or the standings as the app's users see them, and how many rows
    were written again only because their teams' ids changed (the pipeline's bookkeeping); a report
    older than that distinction gives the rows written."""
    get = counts.get
    added = get(f"{kind}_for_users_added", counts[f"{kind}_created"])
    changed = get(f"{kind}_for_users_changed", counts[f"{kind}_updated"])
    removed = get(f"{kind}_for_users_removed", counts[f"{kind}_deleted"])
    return f"{added:,} added, {changed:,} changed, {removed:,} removed", get(f"{kind}_rewritten", 0)


def summarize(run: dict) -> str:
    """A short human summary of one run: teams per league, what changed in the schedule and the
    standings for the app's users (apart from rows written again under their teams' new ids),
    repairs, errors."""
    lines = [f"run {run['run_id']}: {run['status']}{' (dry run, nothing written)' if run['dry_run'] else ''}"]
    upsert = _step(run["report"], "suspected_renames")
    for code, c in upsert.get("leagues", {}).items():
        matches, matches_rewritten = _for_users(c, "schedule")
        standings, standings_rewritten = _for_users(c, "stats")
        lines.append(
            f"  {code}: {c['teams_in_sources']:,} teams ({c['teams_created']:,} new, {c['teams_updated']:,} updated, "
            f"{c['teams_deactivated']:,} deactivated); matches {matches}; standings {standings}"
        )
        if matches_rewritten or standings_rewritten:
            lines.append(
                f"  bookkeeping, the same for users: {plural(matches_rewritten, 'match', 'matches')} and "
                f"{plural(standings_rewritten, 'standings row')} written again under their teams' new ids"
            )
    if not upsert:
        lines.append("  no upsert report: the run stopped before upsert_teams")
    repair = _step(run["report"], "by_strategy")
    if repair.get("orphans"):
        moved = {s: n for s, n in repair["by_strategy"].items() if n and s != "quarantine"}
        done = ", ".join(f"{n} by {s}" for s, n in moved.items()) or "none"
        lines.append(
            f"  user rows on a lost team: {repair['orphans']}: put back {sum(moved.values())} ({done}), "
            f"quarantined {repair['by_strategy']['quarantine']}"
        )
    if run["report"].get("error"):
        lines.append(f"  error: {run['report']['error']}")
    return "\n".join(lines)


def run_demo() -> int:
    started = time.monotonic()
    uri = target_uri()
    log = REPO / ".demo" / "dags_test.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    where = (
        "AIRFLOW_CONN_LEAGUE_DB" if os.environ.get("AIRFLOW_CONN_LEAGUE_DB") else "embedded PostgreSQL in .demo/pgdata"
    )
    print(f"league_db: {where}; Airflow logs: .demo/dags_test.log")
    conf = {"source_dir": str(DEMO_DATA)}

    print("night 1: airflow dags test league_import (the bundled season)")
    code = run_dag(demo_home(), uri, conf, log)
    with psycopg.connect(uri) as conn:
        print(summarize(latest_run(conn)))
        if code:
            return _failed(code, log)
        conn.execute(SEED)
        conn.commit()
        print("the app writes: 3 captains, their memberships, a poll, 3 captain messages, 3 practice times")
        try:
            replay_old_etl_churn(conn)
            conn.execute("SET session_replication_role = replica")
            conn.execute(UNPLACEABLE)
            conn.commit()
        except psycopg.errors.InsufficientPrivilege:
            conn.rollback()
            print("(the id churn replay needs a role allowed session_replication_role: skipped)")
        else:
            orphans = conn.execute(
                "SELECT (SELECT count(*) FROM polls WHERE team_id NOT IN (SELECT id FROM teams))"
                " + (SELECT count(*) FROM captain_messages WHERE team_id NOT IN (SELECT id FROM teams))"
                " + (SELECT count(*) FROM practice_times WHERE team_id NOT IN (SELECT id FROM teams))"
                " + (SELECT count(*) FROM team_memberships WHERE team_id NOT IN (SELECT id FROM teams))"
            ).fetchone()[0]
            conn.rollback()
            print(f"the old system's nightly ETL re-creates every team with new ids: {orphans} user rows orphaned")

    print("night 2: airflow dags test league_import")
    code = run_dag(demo_home(), uri, conf, log)
    with psycopg.connect(uri) as conn:
        run = latest_run(conn)
        print(summarize(run))
        repaired = conn.execute(
            "SELECT strategy, table_name, count(*) FROM etl.repairs WHERE run_id = %s GROUP BY 1, 2 ORDER BY 1, 2",
            (run["run_id"],),
        ).fetchall()
        for strategy, table, n in repaired:
            print(f"  {table}: {n} {'quarantined' if strategy == 'quarantine' else 'put back by ' + strategy}")
        waiting = conn.execute(
            "SELECT table_name, row_id, reason FROM etl.quarantine WHERE resolved_at IS NULL ORDER BY id"
        ).fetchall()
        conn.rollback()
    for table, row, reason in waiting:
        print(f"  waits in quarantine: {table} row {row}: {reason}")
    if waiting:
        print("  a person decides with: league-import review list / league-import review decide ITEM OPTION")
    report = _step(run["report"], "report_path").get("report_path")
    if report:
        print(f"health report: {report}")
    if code:
        return _failed(code, log)
    print(f"errors: none ({time.monotonic() - started:.0f} s)")
    return 0


def _failed(code: int, log: Path) -> int:
    print(f"errors: the DAG run failed (exit {code}); last lines of {log}:", file=sys.stderr)
    print("".join(log.read_text().splitlines(keepends=True)[-25:]), file=sys.stderr)
    return code
