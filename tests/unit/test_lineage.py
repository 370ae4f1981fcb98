"""league_import.lineage: each step's report as OpenLineage datasets, without Airflow or a database;
and the validation of events against the OpenLineage schemas (tests/lineage_events.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import msgspec
import pytest
from helpers import REPO
from lineage_events import problems
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from league_import import lineage, target
from league_import.sources import ScheduleRecord, StatsRecord

PLACE = lineage.Place("postgres://db.example:5432", "league")
CONTRACT = target.load(target.DEFAULT_MAPPING)
APP = target.load(REPO / "include" / "targets" / "league_app.toml")


@pytest.fixture
def renamed(tmp_path):
    """The app's mapping with its tables renamed, as an older or another app names them."""
    text = (REPO / "include" / "targets" / "league_app.toml").read_text()
    for old, new in (("teams", "club_teams"), ("series_stats", "standings"), ("schedule", "matches")):
        text = text.replace(f'table = "{old}"', f'table = "{new}"')
    path = tmp_path / "renamed.toml"
    path.write_text(text)
    return target.load(path)


def as_json(value) -> dict:
    return json.loads(Serde.to_json(value))


def named(datasets) -> dict[str, dict]:
    return {d.name: as_json(d) for d in datasets}


def stats(dataset: dict) -> dict:
    facets = dataset.get("outputFacets", {})
    out = {"rowCount": facets["outputStatistics"]["rowCount"]}
    out.update({k: v for k, v in facets.get(lineage.ROW_CHANGES, {}).items() if not k.startswith("_")})
    return out


def sources(dataset: dict, column: str) -> list[tuple[str, str]]:
    return [(f["name"], f["field"]) for f in dataset["facets"]["columnLineage"]["fields"][column]["inputFields"]]


VALIDATE = {
    "source_dir": "/data/leagues",
    "leagues": ["APTA_CHICAGO", "NSTF"],
    "files": {
        "APTA_CHICAGO": [
            {"name": "series_stats.json", "bytes": 273688, "sha256": "d7f40fb7ff107423", "records": 537},
            {"name": "schedules.json", "bytes": 1231524, "sha256": "126e9ba9dceac1bd", "records": 4931},
        ],
        "NSTF": [{"name": "series_stats.json", "bytes": 1000, "sha256": "00ff00ff00ff00ff", "records": 12}],
    },
    "implied": {
        "APTA_CHICAGO": {"clubs": 55, "teams": 537, "series": 53, "schedule": 4931, "series_stats": 537},
        "NSTF": {"clubs": 4, "teams": 12, "series": 2, "schedule": None, "series_stats": 12},
    },
}


def test_validate_names_each_file_read_with_its_fields_size_and_records():
    found = lineage.of_step("validate_constraints", VALIDATE, PLACE, CONTRACT, dry_run=False)
    inputs = named(found.inputs)
    assert set(inputs) == {
        "/data/leagues/APTA_CHICAGO/series_stats.json",
        "/data/leagues/APTA_CHICAGO/schedules.json",
        "/data/leagues/NSTF/series_stats.json",
    }
    assert {d["namespace"] for d in inputs.values()} == {"file"}
    stats_file = inputs["/data/leagues/APTA_CHICAGO/series_stats.json"]
    read = stats_file["inputFacets"]["inputStatistics"]
    assert (read["rowCount"], read["size"], read["fileCount"]) == (537, 273688, 1)
    assert stats_file["facets"]["version"]["datasetVersion"] == "d7f40fb7ff107423"
    # The schema is the record as the pipeline decodes it, nested fields included.
    fields = stats_file["facets"]["schema"]["fields"]
    assert [f["name"] for f in fields] == [f.encode_name for f in msgspec.inspect.type_info(StatsRecord).fields]
    lines = next(f for f in fields if f["name"] == "lines")
    assert lines["type"] == "struct" and [f["name"] for f in lines["fields"]] == ["won", "lost", "for", "ret"]
    assert {f["name"]: f["type"] for f in fields}["points"] == "integer"
    schedule = inputs["/data/leagues/APTA_CHICAGO/schedules.json"]["facets"]["schema"]["fields"]
    assert [f["name"] for f in schedule] == list(ScheduleRecord.__struct_fields__)
    assert {f["type"] for f in schedule} == {"string"}


def test_validate_writes_the_stage_its_columns_from_the_files_fields():
    outputs = named(lineage.of_step("validate_constraints", VALIDATE, PLACE, CONTRACT, dry_run=False).outputs)
    assert set(outputs) == {f"league.etl.{t}" for t in ("stage_teams", "stage_schedule", "stage_stats", "source_files")}
    assert {d["namespace"] for d in outputs.values()} == {"postgres://db.example:5432"}
    assert stats(outputs["league.etl.stage_teams"]) == {"rowCount": 549, "inserted": 549}
    assert stats(outputs["league.etl.stage_schedule"])["rowCount"] == 4931  # NSTF had no schedule file
    assert stats(outputs["league.etl.stage_stats"])["rowCount"] == 549
    assert stats(outputs["league.etl.source_files"])["rowCount"] == 3
    stage_stats = outputs["league.etl.stage_stats"]
    assert sources(stage_stats, "matches_won") == [
        ("/data/leagues/APTA_CHICAGO/series_stats.json", "matches.won"),
        ("/data/leagues/NSTF/series_stats.json", "matches.won"),
    ]
    assert sources(outputs["league.etl.stage_schedule"], "home_name") == [
        ("/data/leagues/APTA_CHICAGO/schedules.json", "home_team")
    ]
    # A team's name comes from either file: the standings' team, the schedule's two sides.
    assert set(sources(outputs["league.etl.stage_teams"], "team_name")) == {
        ("/data/leagues/APTA_CHICAGO/series_stats.json", "team"),
        ("/data/leagues/NSTF/series_stats.json", "team"),
        ("/data/leagues/APTA_CHICAGO/schedules.json", "home_team"),
        ("/data/leagues/APTA_CHICAGO/schedules.json", "away_team"),
    }
    # Every field a column is said to come from is a field of its file's record.
    record_fields = {
        "series_stats.json": {"points", "series", "team", "league_id"}
        | {f"{g}.{p}" for g in ("matches", "lines", "sets", "games") for p in ("won", "lost", "tied", "for", "ret")},
        "schedules.json": set(ScheduleRecord.__struct_fields__),
    }
    for dataset in outputs.values():
        for column in dataset["facets"].get("columnLineage", {}).get("fields", {}).values():
            for f in column["inputFields"]:
                assert f["field"] in record_fields[Path(f["name"]).name], f


UPSERT = {
    "dry_run": False,
    "leagues": {
        "APTA_CHICAGO": {
            "teams_in_sources": 537,
            "teams_created": 3,
            "teams_updated": 2,
            "teams_deactivated": 4,
            "schedule_created": 10,
            "schedule_updated": 1,
            "schedule_deleted": 7,
            "stats_created": 3,
            "stats_updated": 20,
            "stats_deleted": 4,
        },
        "NSTF": {"teams_in_sources": 12, "teams_created": 12, "stats_created": 12},
    },
    "clubs_created": 5,
    "leagues_created": 1,
    "series_created": 2,
    "series_renamed": 1,
    "suspected_renames": [{"old": 1, "new": 2}],
}


def test_upsert_writes_the_six_tables_with_the_reports_counts():
    found = lineage.of_step("upsert_teams", UPSERT, PLACE, CONTRACT, dry_run=False)
    assert [d.name for d in found.inputs] == [
        "league.etl.stage_teams",
        "league.etl.stage_schedule",
        "league.etl.stage_stats",
    ]
    outputs = named(found.outputs)
    assert stats(outputs["league.public.teams"]) == {"rowCount": 21, "inserted": 15, "updated": 2, "deactivated": 4}
    assert stats(outputs["league.public.schedule"]) == {
        "rowCount": 18,
        "inserted": 10,
        "updated": 1,
        "deleted": 7,
        "archived": 7,
    }
    assert stats(outputs["league.public.series"]) == {"rowCount": 3, "inserted": 2, "updated": 1}
    assert stats(outputs["league.etl_archive.schedule"]) == {"rowCount": 7, "inserted": 7}
    assert stats(outputs["league.etl_archive.series_stats"]) == {"rowCount": 4, "inserted": 4}
    assert stats(outputs["league.etl.rename_suspects"]) == {"rowCount": 1, "inserted": 1}
    # Section 4's columns, each from the stage's column it is filled from.
    stats_table = outputs["league.public.series_stats"]
    assert sources(stats_table, "lines_for") == [("league.etl.stage_stats", "lines_for")]
    assert sources(stats_table, "team_id") == [("league.etl.stage_stats", "team_key")]
    assert sources(outputs["league.public.teams"], "team_key") == [("league.etl.stage_teams", "team_key")]


def test_on_the_apps_database_the_apps_table_and_column_names(renamed):
    report = {**UPSERT, "adopted": {"teams": 496, "schedule": 4246, "series_stats": 496}}
    outputs = named(lineage.of_step("upsert_teams", report, PLACE, renamed, dry_run=False).outputs)
    assert {"league.public.club_teams", "league.public.matches", "league.public.standings"} <= set(outputs)
    assert not {"league.public.teams", "league.public.schedule", "league.public.series_stats"} & set(outputs)
    assert stats(outputs["league.public.club_teams"])["adopted"] == 496
    assert "league.etl_archive.matches" in outputs
    # The app's own columns: its league code is league_id, and league_name is filled from it too.
    leagues = outputs["league.public.leagues"]["facets"]["columnLineage"]["fields"]
    assert set(leagues) == {"league_id", "league_name"}
    assert sources(outputs["league.public.leagues"], "league_name") == [("league.etl.stage_teams", "league_code")]
    matches = outputs["league.public.matches"]["facets"]["columnLineage"]["fields"]
    assert {"home_team", "away_team", "home_team_id", "match_date"} <= set(matches) and "series_id" not in matches
    standings = outputs["league.public.standings"]
    assert sources(standings, "matches_won") == [("league.etl.stage_stats", "matches_won")]
    assert sources(standings, "team") == [("league.etl.stage_stats", "team_name")]
    # Columns written with the time of the write, or the pipeline's keys kept in etl, come from no field.
    assert (
        "created_at" not in matches
        and "team_key" not in outputs["league.public.club_teams"]["facets"]["columnLineage"]["fields"]
    )


def test_deduplicate_reads_only_what_it_scans_and_writes_what_it_removed():
    report = {
        "tables": {
            "teams": {"table": "teams", "plan": "enforced", "duplicates": 0, "unique_added": False},
            "users": {
                "table": "users",
                "plan": "delete",
                "rows_before": 24,
                "duplicates": 12,
                "archived": 12,
                "rows_after": 12,
                "repointed": {"polls.created_by": 12, "team_memberships: merged into an existing row": 2},
            },
            "clubs": {"table": "clubs", "plan": "none", "rows_before": 55, "duplicates": 0, "repointed": {}},
        }
    }
    found = lineage.of_step("deduplicate", report, PLACE, CONTRACT, dry_run=False)
    inputs = named(found.inputs)
    assert set(inputs) == {"league.public.users", "league.public.clubs"}  # an enforced key: not even read
    assert inputs["league.public.users"]["inputFacets"]["inputStatistics"]["rowCount"] == 24
    outputs = named(found.outputs)
    assert stats(outputs["league.public.users"]) == {"rowCount": 12, "deleted": 12, "archived": 12}
    assert stats(outputs["league.etl_archive.users"]) == {"rowCount": 12, "inserted": 12}
    assert stats(outputs["league.public.polls"]) == {"rowCount": 12, "updated": 12}
    assert stats(outputs["league.public.team_memberships"]) == {"rowCount": 2, "deleted": 2, "archived": 2}
    assert stats(outputs["league.etl_archive.team_memberships"]) == {"rowCount": 2, "inserted": 2}
    assert "league.public.clubs" not in outputs


def test_backup_reads_the_tables_it_copies_and_writes_the_backup():
    report = {
        "row_counts": {"teams": 537, "polls": 60, "captain_messages": 61},
        "copied": {"teams": 537, "polls.team_id": 60, "captain_messages.team_id": 61},
        "key_map": {"ids_added": 3, "reused_ids": [7, 9], "spellings_added": 4},
        "pruned_backups": 1,
    }
    found = lineage.of_step("backup", report, PLACE, APP, dry_run=False)
    assert {d.name: as_json(d)["inputFacets"]["inputStatistics"]["rowCount"] for d in found.inputs} == {
        "league.public.teams": 537,
        "league.public.polls": 60,
        "league.public.captain_messages": 61,
    }
    outputs = named(found.outputs)
    assert stats(outputs["league.etl.backup_teams"])["rowCount"] == 537
    assert stats(outputs["league.etl.backup_refs"])["rowCount"] == 121
    assert stats(outputs["league.etl.team_key_map"]) == {"rowCount": 9, "inserted": 5, "updated": 4}
    assert sources(outputs["league.etl.backup_refs"], "team_id") == [
        ("league.public.polls", "team_id"),
        ("league.public.captain_messages", "team_id"),
    ]
    # On the app's database a team's key is the pipeline's (etl), not a column of the app's teams.
    assert "team_key" not in outputs["league.etl.backup_teams"]["facets"]["columnLineage"]["fields"]


def test_restore_mapping_counts_rows_put_back_removed_archived_and_left():
    report = {
        "orphans": 70,
        "by_strategy": {"key_map": 60, "restored_team": 0, "content": 2, "user_context": 2, "quarantine": 6},
        "by_table": {
            "captain_messages": {"key_map": 30, "content": 2, "quarantine": 2},
            "polls": {"key_map": 30, "user_context": 2, "quarantine": 4},
        },
        "quarantined_rows_removed": {"captain_messages": 2},
        "merged_into_existing_rows": {"polls": 1},
        "archived_rows": {"captain_messages": 2, "polls": 5},
        "left_for_next_run": {"polls": 3},
        "key_map": {"ids_added": 0, "reused_ids": [], "spellings_added": 0},
    }
    outputs = named(lineage.of_step("restore_mapping", report, PLACE, CONTRACT, dry_run=False).outputs)
    assert stats(outputs["league.public.captain_messages"]) == {
        "rowCount": 34,
        "updated": 32,
        "deleted": 2,
        "archived": 2,
    }
    assert stats(outputs["league.public.polls"]) == {
        "rowCount": 33,
        "updated": 32,
        "deleted": 1,
        "archived": 5,
        "leftForNextRun": 3,
    }
    assert stats(outputs["league.etl_archive.polls"]) == {"rowCount": 5, "inserted": 5}
    assert {"league.etl.repairs", "league.etl.quarantine", "league.etl.team_key_map"} <= set(outputs)
    assert "league.public.teams" not in outputs  # no team was restored


HEALTH = {
    "status": "warn",
    "counts": {"ok": 6, "warn": 2, "error": 1},
    "problems": [
        {"check": "orphans", "subject": "polls.team_id", "figure": 2, "threshold": "0", "status": "error"},
        {"check": "quarantine", "subject": "etl.quarantine", "figure": 3, "threshold": "< 1", "status": "warn"},
        {"check": "freshness", "subject": "APTA_CHICAGO", "figure": 50.0, "threshold": "< 36 h", "status": "warn"},
    ],
    "figures": {
        "orphans:polls.team_id": 2,
        "orphans:schedule.home_team_id": 0,
        "constraint:series_stats_team_id_fkey": 0,
        "constraint:users_natural_key": 0,
        "reconcile:series_stats APTA_CHICAGO": 537,
        "rows:etl_archive.polls": 4,
        "quarantine:etl.quarantine": 3,
        "freshness:APTA_CHICAGO": 50.0,
        "duplicates:team_memberships": 0,
    },
}


def test_health_checks_are_assertions_on_the_tables_they_check(tmp_path):
    page = tmp_path / "health.html"
    page.write_text("<html></html>")
    found = lineage.of_step("health_check", {**HEALTH, "report_path": str(page)}, PLACE, CONTRACT, dry_run=False)
    checked = {
        d.name: {a["name"]: a for a in as_json(d)["inputFacets"]["dataQualityAssertions"]["assertions"]}
        for d in found.inputs
    }
    assert set(checked) == {
        "league.public.polls",
        "league.public.schedule",
        "league.public.series_stats",
        "league.public.users",
        "league.etl_archive.polls",
        "league.etl.quarantine",
        "league.etl.source_files",
        "league.public.team_memberships",
    }
    orphans = checked["league.public.polls"]["orphans:polls.team_id"]
    assert (orphans["assertion"], orphans["success"], orphans["column"], orphans["severity"]) == (
        "orphans",
        False,
        "team_id",
        "error",
    )
    assert orphans["actual"] == "2" and orphans["expected"] == "0"
    assert set(checked["league.public.series_stats"]) == {
        "constraint:series_stats_team_id_fkey",
        "reconcile:series_stats APTA_CHICAGO",
    }
    assert checked["league.public.series_stats"]["reconcile:series_stats APTA_CHICAGO"]["success"] is True
    assert checked["league.etl.source_files"]["freshness:APTA_CHICAGO"]["success"] is False
    every = [a for found in checked.values() for a in found.values()]
    assert len(every) == len(HEALTH["figures"])  # every check, once
    outputs = named(found.outputs)
    assert stats(outputs["league.etl.health_checks"])["rowCount"] == 9
    assert outputs[str(page)]["namespace"] == "file"
    assert outputs[str(page)]["outputFacets"]["outputStatistics"]["size"] == len("<html></html>")


def test_on_the_apps_database_checks_name_the_apps_tables(renamed):
    report = {"problems": [], "figures": {"reconcile:series_stats APTA_CHICAGO": 537, "duplicates:teams": 0}}
    found = lineage.of_step("health_check", report, PLACE, renamed, dry_run=False)
    assert {d.name for d in found.inputs} == {"league.public.standings", "league.public.club_teams"}


@pytest.mark.parametrize("step", ["validate_constraints", "upsert_teams", "health_check"])
def test_a_dry_run_says_so_and_names_no_output(step):
    report = {"validate_constraints": VALIDATE, "upsert_teams": UPSERT, "health_check": HEALTH}[step]
    found = lineage.of_step(step, report, PLACE, CONTRACT, dry_run=True)
    assert found.outputs == [] and found.inputs
    assert as_json(found.run_facets["leagueImport"])["dryRun"] is True
    wet = lineage.of_step(step, report, PLACE, CONTRACT, dry_run=False)
    assert wet.outputs and as_json(wet.run_facets["leagueImport"])["dryRun"] is False


def test_a_failed_step_names_no_output_but_the_health_checks_it_recorded():
    assert lineage.of_step("upsert_teams", UPSERT, PLACE, CONTRACT, dry_run=False, failed=True).outputs == []
    failed = lineage.of_step("health_check", HEALTH, PLACE, CONTRACT, dry_run=False, failed=True)
    assert [d.name for d in failed.outputs] == ["league.etl.health_checks"]
    assert any(not a.success for d in failed.inputs for a in d.inputFacets["dataQualityAssertions"].assertions)
    # At its start, or failed before it kept a report, a step names only itself.
    started = lineage.of_step("backup", None, None, None, dry_run=False)
    assert (started.inputs, started.outputs, list(started.run_facets)) == ([], [], ["leagueImport"])


def test_the_review_steps():
    asks = [{"item": "quarantine:1"}, {"item": "quarantine:2"}, {"item": "rename:5"}, {"item": "growth:3"}]
    found = lineage.of_step("collect_decisions", asks, PLACE, CONTRACT, dry_run=False)
    assert {d.name: as_json(d)["inputFacets"]["inputStatistics"]["rowCount"] for d in found.inputs} == {
        "league.etl.quarantine": 2,
        "league.etl.rename_suspects": 1,
        "league.etl.growth_alarms": 1,
    }
    assert stats(named(found.outputs)["league.etl.review_links"])["rowCount"] == 4
    asked = lineage.of_step("ask", None, None, None, dry_run=False)
    assert (asked.inputs, asked.outputs) == ([], [])
    # Each answer is applied by its own task, in one transaction.
    applied = lineage.of_step("apply", {"applied": {"rename:5": "team 9 merged into 3"}}, PLACE, APP, dry_run=False)
    assert {d.name for d in applied.outputs} == {
        "league.etl.decisions",
        "league.etl.rename_suspects",
        "league.public.teams",
        "league.etl.team_aliases",
    }
    growth = lineage.of_step("apply", {"applied": {"growth:3": "polls: accepted"}}, PLACE, APP, dry_run=False)
    assert {d.name for d in growth.outputs} == {"league.etl.decisions", "league.etl.growth_alarms"}
    # A refused answer rolled back: nothing written.
    report = {"applied": {"quarantine:1": "polls row 3: team_id set to 9"}}
    assert lineage.of_step("apply", report, PLACE, APP, dry_run=False, failed=True).outputs == []
    # The import's teardown counts what waits, and writes nothing.
    announced = lineage.of_step("announce_questions", {"quarantine": 2, "growth": 1}, PLACE, CONTRACT, dry_run=False)
    assert {d.name: as_json(d)["inputFacets"]["inputStatistics"]["rowCount"] for d in announced.inputs} == {
        "league.etl.quarantine": 2,
        "league.etl.rename_suspects": 0,
        "league.etl.growth_alarms": 1,
    }
    assert announced.outputs == []


def event_of(found: lineage.Lineage) -> dict:
    run = Run(runId="0191b0c8-6a4b-7f6e-8b8e-4c1d2e3f4a5b", facets=found.run_facets)
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-01-02T08:30:00+00:00",
        run=run,
        job=Job(namespace="default", name="league_import.upsert_teams"),
        producer="https://github.com/apache/airflow/tree/providers-openlineage/2.20.3",
        inputs=found.inputs,
        outputs=found.outputs,
    )
    return as_json(event)


def test_every_step_gives_an_event_its_schemas_accept_and_a_wrong_one_is_refused(tmp_path):
    page = tmp_path / "health.html"
    page.write_text("x")
    reports = {
        "validate_constraints": VALIDATE,
        "upsert_teams": UPSERT,
        "health_check": {**HEALTH, "report_path": str(page)},
        "collect_decisions": [{"item": "rename:5"}],
    }
    for step, report in reports.items():
        assert problems(event_of(lineage.of_step(step, report, PLACE, APP, dry_run=False))) == [], step
    good = event_of(lineage.of_step("upsert_teams", UPSERT, PLACE, APP, dry_run=False))
    wrong = {
        "a count as text": lambda e: e["outputs"][0]["outputFacets"]["outputStatistics"].update(rowCount="5"),
        "a facet without its producer": lambda e: e["run"]["facets"]["leagueImport"].pop("_producer"),
        "dryRun as text": lambda e: e["run"]["facets"]["leagueImport"].update(dryRun="no"),
        "a change count as text": lambda e: e["outputs"][3]["outputFacets"][lineage.ROW_CHANGES].update(inserted="1"),
        "a column from no field": lambda e: e["outputs"][3]["facets"]["columnLineage"]["fields"]["team_name"].pop(
            "inputFields"
        ),
        "a facet of unknown schema": lambda e: e["run"]["facets"]["leagueImport"].update(
            _schemaURL="https://example.invalid/Facet.json"
        ),
        "no event time": lambda e: e.pop("eventTime"),
    }
    for what, damage in wrong.items():
        event = copy.deepcopy(good)
        damage(event)
        assert problems(event), what


def test_the_custom_facets_json_schemas_name_what_the_classes_write():
    for cls in (lineage.LeagueImportRunFacet, lineage.RowChangesOutputDatasetFacet):
        url = cls._get_schema()
        name = url.rsplit("/", 1)[-1]
        schema = json.loads((REPO / "include" / "openlineage" / f"{name}.json").read_text())
        assert schema["$id"] == url.partition("#")[0]
        declared = set(schema["$defs"][name]["allOf"][1]["properties"])
        assert declared == {f.name for f in cls.__attrs_attrs__ if not f.name.startswith("_")}
