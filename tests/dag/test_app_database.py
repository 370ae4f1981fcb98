"""The DAG on the app's own database (CONTRACT section 7, issue 20's acceptance): a database the
app's older importer filled for years is adopted, every id it has kept; three nights, the old
system's churn with a restarted id sequence, and a new season later, every row of every table
that points at teams is on its real team, and the app's practices in schedule are untouched."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from helpers import CONF, FRESH_DEMO, LEAGUE, copy_demo, one, q, read, write

from league_import import app_demo, cli, target
from league_import.sources import SCHEDULE_FILE, read_leagues
from league_import.targetplan import make_plan

pytestmark = pytest.mark.dag

USERS = 40  # the first teams' users, each with a row in every referencing table and a practice


@pytest.fixture
def old_app(db_uri, monkeypatch):
    """The app's schema as its old importer and its users left it; the app's mapping configured."""
    app_demo.load_schema(db_uri)
    monkeypatch.setenv("LEAGUE_IMPORT_TARGET", str(app_demo.APP_MAPPING))
    with psycopg.connect(db_uri) as conn:
        app_demo.fill_like_old_importer(conn, FRESH_DEMO)
        app_demo.add_user_rows(conn, USERS)
    return db_uri


def latest(conn) -> dict:
    found = conn.execute("SELECT status, report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()
    conn.rollback()
    return {"status": found[0], **found[1]}


def user_team_ids(conn) -> dict:
    """Every referencing row's team id (the pipeline's own matches and standings aside)."""
    out = {}
    for table, column in app_demo.team_references(conn):
        if table in ("schedule", "series_stats"):
            continue
        row = "user_id" if table == "user_contexts" else "id"
        for key, team in q(conn, f"SELECT {row}::text, {column} FROM {table}"):
            out[(table, column, key)] = team
    return out


def new_season(tmp_path):
    """Next season's files: every match a year later."""
    src = copy_demo(tmp_path)
    schedule = read(src, SCHEDULE_FILE)
    for r in schedule:
        r["date"] = (datetime.strptime(r["date"], "%m/%d/%Y") + timedelta(days=364)).strftime("%m/%d/%Y")
    write(src, SCHEDULE_FILE, schedule)
    return src


def test_the_apps_database_is_adopted_and_every_row_stays_on_its_real_team(league_dag, old_app, tmp_path, capsys):
    with psycopg.connect(old_app) as conn:
        teams_before = dict(q(conn, "SELECT id, team_name FROM teams"))
        rows_before = user_team_ids(conn)
        placed = app_demo.placement(conn)
        practices = app_demo.practices(conn)
        counted = {t: one(conn, f"SELECT count(*) FROM {t}") for t, _ in app_demo.team_references(conn)}
        assert len(app_demo.team_references(conn)) == 18 and len({t for t, _ in app_demo.team_references(conn)}) == 14
        assert all(counted.values()), counted  # rows in every one of the 14 referencing tables
        assert len(practices) == USERS

        # What adoption will match, read first; then the plan made.
        check = make_plan(conn, target.load(app_demo.APP_MAPPING), read_leagues(FRESH_DEMO, []))
    assert check.adoption["teams_adopted"] == len(teams_before) == 496
    assert check.adoption["teams_created"] == 41 and check.adoption["teams_left_as_they_are"] == 0
    assert check.adoption["matches_left_to_the_app"] == USERS  # the app's practices, not taken for matches
    assert cli.main(["target", "apply"]) == 0
    capsys.readouterr()

    # Night 1: every existing team adopted under its id, the refused sub-teams created.
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(old_app) as conn:
        report = latest(conn)
        adopted = report["upsert_teams"]["adopted"]
        # What check said adoption would match is what the run adopted.
        assert adopted["teams"] == check.adoption["teams_adopted"]
        assert adopted["schedule"] == check.adoption["matches_adopted"] == 4931 - 685
        assert adopted["series_stats"] == check.adoption["standings_adopted"] == 496
        teams_after = dict(q(conn, "SELECT id, team_name FROM teams"))
        assert {i: teams_after[i] for i in teams_before} == teams_before  # 0 team ids changed
        assert len(teams_after) - len(teams_before) == 41
        names = {n for (n,) in q(conn, "SELECT team_name FROM teams WHERE id NOT IN (SELECT unnest(%s::int[]))", list(teams_before))}
        assert {"Wilmette PD II 11", "Wilmette PD I 11"} & names
        assert user_team_ids(conn) == rows_before  # 0 user rows moved
        assert app_demo.practices(conn) == practices
        assert one(conn, "SELECT count(*) FROM schedule") == 4931 + USERS  # matches adopted, not duplicated
        assert one(conn, "SELECT count(*) FROM series_stats") == 537
        health = report["health_check"]["figures"]
        orphan_checks = [k for k in health if k.startswith("orphans:")]
        assert len(orphan_checks) == 18 and not any(health[k] for k in orphan_checks)

    # Night 2: the same files change nothing.
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(old_app) as conn:
        counts = latest(conn)["upsert_teams"]["leagues"][LEAGUE]
        assert counts["teams_created"] == counts["teams_updated"] == counts["teams_deactivated"] == 0
        assert counts["schedule_created"] == counts["schedule_updated"] == counts["schedule_deleted"] == 0

        # The old system's churn: every team deleted and re-inserted, the id sequence restarted.
        app_demo.restart_identity_churn(conn)
        moved = sum(1 for k, v in user_team_ids(conn).items() if rows_before.get(k) != v)
        assert moved == 0  # the ids stayed on the rows: they now name other teams
        assert app_demo.placement(conn) != placed

    # Night 3: every row back on its real team, or quarantined; the practices only re-pointed.
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(old_app) as conn:
        report = latest(conn)
        assert app_demo.placement(conn) == placed
        assert one(conn, "SELECT count(*) FROM etl.quarantine WHERE resolved_at IS NULL") == 0
        assert report["restore_mapping"]["by_strategy"]["key_map"] == len(placed)
        assert app_demo.practices(conn) == practices  # all but their team id, which is repaired
        assert not any(app_demo.orphans_per_table(conn).values())
        for table in counted:  # no user row lost
            if table not in ("schedule", "series_stats"):
                assert one(conn, f"SELECT count(*) FROM {table}") == counted[table]

    # A new season (dates a year on): the guard asks for the raised ratio; rows stay on their teams.
    season = new_season(tmp_path)
    assert league_dag.test(run_conf={**CONF, "source_dir": str(season), "max_deactivation_ratio": 1.0}).state == "success"
    with psycopg.connect(old_app) as conn:
        assert app_demo.placement(conn) == placed
        assert app_demo.practices(conn) == practices
        report = latest(conn)
        counts = report["upsert_teams"]["leagues"][LEAGUE]
        assert counts["schedule_created"] == counts["schedule_deleted"] == 4931
        archived = one(conn, "SELECT count(*) FROM etl_archive.schedule WHERE reason = 'left_sources'")
        assert archived >= 4931
        assert json.dumps(report["health_check"]["status"]) == '"ok"'


OLDER = Path(__file__).resolve().parents[1] / "data"


def test_an_older_state_of_the_app_series_linked_display_names_and_triggers(league_dag, db_uri, monkeypatch):
    """The mapping expresses an older schema: series tied to leagues by a link table, required
    display names filled from the record, the app's triggers listed. One series the old importer
    never wrote is created, linked to its league."""
    app_demo.load_schema(db_uri)
    with psycopg.connect(db_uri) as conn:
        app_demo.fill_like_old_importer(conn, FRESH_DEMO)
        app_demo.add_user_rows(conn, USERS)
        gone = "Series 38"  # its teams, matches and standings were never written by the old importer
        of_series = "(SELECT t.id FROM teams t JOIN series s ON s.id = t.series_id WHERE s.name = %(s)s)"
        referencing = [t for t, c in app_demo.team_references(conn) if c == "team_id"]
        for statement in (
            f"DELETE FROM schedule WHERE home_team_id IN {of_series} OR away_team_id IN {of_series}",
            "DELETE FROM series_stats WHERE series = %(s)s",
            f"DELETE FROM {{}} WHERE team_id IN {of_series}",
            "DELETE FROM teams WHERE series_id = (SELECT id FROM series WHERE name = %(s)s)",
            "DELETE FROM series WHERE name = %(s)s",
        ):
            tables = referencing if "{}" in statement else [None]
            for table in tables:
                conn.execute(statement.format(table) if table else statement, {"s": gone})
        conn.execute((OLDER / "league_app_older.sql").read_text())
        conn.commit()
        teams_before = dict(q(conn, "SELECT id, team_name FROM teams"))
        placed = app_demo.placement(conn)
    monkeypatch.setenv("LEAGUE_IMPORT_TARGET", str(OLDER / "league_app_older.toml"))
    assert cli.main(["target", "apply"]) == 0

    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        teams = dict(q(conn, "SELECT id, team_name FROM teams"))
        assert {i: teams[i] for i in teams_before} == teams_before
        assert one(conn, "SELECT count(*) FROM teams WHERE display_name IS DISTINCT FROM team_name") == 0
        linked = q(
            conn,
            "SELECT s.display_name, l.league_id FROM series s JOIN series_leagues l ON l.series_id = s.id "
            "WHERE s.name = %s",
            gone,
        )
        assert linked == [(gone, 1)]
        assert one(conn, "SELECT count(*) FROM teams t JOIN series s ON s.id = t.series_id WHERE s.name = %s", gone) > 0
        assert app_demo.placement(conn) == placed
        app_demo.restart_identity_churn(conn)

    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        assert app_demo.placement(conn) == placed
        assert latest(conn)["health_check"]["status"] == "ok"
