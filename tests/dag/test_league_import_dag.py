"""The league_import DAG: its wiring, and real runs with dag.test() and `airflow dags test`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from helpers import CONF, LEAGUE, REPO, copy_demo, one, read, snapshot, team_ids, write

from league_import.sources import SCHEDULE_FILE, STATS_FILE

pytestmark = pytest.mark.dag
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def run(dag, **conf):
    """dag.test() keeps an earlier run's conf in the DAG's params: pass every param each time."""
    return dag.test(run_conf={**CONF, **conf})


def latest_run(uri) -> tuple[str, dict]:
    with psycopg.connect(uri) as conn:
        return conn.execute("SELECT status, report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()


def test_wiring(league_dag):
    assert league_dag.dag_id == "league_import"
    assert league_dag.catchup is False and league_dag.max_active_runs == 1
    assert league_dag.timetable.expression == "30 2 * * *"
    assert str(league_dag.timetable.timezone) in ("America/Chicago", "Timezone('America/Chicago')")
    order = ["validate_constraints", "deduplicate", "backup", "upsert_teams", "restore_mapping", "health_check"]
    for upstream, downstream in zip(order, order[1:]):
        assert downstream in league_dag.get_task(upstream).downstream_task_ids
    for task in league_dag.tasks:
        assert task.retries >= 1 and task.retry_exponential_backoff
        assert task.retry_delay == timedelta(seconds=int(os.environ["LEAGUE_IMPORT_RETRY_DELAY"]))
    params = league_dag.params
    assert params["leagues"] == [] and params["dry_run"] is False
    assert params["max_deactivation_ratio"] == 0.2
    assert params["source_dir"] is None  # scheduled runs read the configured folder, never the demo data
    assert [a.uri for a in league_dag.get_task("health_check").outlets] == ["league-import://league_db/public/teams"]
    # Questions are announced after every run, failed ones too, without changing the run's state.
    announce = league_dag.get_task("announce_questions")
    assert announce.is_teardown and announce.upstream_task_ids == {"health_check"}
    assert [a.name for a in announce.outlets] == ["league_questions"]
    declared = {name: league_dag.params.get_param(name) for name in params}
    assert declared["source_dir"].schema["type"] == ["null", "string"]
    assert declared["leagues"].schema["type"] == ["null", "array"]  # optional in the form
    assert declared["dry_run"].schema["type"] == "boolean"
    assert {k: declared["max_deactivation_ratio"].schema[k] for k in ("type", "minimum", "maximum")} == {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
    }
    assert all(p.description and p.schema.get("title") for p in declared.values())


def test_what_operators_see(league_dag):
    """Owner, description and docs, and every input of every task a rendered template field."""
    assert league_dag.owner == "league-import" and league_dag.description and league_dag.doc_md
    for task in league_dag.tasks:
        assert task.owner == "league-import"
        assert task.doc_md and "Reads:" in task.doc_md and "Changes:" in task.doc_md and "Recover:" in task.doc_md
        assert task.execution_timeout is not None
        assert {"conn_id", "dry_run"} <= set(task.template_fields)
        assert task.dry_run == "{{ params.dry_run }}"
    validate = league_dag.get_task("validate_constraints")
    assert (validate.source_dir, validate.leagues) == ("{{ params.source_dir }}", "{{ params.leagues }}")
    assert league_dag.get_task("upsert_teams").max_deactivation_ratio == "{{ params.max_deactivation_ratio }}"
    assert [link.name for link in league_dag.get_task("health_check").operator_extra_links] == ["Health report"]


def test_parsing_the_dag_file_stays_light():
    """The scheduler parses the file every few seconds: no pandas or psycopg at import."""
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('pandas', 'psycopg', 'league_import.upsert') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "dags" / "league_import.py")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_run_on_demo_data_twice_keeps_ids(league_dag, db_uri):
    assert run(league_dag).state == "success"
    status, report = latest_run(db_uri)
    assert status == "success"
    assert report["upsert_teams"]["leagues"][LEAGUE]["teams_created"] == 537
    assert report["validate_constraints"]["teams_in_sources"] == {LEAGUE: 537}
    assert report["health_check"]["status"] == "ok", report["health_check"]["problems"]
    with psycopg.connect(db_uri) as conn:
        first = team_ids(conn)
        assert run(league_dag).state == "success"
        assert team_ids(conn) == first
        # The run's stage is gone once it ended.
        assert conn.execute("SELECT count(*) FROM etl.stages").fetchone()[0] == 0
    status, report = latest_run(db_uri)
    counts = report["upsert_teams"]["leagues"][LEAGUE]
    assert (counts["teams_created"], counts["teams_updated"], counts["teams_unchanged"]) == (0, 0, 537)


def test_dry_run_changes_nothing(league_dag, db_uri, tmp_path):
    assert run(league_dag).state == "success"
    src = copy_demo(tmp_path)
    write(src, STATS_FILE, read(src, STATS_FILE)[:500])
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    with psycopg.connect(db_uri) as conn:
        before = snapshot(conn)
        assert run(league_dag, source_dir=str(src), dry_run=True, max_deactivation_ratio=1.0).state == "success"
        assert snapshot(conn) == before
    status, report = latest_run(db_uri)
    assert report["upsert_teams"]["dry_run"] is True
    assert report["upsert_teams"]["leagues"][LEAGUE]["teams_deactivated"] == 37


def test_dry_run_on_a_new_database_writes_no_data(league_dag, db_uri):
    assert run(league_dag, dry_run=True).state == "success"
    status, report = latest_run(db_uri)
    assert status == "success" and report["upsert_teams"]["leagues"][LEAGUE]["teams_created"] == 537
    with psycopg.connect(db_uri) as conn:
        assert conn.execute("SELECT count(*) FROM teams").fetchone()[0] == 0
        keys = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype IN ('u', 'f') AND connamespace = 'public'::regnamespace"
        ).fetchone()[0]
        assert keys == 0  # the empty tables exist; no constraint was added on a dry run


def asset_events(run_id: str) -> list[tuple[str, dict]]:
    """The Asset events a run published (the Asset's name, the event's extra), from Airflow's
    metadata database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.execute(
            select(AssetModel.name, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_run_id == run_id)
        )
        return [tuple(row) for row in found]


def test_a_dry_run_announces_nothing(league_dag, db_uri):
    """No Asset event of any kind, whatever the run finds; the real run after it publishes its
    league_teams event as before (and no league_questions event: nothing waits)."""
    dry = run(league_dag, dry_run=True)
    assert dry.state == "success" and latest_run(db_uri)[1]["upsert_teams"]["dry_run"] is True
    assert asset_events(dry.run_id) == []
    real = run(league_dag)
    assert real.state == "success"
    ((name, event),) = asset_events(real.run_id)
    assert name == "league_teams" and event["run_id"] == real.run_id and event["status"] == "ok"
    assert event["decisions_pending"] == 0


def corrupt(src, case):
    stats, schedule = read(src, STATS_FILE), read(src, SCHEDULE_FILE)
    if case == "malformed_json":
        (src / LEAGUE / STATS_FILE).write_text('[{"series": "Series 1", "team": ]')
        return "series_stats.json: malformed JSON at line 1 column 33: invalid character"
    if case == "missing_field":
        del schedule[17]["away_team"]
        write(src, SCHEDULE_FILE, schedule)
        return "schedules.json: record 17: missing field 'away_team'"
    if case == "league_mismatch":
        stats[5]["league_id"] = "CNSWPL"
        write(src, STATS_FILE, stats)
        return "series_stats.json: record 5: field 'league_id' is 'CNSWPL' but the folder is 'APTA_CHICAGO'"
    if case == "unparseable_team":
        stats[8]["team"] = " - 1"
        write(src, STATS_FILE, stats)
        return "series_stats.json: record 8: field 'team'"
    if case == "empty_array":
        write(src, SCHEDULE_FILE, [])
        return "schedules.json: the array holds no records"
    if case == "folder_without_files":
        (src / "NSTF").mkdir()
        return "NSTF: league folder has neither series_stats.json nor schedules.json"
    if case == "file_over_the_size_limit":
        with (src / LEAGUE / SCHEDULE_FILE).open("r+b") as big:
            big.truncate(100 * 1024 * 1024)  # 100 MB, refused while it is read
        return "schedules.json: more than the limit of 52,428,800 bytes per file; refused"
    if case == "duplicated_match":
        write(src, SCHEDULE_FILE, [*schedule, schedule[40]])
        return f"schedules.json: record {len(schedule)}: the same match as record 40"
    if case == "integer_beyond_the_column":
        stats[3]["points"] = 2**40
        write(src, STATS_FILE, stats)
        return "series_stats.json: record 3: field 'points' must be a whole number between"
    if case == "nul_character":
        stats[6]["team"] = "Glen\u0000Ellyn 6"
        write(src, STATS_FILE, stats)
        return "series_stats.json: record 6: field 'team' contains a NUL character"
    if case == "name_too_long":
        schedule[9]["home_team"] = "X" * 3000
        write(src, SCHEDULE_FILE, schedule)
        return "schedules.json: record 9: field 'home_team' is 3,000 characters long, over the limit of 200"
    if case == "label_of_only_a_prefix":
        schedule[11]["series"] = "Series"
        write(src, SCHEDULE_FILE, schedule)
        return "schedules.json: record 11: field 'series': series label 'Series' names no series"
    if case == "float_in_one_record":
        stats[7]["matches"]["won"] = 2.5
        write(src, STATS_FILE, stats)
        return "series_stats.json: record 7: field 'matches.won' must be a whole number, got 2.5"
    if case == "deeply_nested_json":
        (src / LEAGUE / STATS_FILE).write_text("[" + json.dumps(stats[0])[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}]")
        return "series_stats.json: record 0: JSON nested too deeply"
    if case == "folder_where_a_file_should_be":
        (src / LEAGUE / STATS_FILE).unlink()
        (src / LEAGUE / STATS_FILE).mkdir()
        return "series_stats.json: not a regular file (a folder)"
    if case == "fifo_where_a_file_should_be":
        (src / LEAGUE / SCHEDULE_FILE).unlink()
        os.mkfifo(src / LEAGUE / SCHEDULE_FILE)
        return "schedules.json: not a regular file (a FIFO)"
    # the red team's (issue 22): each refused before the first write, the file and record named
    if case == "case_variant_folder":
        shutil.copytree(src / LEAGUE, src / LEAGUE.lower())
        return f"league folders {LEAGUE}, {LEAGUE.lower()} in '{src}' differ only in case"
    if case == "duplicated_key":
        index = next(i for i, r in enumerate(stats) if r["team"] == "Winnetka 1")
        body = json.dumps(stats).replace('"team": "Winnetka 1"', '"team": "Winnetka 1", "team": "Hacked 1"', 1)
        (src / LEAGUE / STATS_FILE).write_text(body)
        return f"series_stats.json: record {index}: repeats the key 'team' in one object"
    if case == "negative_count":
        stats[5]["games"]["lost"] = -100
        write(src, STATS_FILE, stats)
        return "series_stats.json: record 5: field 'games.lost'"
    if case == "invalid_utf8":
        body = (src / LEAGUE / SCHEDULE_FILE).read_bytes()
        spot = body.index(b"Winnetka")
        (src / LEAGUE / SCHEDULE_FILE).write_bytes(body[:spot] + b"\xff" + body[spot:])
        return f"schedules.json: not UTF-8: byte {spot} (line "
    if case == "escape_in_a_name":
        stats[6]["team"] = "Glenbrook RC\x1b[2J 1"
        write(src, STATS_FILE, stats)
        return "series_stats.json: record 6: field 'team' contains a control character (U+001B)"
    if case == "right_to_left_override":
        schedule[3]["away_team"] = "\u202eGlenbrook RC 1"
        write(src, SCHEDULE_FILE, schedule)
        return "schedules.json: record 3: field 'away_team' contains an invisible format character (U+202E)"
    raise AssertionError(case)


BAD_INPUT = [
    "malformed_json",
    "missing_field",
    "league_mismatch",
    "unparseable_team",
    "empty_array",
    "folder_without_files",
    "file_over_the_size_limit",
    # found after writing by the first release (issue 10): now refused before the first write
    "duplicated_match",
    "integer_beyond_the_column",
    "nul_character",
    "name_too_long",
    "label_of_only_a_prefix",
    "float_in_one_record",
    "deeply_nested_json",
    "folder_where_a_file_should_be",
    "fifo_where_a_file_should_be",
    "case_variant_folder",
    "duplicated_key",
    "negative_count",
    "invalid_utf8",
    "escape_in_a_name",
    "right_to_left_override",
]


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_fails_clearly_and_changes_nothing(league_dag, db_uri, tmp_path, case):
    assert run(league_dag).state == "success"
    src = copy_demo(tmp_path)
    message = corrupt(src, case)
    with psycopg.connect(db_uri) as conn:
        before = snapshot(conn)
        dag_run = run(league_dag, source_dir=str(src))
        assert dag_run.state == "failed"
        assert snapshot(conn) == before
    status, report = latest_run(db_uri)
    assert status == "failed"
    assert message in report["error"] and report["error"].startswith("validate_constraints: ")
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert tries["validate_constraints"] == 1  # terminal: refused once, never retried


def test_missing_source_dir(league_dag, db_uri, tmp_path):
    assert run(league_dag, source_dir=str(tmp_path / "nowhere")).state == "failed"
    _, report = latest_run(db_uri)
    assert f"param source_dir: '{tmp_path / 'nowhere'}' is not a folder" in report["error"]


@pytest.mark.parametrize(
    ("param", "value"), [("dry_run", "yes"), ("max_deactivation_ratio", 1.5), ("leagues", "APTA_CHICAGO")]
)
def test_a_param_of_the_wrong_type_is_refused_before_the_run(league_dag, db_uri, param, value):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match=param):
        run(league_dag, **{param: value})
    with psycopg.connect(db_uri) as conn:
        assert snapshot(conn) == {t: "absent" for t in snapshot(conn)}  # nothing ran at all


def test_unknown_league_param(league_dag, db_uri):
    assert run(league_dag, leagues=["NSTF"]).state == "failed"
    status, report = latest_run(db_uri)
    assert "param leagues: no folder for NSTF" in report["error"]
    with psycopg.connect(db_uri) as conn:
        assert conn.execute("SELECT count(*) FROM teams").fetchone()[0] == 0


def test_guard_names_the_param_and_a_raised_ratio_passes(league_dag, db_uri, tmp_path):
    assert run(league_dag).state == "success"
    src = copy_demo(tmp_path)
    write(src, STATS_FILE, read(src, STATS_FILE)[:300])
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    with psycopg.connect(db_uri) as conn:
        before = snapshot(conn)
        assert run(league_dag, source_dir=str(src)).state == "failed"
        assert snapshot(conn) == before
        _, report = latest_run(db_uri)
        assert "upsert_teams: league APTA_CHICAGO: this run would deactivate 237 of 537" in report["error"]
        assert one(conn, "SELECT to_regclass('etl_archive.schedule')") is None  # nothing archived either
        assert "max_deactivation_ratio" in report["error"]
        assert run(league_dag, source_dir=str(src), max_deactivation_ratio=1.0).state == "success"
        assert conn.execute("SELECT count(*) FROM teams WHERE NOT is_active").fetchone()[0] == 237


def test_airflow_dags_test_cli_exit_codes(airflow_db, db_uri, tmp_path):
    """CONTRACT section 2: `airflow dags test league_import -c ...` exits non-zero when the run fails."""
    conf = json.dumps({"source_dir": CONF["source_dir"]})
    ok = subprocess.run([AIRFLOW, "dags", "test", "league_import", "-c", conf], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    conf = json.dumps({"source_dir": str(tmp_path / "missing")})
    bad = subprocess.run([AIRFLOW, "dags", "test", "league_import", "-c", conf], capture_output=True, text=True)
    assert bad.returncode != 0
    _, report = latest_run(db_uri)
    assert "param source_dir" in report["error"]


def test_a_clean_run_is_healthy_and_an_orphan_fails_the_run_by_name(league_dag, db_uri):
    assert run(league_dag).state == "success"
    _, report = latest_run(db_uri)
    assert report["health_check"]["status"] == "ok" and report["health_check"]["counts"]["error"] == 0
    assert Path(report["health_check"]["report_path"]).exists()
    with psycopg.connect(db_uri) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("INSERT INTO polls (id, team_id, question) VALUES (1, 424242, 'orphan')")
        conn.commit()
    failed = league_dag.test(run_conf=CONF, mark_success_pattern="^restore_mapping$")  # repair skipped
    assert failed.state == "failed"
    status, report = latest_run(db_uri)
    assert status == "failed"
    assert report["error"].startswith("health_check: 1 health checks failed:")
    assert "- orphans polls.team_id: 1 (threshold 0) 1 row points at no team" in report["error"]
    assert report["health_check"]["problems"][0]["subject"] == "polls.team_id"


def test_a_second_run_or_task_fails_fast_and_changes_nothing(league_dag, db_uri, monkeypatch):
    from league_import import runs
    from league_import.runs import TASK_LOCK

    assert run(league_dag).state == "success"
    with psycopg.connect(db_uri, autocommit=True) as other, psycopg.connect(db_uri) as conn:
        before = snapshot(conn)
        # Something else holds the task lock and never lets go: the run waits the bound, then its
        # tries fail as transient (retried), and nothing changes.
        monkeypatch.setattr(runs, "TASK_LOCK_WAIT", "1s")
        other.execute("SELECT pg_advisory_lock(%s)", (TASK_LOCK,))
        dag_run = run(league_dag, max_deactivation_ratio=1.0)
        assert dag_run.state == "failed"
        tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
        assert tries["validate_constraints"] == 4  # the first try and three retries
        _, report = latest_run(db_uri)
        assert "the task lock was held by backend pid" in report["error"] and "for more than 1s" in report["error"]
        other.execute("SELECT pg_advisory_unlock(%s)", (TASK_LOCK,))
        # Another run holds the lease between its tasks: no interleaving either.
        other.execute("INSERT INTO etl.runs (run_id, status) VALUES ('other-deployment-run', 'running')")
        other.execute(
            "UPDATE etl.run_lock SET run_id = 'other-deployment-run', acquired_at = now(), heartbeat_at = now()"
        )
        assert run(league_dag).state == "failed"
        _, report = latest_run(db_uri)
        assert "run other-deployment-run" in report["error"] and "is in progress on this database" in report["error"]
        assert snapshot(conn) == before
        # Once that run has ended (or its lease went stale), the next run proceeds.
        other.execute("UPDATE etl.runs SET status = 'failed' WHERE run_id = 'other-deployment-run'")
        assert run(league_dag).state == "success"
        assert other.execute("SELECT run_id FROM etl.run_lock").fetchone() == (None,)


def test_a_typo_in_the_thresholds_variable_fails_once_before_any_write(league_dag, db_uri, monkeypatch):
    """Configuration is checked with a schema by the first task: one try, the key named, no write."""
    monkeypatch.setenv("AIRFLOW_VAR_LEAGUE_IMPORT_HEALTH_THRESHOLDS", '{"growth_eror": 5}')
    dag_run = run(league_dag)
    assert dag_run.state == "failed"
    tries = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert tries["validate_constraints"] == ("failed", 1)
    status, report = latest_run(db_uri)
    assert "Airflow Variable league_import_health_thresholds: key 'growth_eror': unknown key" in report["error"]
    with psycopg.connect(db_uri) as conn:
        assert snapshot(conn)["teams"] == (0, "d41d8cd98f00b204e9800998ecf8427e")  # created, never written


def test_a_notifier_typo_fails_once_naming_the_setting(league_dag, db_uri, monkeypatch):
    monkeypatch.setenv("LEAGUE_IMPORT_NOTIFY", "smtp")  # without LEAGUE_IMPORT_NOTIFY_TO
    dag_run = run(league_dag)
    assert dag_run.state == "failed"
    _, report = latest_run(db_uri)
    assert "LEAGUE_IMPORT_NOTIFY=smtp needs LEAGUE_IMPORT_NOTIFY_TO" in report["error"]
