"""Issue 24's acceptance: the DAG run for real (`airflow dags test`, as an operator starts it) with
the OpenLineage provider's file transport; each task's events name what the run report says it
read and wrote, with its counts, and the health check's checks; every event validates against
the OpenLineage JSON schemas (tests/lineage_events.py). A dry run says so and names no output; on
the app's database the events name the app's tables and columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from helpers import CONF, FRESH_DEMO, LEAGUE, create_user_data, old_etl_churn, one, q
from helpers import night as night_of_steps
from lineage_events import by_task, datasets, problems, read_events

from league_import import app_demo, cli

pytestmark = pytest.mark.dag
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
TASKS = ("validate_constraints", "deduplicate", "backup", "upsert_teams", "restore_mapping", "health_check")


def night(events: Path, conf: dict | None = None, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """One run of league_import with the provider's file transport writing to `events`."""
    settings = {
        **os.environ,
        **(env or {}),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "league-import-test",
    }
    command = [AIRFLOW, "dags", "test", "league_import", "-c", json.dumps(conf or CONF), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=settings)


def latest(conn) -> tuple[str, dict]:
    found = q(conn, "SELECT status, report FROM etl.runs ORDER BY started_at DESC LIMIT 1")[0]
    return found[0], found[1]


def facet(dataset: dict, group: str, name: str) -> dict:
    return (dataset.get(group) or {}).get(name) or {}


def written(dataset: dict) -> tuple[int, dict]:
    """A dataset's rowCount and its row changes by kind."""
    changes = {
        k: v for k, v in facet(dataset, "outputFacets", "leagueImportRowChanges").items() if not k.startswith("_")
    }
    return facet(dataset, "outputFacets", "outputStatistics")["rowCount"], changes


def table(uri: str, schema: str, name: str) -> str:
    return f"{urlsplit(uri).path.lstrip('/')}.{schema}.{name}"


def assert_valid(events: list[dict]) -> None:
    assert events
    found = {i: problems(e) for i, e in enumerate(events)}
    assert {i: p for i, p in found.items() if p} == {}


def test_each_task_names_what_the_run_report_says_it_read_and_wrote(airflow_db, db_uri, tmp_path):
    done = night(tmp_path / "night1.jsonl")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with psycopg.connect(db_uri) as conn:
        # The app's users (some twice: the old system's users table had no key on the email), their
        # rows on teams, then the old system's ETL: every team deleted and re-inserted with new ids.
        create_user_data(conn, captains=12)
        conn.execute("ALTER TABLE users DROP CONSTRAINT users_natural_key")
        conn.execute("INSERT INTO users (id, email) SELECT 100 + id, email FROM users")
        conn.execute(
            "INSERT INTO polls (team_id, created_by, question) SELECT team_id, 100 + user_id, 'Q' FROM team_memberships"
        )
        conn.commit()
        old_etl_churn(conn)
    events_file = tmp_path / "night2.jsonl"
    done = night(events_file)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with psycopg.connect(db_uri) as conn:
        status, report = latest(conn)
    assert status == "success"
    events = read_events(events_file)
    assert_valid(events)
    tasks = by_task(events)
    assert set(tasks) == {*TASKS, "announce_questions"}
    # The teardown counted the questions waiting (none: skipped, nothing announced) and wrote nothing.
    announced = tasks["announce_questions"]["COMPLETE"]
    counts = {
        d["name"].split(".", 1)[1]: facet(d, "inputFacets", "inputStatistics")["rowCount"] for d in announced["inputs"]
    }
    with psycopg.connect(db_uri) as conn:
        waiting = {
            "etl.quarantine": one(conn, "SELECT count(*) FROM etl.quarantine WHERE resolved_at IS NULL"),
            "etl.rename_suspects": one(conn, "SELECT count(*) FROM etl.rename_suspects WHERE status = 'pending'"),
            "etl.growth_alarms": one(conn, "SELECT count(*) FROM etl.growth_alarms WHERE answer IS NULL"),
        }
    assert counts == waiting and announced["outputs"] == []
    for task in TASKS:
        assert set(tasks[task]) == {"START", "COMPLETE"}, task
        for e in tasks[task].values():
            assert e["job"]["namespace"] == "league-import-test"
            assert {k: e["run"]["facets"]["leagueImport"][k] for k in ("dryRun", "step")} == {
                "dryRun": False,
                "step": task,
            }
    ended = {task: tasks[task]["COMPLETE"] for task in TASKS}
    namespaces = {d["namespace"] for e in ended.values() for side in ("inputs", "outputs") for d in e[side]}
    postgres = {n for n in namespaces if n.startswith("postgres://")}
    assert len(postgres) == 1 and namespaces - postgres == {"file"}

    # validate_constraints: each file read, with its records and bytes; the stage written.
    validate = report["validate_constraints"]
    inputs = datasets(ended["validate_constraints"], "inputs")
    assert set(inputs) == {str(FRESH_DEMO / LEAGUE / f["name"]) for f in validate["files"][LEAGUE]}
    for f in validate["files"][LEAGUE]:
        read = facet(inputs[str(FRESH_DEMO / LEAGUE / f["name"])], "inputFacets", "inputStatistics")
        assert (read["rowCount"], read["size"]) == (f["records"], f["bytes"])
        fields = [x["name"] for x in facet(inputs[str(FRESH_DEMO / LEAGUE / f["name"])], "facets", "schema")["fields"]]
        assert {"series"} < set(fields) and ("matches" in fields) == (f["name"] == "series_stats.json")
    outputs = datasets(ended["validate_constraints"], "outputs")
    implied = validate["implied"][LEAGUE]
    assert written(outputs[table(db_uri, "etl", "stage_teams")])[0] == implied["teams"]
    assert written(outputs[table(db_uri, "etl", "stage_schedule")])[0] == implied["schedule"]
    assert written(outputs[table(db_uri, "etl", "stage_stats")])[0] == implied["series_stats"]

    # deduplicate: the 12 users given twice, removed and archived; the polls on them moved.
    users = report["deduplicate"]["tables"]["users"]
    assert users["duplicates"] == 12
    outputs = datasets(ended["deduplicate"], "outputs")
    assert written(outputs[table(db_uri, "public", "users")]) == (12, {"deleted": 12, "archived": users["archived"]})
    assert written(outputs[table(db_uri, "etl_archive", "users")])[0] == users["archived"]
    moved = {k: n for k, n in users["repointed"].items() if "." in k and n}
    for key, n in moved.items():
        assert written(outputs[table(db_uri, "public", key.split(".")[0])])[1]["updated"] >= n
    enforced = [t for t, r in report["deduplicate"]["tables"].items() if r["plan"] == "enforced"]
    assert enforced and not {table(db_uri, "public", t) for t in enforced} & set(
        datasets(ended["deduplicate"], "inputs")
    )

    # backup: every table it copied, read with its count; the copies written.
    backup = report["backup"]
    inputs = datasets(ended["backup"], "inputs")
    assert {
        t: facet(inputs[table(db_uri, "public", t)], "inputFacets", "inputStatistics")["rowCount"]
        for t in backup["row_counts"]
    } == backup["row_counts"]
    outputs = datasets(ended["backup"], "outputs")
    assert written(outputs[table(db_uri, "etl", "backup_teams")])[0] == backup["copied"]["teams"]
    assert written(outputs[table(db_uri, "etl", "backup_refs")])[0] == sum(
        n for k, n in backup["copied"].items() if "." in k
    )

    # upsert_teams: the six tables, with the report's counts.
    counts = report["upsert_teams"]["leagues"][LEAGUE]
    outputs = datasets(ended["upsert_teams"], "outputs")
    teams = written(outputs[table(db_uri, "public", "teams")])
    assert teams[0] == counts["teams_created"] + counts["teams_updated"] + counts["teams_deactivated"]
    assert teams[1].get("inserted", 0) == counts["teams_created"]
    schedule = written(outputs[table(db_uri, "public", "schedule")])
    assert schedule[0] == counts["schedule_created"] + counts["schedule_updated"] + counts["schedule_deleted"]
    stats = written(outputs[table(db_uri, "public", "series_stats")])
    assert stats[0] == counts["stats_created"] + counts["stats_updated"] + counts["stats_deleted"]
    lineage = facet(outputs[table(db_uri, "public", "series_stats")], "facets", "columnLineage")["fields"]
    assert lineage["points"]["inputFields"][0]["name"] == table(db_uri, "etl", "stage_stats")

    # restore_mapping: each user table's rows put back on their teams, as the report counts them.
    repair = report["restore_mapping"]
    assert repair["orphans"] > 0 and repair["by_strategy"]["key_map"] > 0
    outputs = datasets(ended["restore_mapping"], "outputs")
    for name, decided in repair["by_table"].items():
        changed = sum(decided.values()) - repair["left_for_next_run"].get(name, 0)
        assert written(outputs[table(db_uri, "public", name)])[0] == changed, name

    # health_check: every check an assertion on the table it checks, success as its status.
    health = report["health_check"]
    failing = {f"{p['check']}:{p['subject']}" for p in health["problems"]}
    found = {}
    for dataset in ended["health_check"]["inputs"]:
        for a in facet(dataset, "inputFacets", "dataQualityAssertions")["assertions"]:
            found[a["name"]] = (a["success"], dataset["name"])
    assert {name: ok for name, (ok, _) in found.items()} == {name: name not in failing for name in health["figures"]}
    assert found["orphans:polls.team_id"][1] == table(db_uri, "public", "polls")
    assert found["reconcile:teams APTA_CHICAGO"][1] == table(db_uri, "public", "teams")
    outputs = datasets(ended["health_check"], "outputs")
    assert written(outputs[table(db_uri, "etl", "health_checks")])[0] == len(health["figures"])
    assert health["report_path"] in outputs


def test_a_failed_health_check_names_the_checks_that_failed(airflow_db, db_uri, tmp_path):
    assert night(tmp_path / "night1.jsonl").returncode == 0
    with psycopg.connect(db_uri) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("INSERT INTO polls (id, team_id, question) VALUES (1, 424242, 'orphan')")
        conn.commit()
    events_file = tmp_path / "night2.jsonl"
    done = night(events_file, CONF, "--mark-success-pattern", "^restore_mapping$")  # the repair skipped
    assert done.returncode != 0
    events = read_events(events_file)
    assert_valid(events)
    failed = by_task(events)["health_check"]["FAIL"]
    assertions = {
        a["name"]: a for d in failed["inputs"] for a in facet(d, "inputFacets", "dataQualityAssertions")["assertions"]
    }
    assert assertions["orphans:polls.team_id"]["success"] is False
    assert assertions["orphans:polls.team_id"]["severity"] == "error"
    # The checks were recorded, and the page written, before the run failed; nothing else is named.
    assert {d["name"] for d in failed["outputs"] if d["namespace"] != "file"} == {table(db_uri, "etl", "health_checks")}
    assert [d["name"].endswith(".html") for d in failed["outputs"] if d["namespace"] == "file"] == [True]


def test_a_dry_run_says_so_and_names_no_output(airflow_db, db_uri, tmp_path):
    events_file = tmp_path / "dry.jsonl"
    done = night(events_file, {**CONF, "dry_run": True})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    events = read_events(events_file)
    assert_valid(events)
    tasks = by_task(events)
    assert set(tasks) == {*TASKS, "announce_questions"}  # the teardown too: skipped, it announces nothing
    for task, found in tasks.items():
        for e in found.values():
            assert e["run"]["facets"]["leagueImport"]["dryRun"] is True, task
            assert e["outputs"] == [], task
    assert len(tasks["validate_constraints"]["COMPLETE"]["inputs"]) == 2  # what it read, it says


def test_on_the_apps_database_the_events_name_the_apps_tables(airflow_db, db_uri, tmp_path, monkeypatch, capsys):
    app_demo.load_schema(db_uri)
    monkeypatch.setenv("LEAGUE_IMPORT_TARGET", str(app_demo.APP_MAPPING))
    with psycopg.connect(db_uri) as conn:
        app_demo.fill_like_old_importer(conn, FRESH_DEMO)
        app_demo.add_user_rows(conn, 20)
        referencing = {t for t, _ in app_demo.team_references(conn)}
    assert cli.main(["target", "apply"]) == 0
    capsys.readouterr()
    events_file = tmp_path / "app.jsonl"
    done = night(events_file)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with psycopg.connect(db_uri) as conn:
        _, report = latest(conn)
    events = read_events(events_file)
    assert_valid(events)
    ended = {task: found["COMPLETE"] for task, found in by_task(events).items()}
    outputs = datasets(ended["upsert_teams"], "outputs")
    for entity in ("leagues", "clubs", "series", "teams", "schedule", "series_stats"):
        assert table(db_uri, "public", entity) in outputs  # the app's tables (league_app.toml)
    adopted = report["upsert_teams"]["adopted"]
    for entity in ("teams", "schedule", "series_stats"):
        assert written(outputs[table(db_uri, "public", entity)])[1]["adopted"] == adopted[entity]
    # The app's own column names: a league's code is its league_id, which fills league_name too.
    leagues = facet(outputs[table(db_uri, "public", "leagues")], "facets", "columnLineage")["fields"]
    assert set(leagues) == {"league_id", "league_name"}
    standings = facet(outputs[table(db_uri, "public", "series_stats")], "facets", "columnLineage")["fields"]
    assert {"matches_won", "team", "series"} <= set(standings)
    # Every one of the app's tables that points at teams is checked, under its own name.
    checked = {d["name"] for d in ended["health_check"]["inputs"]}
    assert {table(db_uri, "public", t) for t in referencing} <= checked
    assert "user_contexts" in referencing  # an app table section 4 does not have


def test_the_review_dag_names_the_questions_it_read(airflow_db, conn, tmp_path):
    """A run with nothing to ask (dag.test() waits for a person's answer: tests/dag/test_league_review_dag.py
    answers in-process; the lineage of each step with questions is in tests/unit/test_lineage.py)."""
    night_of_steps(conn, "night-1")
    events_file = tmp_path / "review.jsonl"
    settings = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
    }
    command = [AIRFLOW, "dags", "test", "league_review", "-c", json.dumps({"response_timeout_minutes": 60})]
    done = subprocess.run(command, capture_output=True, text=True, env=settings)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    events = read_events(events_file)
    assert_valid(events)
    tasks = by_task(events, "league_review")
    assert {t: set(found) for t, found in tasks.items()} == {"collect_decisions": {"START", "COMPLETE"}}
    collect = tasks["collect_decisions"]["COMPLETE"]
    assert collect["run"]["facets"]["leagueImport"]["step"] == "collect_decisions"
    waiting = {
        d["name"].split(".", 1)[1]: facet(d, "inputFacets", "inputStatistics")["rowCount"] for d in collect["inputs"]
    }
    assert waiting == {"etl.quarantine": 0, "etl.rename_suspects": 0, "etl.growth_alarms": 0}
    assert [(d["name"].split(".", 1)[1], written(d)[0]) for d in collect["outputs"]] == [("etl.review_links", 0)]
