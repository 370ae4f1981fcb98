"""The target mapping on the app's own schema (include/targets/league_app.schema.sql, a copy of
../shared/app/schema.sql loaded with psql): validated whole, planned by `target check`, made by
`target apply`, and refused by validate_constraints until it is."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from helpers import FRESH_DEMO, one, q

from league_import import app_demo, cli, steps, target
from league_import.errors import ConfigError, SourceError
from league_import.sources import read_leagues
from league_import.targetplan import apply, make_plan

MAPPING = app_demo.APP_MAPPING


@pytest.fixture
def run_cli(capsys):
    """`league-import ARGS` as an operator runs it: (exit code, what it printed)."""

    def run(args: list[str]) -> tuple[int, str]:
        code = cli.main(args)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


@pytest.fixture
def app_db(db_uri, monkeypatch):
    """An empty database with the app's schema, the app's mapping configured."""
    app_demo.load_schema(db_uri)
    monkeypatch.setenv("LEAGUE_IMPORT_TARGET", str(MAPPING))
    return db_uri


def mapping_with(tmp_path: Path, old: str, new: str) -> Path:
    text = MAPPING.read_text()
    assert old in text, old
    path = tmp_path / "mapping.toml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ('team_name = "team_name"', 'team_name = "team_nam"', "[teams.columns] team_name: 'team_nam' is not a field"),
        ('league_name = "code"', "", "[leagues.columns]: public.leagues.league_name is NOT NULL without a default"),
        ('location = "location"', 'locaton = "location"', "[schedule.columns] locaton: public.schedule has no column"),
        ('table = "series_stats"', 'table = "series_stat"', "[series_stats] table: public.series_stat does not exist"),
        ('updated_at = "time written"\n\n[clubs]', 'updated_at = "code"\n\n[clubs]', "[leagues.columns] updated_at: public.leagues.updated_at is timestamp with time zone, which cannot hold 'code'"),
        ('lacks = ["series_id"]', 'lacks = ["series_id", "match_date"]', "[schedule] lacks: 'match_date' cannot"),
        ('owner = "app"', 'owner = "ours"', "[owner]"),
        ('user = "user_id"', 'user = "member_id"', "[user_data.memberships] public.user_contexts has no column member_id"),
    ],
)
def test_a_broken_mapping_names_its_key(app_db, tmp_path, old, new, named):
    path = mapping_with(tmp_path, old, new)
    with pytest.raises(ConfigError) as failed, psycopg.connect(app_db) as conn:
        chosen = target.load(path)
        problems = chosen.verify(conn.cursor())
        if problems:
            raise ConfigError("\n".join(problems))
    assert named in str(failed.value)


def test_every_problem_of_a_mapping_is_named_at_once(tmp_path):
    path = mapping_with(tmp_path, 'team_name = "team_name"', 'team_name = "team_nam"')
    path.write_text(path.read_text().replace('location = "location"', 'location = "place"'))
    with pytest.raises(ConfigError) as failed:
        target.load(path)
    assert "[teams.columns] team_name: 'team_nam'" in str(failed.value)
    assert "[schedule.columns] location: 'place'" in str(failed.value)


def test_an_undeclared_trigger_is_a_problem_and_a_declared_one_is_not(app_db, tmp_path):
    with psycopg.connect(app_db) as conn:
        conn.execute(
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;"
            "CREATE TRIGGER teams_touch BEFORE UPDATE ON teams FOR EACH ROW EXECUTE FUNCTION touch()"
        )
        conn.commit()
        assert "[teams] triggers: public.teams has trigger teams_touch" in "\n".join(
            target.load(MAPPING).verify(conn.cursor())
        )
        declared = mapping_with(tmp_path, '[teams]\ntable = "teams"', '[teams]\ntable = "teams"\ntriggers = ["teams_touch"]')
        assert target.load(declared).verify(conn.cursor()) == []


def test_check_plans_the_schemas_and_the_constraint_and_names_the_teams_it_refuses(app_db, run_cli):
    code, out = run_cli(["target", "check", "--source-dir", str(FRESH_DEMO), "--json"])
    assert code == 0, out
    plan = json.loads(out)
    assert plan["problems"] == [] and plan["conflicts"] == []
    assert any("create the pipeline's own schemas etl and etl_archive" in c for c in plan["changes"])
    (replace,) = [c for c in plan["changes"] if c.startswith("replace unique_team_club_series_league")]
    assert "with UNIQUE (league_id, series_id, team_name)" in replace
    # Every sub-team the app's one-team-per-club-and-series key refuses, named with its record.
    refused = [c for c in plan["resolved"] if "refuses team 'Wilmette PD I 11'" in c]
    assert refused and "series_stats.json: record 116" in refused[0] and "target apply` replaces it" in refused[0]
    assert "as team 'Wilmette PD II 11' (" in refused[0] and "series_stats.json: record 114)" in refused[0]
    assert plan["adoption"]["teams_created"] == 537  # an empty app: every team is new
    with psycopg.connect(app_db) as conn:  # read-only: nothing of the pipeline's exists yet
        assert one(conn, "SELECT to_regnamespace('etl') IS NULL")
        assert "(club_id, series_id, league_id)" in one(
            conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'unique_team_club_series_league'",
        )


def test_apply_makes_the_plan_in_one_go_and_twice_changes_nothing(app_db, run_cli):
    code, out = run_cli(["target", "apply"])
    assert code == 0, out
    assert "recorded in etl.target_changes" in out
    with psycopg.connect(app_db) as conn:
        changes = q(conn, "SELECT change, applied_by FROM etl.target_changes ORDER BY id")
        assert len(changes) == 2 and all(by.startswith("cli:") for _, by in changes)
        definition = one(
            conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'unique_team_club_series_league'",
        )
        assert definition == "UNIQUE (league_id, series_id, team_name)"
        columns = q(conn, "SELECT table_name, count(*) FROM information_schema.columns WHERE table_schema = 'public' GROUP BY 1")
    code, out = run_cli(["target", "apply"])
    assert (code, out.strip()) == (0, "nothing to change: every change is applied")
    code, out = run_cli(["target", "check", "--json"])
    assert json.loads(out)["changes"] == []
    with psycopg.connect(app_db) as conn:  # no column was added to any of the app's tables
        after = q(conn, "SELECT table_name, count(*) FROM information_schema.columns WHERE table_schema = 'public' GROUP BY 1")
        assert sorted(after) == sorted(columns) and len(after) == 33
        assert one(conn, "SELECT count(*) FROM etl.target_changes") == 2


def test_a_run_before_apply_fails_first_naming_the_command(app_db, run_cli):
    with psycopg.connect(app_db) as conn:
        with pytest.raises(ConfigError, match="run `league-import target apply`"):
            from league_import.schema import ensure_schema

            ensure_schema(conn)
    run_cli(["target", "apply"])
    with psycopg.connect(app_db) as conn:  # a change the mapping asks for, undone by someone
        conn.execute(
            "ALTER TABLE teams DROP CONSTRAINT unique_team_club_series_league, "
            "ADD CONSTRAINT unique_team_club_series_league UNIQUE (club_id, series_id, league_id)"
        )
        conn.commit()
        with pytest.raises(ConfigError, match="changes not applied yet: replace unique_team_club_series_league"):
            steps.validate(conn, "r1", source_dir=str(FRESH_DEMO), leagues=[], dry_run=False)
        assert one(conn, "SELECT count(*) FROM teams") == 0


def test_a_constraint_the_mapping_does_not_resolve_is_refused_before_the_first_write(app_db, tmp_path, monkeypatch, run_cli):
    keep = mapping_with(
        tmp_path,
        '[teams.constraints.unique_team_club_series_league]\nreplace_with = ["league_id", "series_id", "team_name"]',
        "",
    )
    monkeypatch.setenv("LEAGUE_IMPORT_TARGET", str(keep))
    assert run_cli(["target", "apply"])[0] == 0
    with psycopg.connect(app_db) as conn:
        with pytest.raises(SourceError) as refused:
            steps.validate(conn, "r1", source_dir=str(FRESH_DEMO), leagues=[], dry_run=False)
        message = str(refused.value)
        assert "conflicts between the files and the target's constraints, nothing was written" in message
        assert "constraint unique_team_club_series_league UNIQUE (club_id, series_id, league_id)" in message
        assert "refuses team 'Wilmette PD I 11'" in message and "series_stats.json: record 116" in message
        assert one(conn, "SELECT count(*) FROM teams") == 0
        assert one(conn, "SELECT count(*) FROM etl.stage_teams") == 0


def test_a_column_too_short_for_the_files_is_refused_naming_the_record(app_db, run_cli):
    run_cli(["target", "apply"])
    with psycopg.connect(app_db) as conn:
        conn.execute("ALTER TABLE teams ALTER COLUMN team_name TYPE varchar(20)")
        conn.commit()
        plan = make_plan(conn, target.load(MAPPING), read_leagues(FRESH_DEMO, []))
        with pytest.raises(SourceError, match="varchar"):
            steps.validate(conn, "r1", source_dir=str(FRESH_DEMO), leagues=[], dry_run=False)
    (long,) = [c for c in plan.conflicts if "'Barrington Hills CC 11'" in c]
    assert "series_stats.json: record" in long and "is 22 characters, more than public.teams.team_name" in long


def test_apply_adds_a_declared_key_after_archiving_its_duplicates(app_db, tmp_path, monkeypatch, run_cli):
    with psycopg.connect(app_db) as conn:
        conn.execute(
            "CREATE TABLE practice_times (id serial PRIMARY KEY, team_id integer REFERENCES teams(id), "
            "day_of_week text NOT NULL, start_time time NOT NULL, end_time time NOT NULL, location text)"
        )
        conn.execute(
            "INSERT INTO practice_times (day_of_week, start_time, end_time, location) "
            "SELECT 'Tue', '18:00', '19:00', 'Court 1' FROM generate_series(1, 5)"
        )
        conn.commit()
    declared = mapping_with(
        tmp_path,
        "[user_data.team_columns]",
        '[user_data.keys]\npractice_times = { columns = ["team_id", "day_of_week", "start_time", "end_time", '
        '"location"] }\n\n[user_data.team_columns]',
    )
    monkeypatch.setenv("LEAGUE_IMPORT_TARGET", str(declared))
    code, out = run_cli(["target", "check", "--json"])
    (change,) = [c for c in json.loads(out)["changes"] if "practice_times_natural_key" in c]
    assert "archiving 4 duplicate rows first" in change
    with psycopg.connect(app_db) as conn:
        assert one(conn, "SELECT count(*) FROM practice_times") == 5  # check changed nothing
    assert run_cli(["target", "apply"])[0] == 0
    with psycopg.connect(app_db) as conn:
        assert one(conn, "SELECT count(*) FROM practice_times") == 1
        assert one(conn, "SELECT count(*) FROM etl_archive.practice_times") == 4
        assert one(conn, "SELECT count(*) FROM pg_constraint WHERE conname = 'practice_times_natural_key'") == 1
    assert run_cli(["target", "apply"])[1].strip() == "nothing to change: every change is applied"


def test_an_apply_that_fails_midway_leaves_nothing(app_db, monkeypatch):
    """One transaction: a change that fails takes the others (the schemas) back with it."""
    with psycopg.connect(app_db) as conn:
        chosen = target.load(MAPPING)
        monkeypatch.setattr("league_import.targetplan._constraint_changes", _failing_change)
        with pytest.raises(psycopg.Error):
            apply(conn, chosen, by="test")
        conn.rollback()
        assert one(conn, "SELECT to_regnamespace('etl') IS NULL")


def _failing_change(cur, target):
    from psycopg import sql

    from league_import.targetplan import Change

    return [Change("a change that fails", [sql.SQL("ALTER TABLE teams DROP CONSTRAINT no_such_constraint")])]


def test_renamed_tables_and_columns_are_only_other_names(db_uri, tmp_path, monkeypatch, run_cli):
    """The same app with its teams table and two columns renamed: a mapping naming them adopts
    and loads it as it does the app's own names."""
    from helpers import night

    app_demo.load_schema(db_uri)
    with psycopg.connect(db_uri) as conn:
        app_demo.fill_like_old_importer(conn, FRESH_DEMO)
        conn.execute("ALTER TABLE teams RENAME TO league_teams")
        conn.execute("ALTER TABLE league_teams RENAME COLUMN team_name TO display")
        conn.execute("ALTER TABLE schedule RENAME COLUMN location TO venue")
        conn.commit()
        before = dict(q(conn, "SELECT id, display FROM league_teams"))
    text = MAPPING.read_text()
    for old, new in (
        ('[teams]\ntable = "teams"', '[teams]\ntable = "league_teams"'),
        ('team_name = "team_name"', 'display = "team_name"'),
        ('location = "location"', 'venue = "location"'),
        ('replace_with = ["league_id", "series_id", "team_name"]', 'replace_with = ["league_id", "series_id", "display"]'),
    ):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "renamed.toml"
    path.write_text(text)
    monkeypatch.setenv("LEAGUE_IMPORT_TARGET", str(path))
    code, out = run_cli(["target", "apply"])
    assert code == 0, out
    with psycopg.connect(db_uri) as conn:
        checks = night(conn, "renamed-1")
        assert [c for c in checks if c.status == "error"] == []
        after = dict(q(conn, "SELECT id, display FROM league_teams"))
        assert {i: after[i] for i in before} == before and len(after) == 537
        assert q(conn, "SELECT home_team, away_team, venue FROM schedule WHERE venue IS NULL") == []
        assert one(conn, "SELECT count(*) FROM etl.state_teams") == 537
