"""The incremental upsert against a real PostgreSQL: ids preserved, nothing rewritten needlessly."""

from __future__ import annotations

import pytest
from helpers import DEMO_DATA, LEAGUE, copy_demo, read, snapshot, team_ids, write

from league_import.constraints import check_constraints
from league_import.schema import ensure_schema
from league_import.sources import SCHEDULE_FILE, STATS_FILE, SourceError, read_leagues
from league_import.upsert import DeactivationGuardError, check_deactivation_guard, load_league


def run_import(conn, source_dir=DEMO_DATA, ratio=0.2, dry_run=False) -> dict:
    """What upsert_teams does: read everything, guard, then one transaction per league."""
    ensure_schema(conn)
    check_constraints(conn)
    leagues = read_leagues(source_dir, [])
    check_deactivation_guard(conn, leagues, ratio)
    return {lg.code: load_league(conn, lg, dry_run=dry_run) for lg in leagues}


def scalar(conn, query, *args):
    value = conn.execute(query, args).fetchone()[0]
    conn.rollback()
    return value


def test_first_import_of_the_real_season(conn):
    report = run_import(conn)[LEAGUE]
    assert report["teams_created"] == 537 and report["teams_deactivated"] == 0
    assert scalar(conn, "SELECT count(*) FROM teams WHERE is_active") == 537
    assert scalar(conn, "SELECT count(*) FROM series") == 53
    assert scalar(conn, "SELECT count(*) FROM schedule") == 4931
    assert scalar(conn, "SELECT count(*) FROM series_stats") == 537
    missing = "SELECT count(*) FROM schedule WHERE location <> 'BYE' AND (home_team_id IS NULL OR away_team_id IS NULL)"
    assert scalar(conn, missing) == 0
    assert scalar(conn, "SELECT count(*) FROM schedule WHERE location = 'BYE' AND away_team_id IS NOT NULL") == 2
    # Every schedule row's teams play in the row's series.
    wrong = """SELECT count(*) FROM schedule sc JOIN teams h ON h.id = sc.home_team_id
               JOIN teams a ON a.id = sc.away_team_id
               WHERE h.series_id <> sc.series_id OR a.series_id <> sc.series_id"""
    assert scalar(conn, wrong) == 0


def test_clubs_and_spellings(conn):
    run_import(conn)
    club = """SELECT c.name FROM teams t JOIN clubs c ON c.id = t.club_id WHERE t.team_name = %s"""
    assert scalar(conn, club, "Hinsdale PC II - 9 SW") == "Hinsdale PC"
    assert scalar(conn, club, "Glenbrook RC 1") == "Glenbrook RC"
    wilmette = "SELECT count(DISTINCT t.id) FROM teams t WHERE t.team_name IN ('Wilmette PD I 11', 'Wilmette PD II 11')"
    assert scalar(conn, wilmette) == 2
    # The schedule's "Butterfield 15 SW" is the stats' "Butterfield - 15 SW": one team, one id.
    butterfield = """SELECT count(DISTINCT id) FROM (
        SELECT home_team_id AS id FROM schedule sc JOIN series s ON s.id = sc.series_id
        WHERE s.series_key = '15 SW' AND home_team_id IN (SELECT id FROM teams WHERE club_id =
              (SELECT id FROM clubs WHERE name = 'Butterfield'))) x"""
    assert scalar(conn, butterfield) == 1


def test_second_run_keeps_every_id_and_rewrites_nothing(conn):
    run_import(conn)
    before = snapshot(conn)
    xmins = conn.execute("SELECT array_agg(xmin::text ORDER BY id) FROM teams").fetchone()[0]
    conn.rollback()
    report = run_import(conn)[LEAGUE]
    assert report["teams_created"] == 0 and report["teams_updated"] == 0 and report["teams_unchanged"] == 537
    assert report["schedule_created"] == report["schedule_updated"] == report["schedule_deleted"] == 0
    assert report["stats_written"] == report["stats_deleted"] == 0
    assert snapshot(conn) == before
    assert conn.execute("SELECT array_agg(xmin::text ORDER BY id) FROM teams").fetchone()[0] == xmins


def new_season(tmp_path):
    """The next season: two teams move series, three leave, one joins, one changes spelling."""
    src = copy_demo(tmp_path)
    stats, schedule = read(src, STATS_FILE), read(src, SCHEDULE_FILE)
    leaving = {"Winnetka 1", "Skokie 11", "Glen View 1"}
    moved = {"Birchwood 11": ("Series 3", "Birchwood 3"), "Tennaqua 11": ("Series 12", "Tennaqua 12")}
    gone = leaving | set(moved)
    stats = [r for r in stats if r["team"] not in leaving]
    for r in stats:
        if r["team"] in moved:
            r["series"], r["team"] = moved[r["team"]]
        if r["team"] == "Butterfield - 15 SW":  # same team, the schedule's spelling now
            r["series"], r["team"] = "Series 15 SW", "Butterfield 15 SW"
    stats.append(dict(stats[0], series="Series 2", team="Midlothian 2"))
    schedule = [r for r in schedule if r["home_team"] not in gone and r["away_team"] not in gone]
    write(src, STATS_FILE, stats)
    write(src, SCHEDULE_FILE, schedule)
    return src


def test_season_change_keeps_persisting_ids(conn, tmp_path):
    run_import(conn)
    before = team_ids(conn)
    report = run_import(conn, new_season(tmp_path))[LEAGUE]
    after = team_ids(conn)
    assert report["teams_created"] == 3  # Birchwood 3, Tennaqua 12, Midlothian 2
    assert report["teams_deactivated"] == 5  # three left, two moved away from their series
    for key, team_id in before.items():
        assert after[key] == team_id  # nothing re-keyed, nothing deleted
    assert scalar(conn, "SELECT is_active FROM teams WHERE team_name = 'Winnetka 1'") is False
    assert scalar(conn, "SELECT is_active FROM teams WHERE team_name = 'Birchwood 3'") is True
    assert scalar(conn, "SELECT count(*) FROM teams") == 540
    assert scalar(conn, "SELECT count(*) FROM teams WHERE is_active") == 535
    butterfield = before[("15 SW", "butterfield")]
    assert scalar(conn, "SELECT team_name FROM teams WHERE id = %s", butterfield) == "Butterfield 15 SW"
    # Stats follow the teams; the departed teams' rows are gone from the ETL-owned table.
    assert scalar(conn, "SELECT count(*) FROM series_stats") == 535


def test_returning_team_is_reactivated_under_its_old_id(conn, tmp_path):
    run_import(conn)
    old = team_ids(conn)[("1", "winnetka")]
    run_import(conn, new_season(tmp_path))
    report = run_import(conn)[LEAGUE]  # the original season again
    assert report["teams_created"] == 0
    assert scalar(conn, "SELECT is_active FROM teams WHERE id = %s", old) is True
    assert scalar(conn, "SELECT count(*) FROM teams WHERE is_active") == 537


def test_guard_fails_before_any_write(conn, tmp_path):
    run_import(conn)
    src = copy_demo(tmp_path)
    stats = read(src, STATS_FILE)
    write(src, STATS_FILE, stats[:400])  # 137 of 537 teams leave: 26 %
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    before = snapshot(conn)
    with pytest.raises(DeactivationGuardError, match=r"deactivate 137 of 537 .* max_deactivation_ratio=0.2"):
        run_import(conn, src, ratio=0.2)
    assert snapshot(conn) == before
    report = run_import(conn, src, ratio=1.0)[LEAGUE]
    assert report["teams_deactivated"] == 137


def test_guard_rejects_a_ratio_outside_0_1(conn):
    with pytest.raises(SourceError, match="param max_deactivation_ratio: 1.5 is not between 0 and 1"):
        run_import(conn, ratio=1.5)


def test_dry_run_writes_nothing_but_reports(conn, tmp_path):
    run_import(conn)
    before = snapshot(conn)
    report = run_import(conn, new_season(tmp_path), dry_run=True)[LEAGUE]
    assert report["teams_created"] == 3 and report["teams_deactivated"] == 5
    assert snapshot(conn) == before


def test_failure_midway_rolls_the_league_back(conn, tmp_path, monkeypatch):
    run_import(conn)
    before = snapshot(conn)
    import league_import.upsert as upsert

    real = upsert.statements("upsert")
    broken = {**real, "upsert_stats": "SELECT 1/0"}
    monkeypatch.setattr(upsert, "statements", lambda family: broken)
    season = new_season(tmp_path)
    with pytest.raises(Exception, match="division by zero"):
        run_import(conn, season)
    assert snapshot(conn) == before
    monkeypatch.undo()
    assert run_import(conn, season)[LEAGUE]["teams_created"] == 3
