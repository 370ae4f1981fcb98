"""The incremental upsert against a real PostgreSQL: ids kept, only what changed written, all or nothing.

Users' rows point at team ids, and the app reads the league tables while the import runs: an id
must survive every import, an unchanged night must not touch a row, and a failed night must
leave the database as it found it.
"""

from __future__ import annotations

import json
import shutil
from datetime import date

import psycopg
import pytest
from helpers import DATA_TABLES, FRESH_DEMO, LEAGUE, archived, copy_demo, one, q, read, snapshot, team_ids, write

from league_import import history, steps
from league_import.errors import GuardError, SourceError
from league_import.identity import parse_label
from league_import.runs import finish_run
from league_import.schema import ensure_schema
from league_import.sources import SCHEDULE_FILE, STATS_FILE


@pytest.fixture
def db(conn):
    ensure_schema(conn)
    return conn


def load(conn, run_id, source=FRESH_DEMO, ratio=0.2, dry_run=False) -> dict:
    """validate_constraints then upsert_teams, as the DAG runs them; the run closed after."""
    steps.validate(conn, run_id, source_dir=str(source), leagues=[], dry_run=dry_run)
    report = steps.upsert(conn, run_id, max_ratio=ratio, dry_run=dry_run)
    finish_run(conn, run_id, "success")
    return report


def xmins(conn) -> dict[str, dict[int, str]]:
    """Every row's xmin, per table: any write to a row (even of equal values) changes it."""
    return {t: dict(q(conn, f"SELECT id, xmin::text FROM {t}")) for t in DATA_TABLES}


def sequences(conn) -> dict[str, tuple]:
    out = {}
    for table in DATA_TABLES:
        name = one(conn, "SELECT pg_get_serial_sequence(%s, 'id')", f"public.{table}")
        out[table] = q(conn, f"SELECT last_value, is_called FROM {name}")[0]
    return out


def schedule_rows(conn) -> dict[tuple, tuple]:
    """(series, date, home, away) -> (id, time, location)."""
    rows = q(
        conn,
        "SELECT series_id, match_date, home_team_id, away_team_id, id, match_time, location FROM schedule",
    )
    return {r[:4]: r[4:] for r in rows}


def stats_ids(conn) -> dict[int, int]:
    return dict(q(conn, "SELECT team_id, id FROM series_stats"))


def team_id(conn, series_key, team_key) -> int:
    return team_ids(conn)[(series_key, team_key)]


def drop_series(src, share: float) -> int:
    """Remove whole series from both files until more than `share` of the teams are gone;
    returns how many teams left."""
    stats, schedule = read(src, STATS_FILE), read(src, SCHEDULE_FILE)
    sizes: dict[str, int] = {}
    for r in stats:
        key = parse_label(r["series"]).key
        sizes[key] = sizes.get(key, 0) + 1
    gone, leaving = set(), 0
    for key, size in sorted(sizes.items()):
        if leaving > share * len(stats):
            break
        gone.add(key)
        leaving += size
    write(src, STATS_FILE, [r for r in stats if parse_label(r["series"]).key not in gone])
    write(src, SCHEDULE_FILE, [r for r in schedule if parse_label(r["series"]).key not in gone])
    return leaving


def next_year(src) -> None:
    """Every match a year later: the schedule starts after the last imported one ended."""
    schedule = read(src, SCHEDULE_FILE)
    for r in schedule:
        month, day, year = r["date"].split("/")
        r["date"] = f"{month}/{day}/{int(year) + 1}"
    write(src, SCHEDULE_FILE, schedule)


def test_first_import_of_the_real_season(db):
    report = load(db, "night-1")
    league = report["leagues"][LEAGUE]
    assert (league["teams_created"], league["teams_deactivated"], league["teams_in_sources"]) == (537, 0, 537)
    assert (league["schedule_created"], league["stats_created"]) == (4931, 537)
    assert (report["leagues_created"], report["series_created"], report["clubs_created"]) == (1, 53, 55)
    assert one(db, "SELECT count(*) FROM teams WHERE is_active") == 537
    assert one(db, "SELECT count(*) FROM teams") == 537
    assert one(db, "SELECT count(*) FROM series") == 53
    assert one(db, "SELECT count(*) FROM schedule") == 4931
    assert one(db, "SELECT count(*) FROM series_stats") == 537
    # The two BYE rows keep their empty side NULL; every other match has both teams.
    one_sided = """SELECT location, home_team_id IS NULL, away_team_id IS NULL FROM schedule
                   WHERE home_team_id IS NULL OR away_team_id IS NULL"""
    assert q(db, one_sided) == [("BYE", True, False)] * 2
    wrong_series = """SELECT count(*) FROM schedule sc
                      LEFT JOIN teams h ON h.id = sc.home_team_id LEFT JOIN teams a ON a.id = sc.away_team_id
                      WHERE h.series_id <> sc.series_id OR a.series_id <> sc.series_id
                         OR (sc.home_team_id IS NOT NULL AND h.id IS NULL)
                         OR (sc.away_team_id IS NOT NULL AND a.id IS NULL)"""
    assert one(db, wrong_series) == 0
    glenbrook = team_id(db, "1", "glenbrookrc")
    assert q(db, "SELECT points, matches_won, games_lost FROM series_stats WHERE team_id = %s", glenbrook) == [
        (147, 14, 667)
    ]
    # The stats file's spelling names the team; the schedule's "Butterfield 15 SW" is the same team.
    butterfield = team_id(db, "15 SW", "butterfield")
    assert one(db, "SELECT team_name FROM teams WHERE id = %s", butterfield) == "Butterfield - 15 SW"
    assert one(db, "SELECT count(*) FROM schedule WHERE %s IN (home_team_id, away_team_id)", butterfield) > 0


def test_an_unchanged_night_writes_no_row_and_takes_no_sequence_value(db):
    load(db, "night-1")
    rows, seqs, content = xmins(db), sequences(db), snapshot(db)
    report = load(db, "night-2")
    league = report["leagues"][LEAGUE]
    assert league["teams_unchanged"] == 537
    written = {k: v for k, v in league.items() if k.endswith(("_created", "_updated", "_deleted", "_deactivated"))}
    assert set(written.values()) == {0}, written
    assert (report["clubs_created"], report["series_created"], report["series_renamed"]) == (0, 0, 0)
    assert league["season_change"] is False
    assert snapshot(db) == content
    after = xmins(db)
    for table in DATA_TABLES:
        assert after[table] == rows[table], f"{table}: rows were rewritten"
    assert sequences(db) == seqs


def test_an_unchanged_night_waits_on_no_row_lock(db, db_uri):
    """The app may hold row locks on league rows at night: an unchanged import must not wait on them."""
    load(db, "night-1")
    with psycopg.connect(db_uri) as app:
        for table in DATA_TABLES:
            app.execute(f"SELECT 1 FROM {table} FOR UPDATE")
        db.execute("SET lock_timeout = '2s'")
        db.commit()
        report = load(db, "night-2")
    assert report["leagues"][LEAGUE]["teams_unchanged"] == 537


def test_ids_are_kept_and_rows_that_left_are_archived(db, tmp_path):
    load(db, "night-1")
    teams_before, matches_before, stats_before = team_ids(db), schedule_rows(db), stats_ids(db)
    src = copy_demo(tmp_path)
    schedule, stats = read(src, SCHEDULE_FILE), read(src, STATS_FILE)
    assert (schedule[0]["home_team"], schedule[0]["away_team"], schedule[0]["time"]) == (
        "Winnetka 1",
        "Glen Ellyn 1",
        "06:30 pm",
    )
    schedule[0]["time"] = "07:15 pm"
    removed_match = schedule.pop(1)
    removed_stats = stats.pop(0)  # Glenbrook RC 1 stays a team: it is still in the schedule
    write(src, SCHEDULE_FILE, schedule)
    write(src, STATS_FILE, stats)
    report = load(db, "night-2", src)["leagues"][LEAGUE]

    assert (report["schedule_updated"], report["schedule_deleted"], report["schedule_created"]) == (1, 1, 0)
    assert (report["stats_deleted"], report["stats_created"], report["stats_updated"]) == (1, 0, 0)
    assert report["teams_created"] == report["teams_deactivated"] == 0
    assert team_ids(db) == teams_before

    winnetka, glen_ellyn = team_id(db, "1", "winnetka"), team_id(db, "1", "glenellyn")
    series_1 = one(db, "SELECT id FROM series WHERE series_key = '1'")
    changed = (series_1, date(2024, 9, 24), winnetka, glen_ellyn)
    matches = schedule_rows(db)
    assert matches[changed][0] == matches_before[changed][0]  # updated in place, same id
    assert str(matches[changed][1]) == "19:15:00"
    gone = {k for k in matches_before if k not in matches}
    assert len(gone) == 1 and len(matches) == 4930
    (gone_key,) = gone
    assert {k: v[0] for k, v in matches.items()} == {k: v[0] for k, v in matches_before.items() if k != gone_key}
    archived_matches = q(db, "SELECT id, match_date, reason, run_id FROM etl_archive.schedule")
    assert archived_matches == [(matches_before[gone_key][0], gone_key[1], "left_sources", "night-2")]
    assert gone_key[1].strftime("%m/%d/%Y") == removed_match["date"]

    glenbrook = team_id(db, "1", "glenbrookrc")
    assert removed_stats["team"] == "Glenbrook RC 1"
    assert stats_ids(db) == {t: i for t, i in stats_before.items() if t != glenbrook}
    assert q(db, "SELECT id, team_id, points, reason, run_id FROM etl_archive.series_stats") == [
        (stats_before[glenbrook], glenbrook, 147, "left_sources", "night-2")
    ]


@pytest.mark.parametrize("churn", ["new_ids", "ids_reused"])
def test_rows_written_again_under_new_team_ids_are_told_apart_from_changes(db, tmp_path, churn):
    """The old system re-creates every team under a new id (or restarts the id sequence, so that
    ids come back naming other teams): the next night writes every match and standings row again
    on the teams' current ids. The report tells which of those are the same for the app's users
    (the pipeline's bookkeeping), which also changed, and what was really added or removed; the
    summary says it in those words."""
    from helpers import night, old_etl_churn, restart_identity_churn

    from league_import.demo import summarize
    from league_import.runs import latest_run

    night(db, "night-1")
    first = one(db, "SELECT report->'upsert_teams'->'leagues'->%s FROM etl.runs WHERE run_id = 'night-1'", LEAGUE)
    assert (first["schedule_for_users_added"], first["stats_for_users_added"], first["schedule_rewritten"]) == (
        4931,
        537,
        0,
    )
    old_etl_churn(db) if churn == "new_ids" else restart_identity_churn(db)
    src = copy_demo(tmp_path)
    schedule, stats = read(src, SCHEDULE_FILE), read(src, STATS_FILE)
    schedule[0]["time"] = "07:15 pm"
    schedule.pop(1)
    stats.pop(0)  # Glenbrook RC 1 stays a team: it is still in the schedule
    write(src, SCHEDULE_FILE, schedule)
    write(src, STATS_FILE, stats)
    night(db, "night-2", src)

    report = one(db, "SELECT report->'upsert_teams'->'leagues'->%s FROM etl.runs WHERE run_id = 'night-2'", LEAGUE)
    for_users = {k: report[f"schedule_for_users_{k}"] for k in ("added", "changed", "removed")}
    assert for_users == {"added": 0, "changed": 1, "removed": 1}
    for_users = {k: report[f"stats_for_users_{k}"] for k in ("added", "changed", "removed")}
    assert for_users == {"added": 0, "changed": 0, "removed": 1}
    # Every match is on other ids: archived and inserted again; a standings row is found by its
    # team's id, so where the id names another team now, the row is updated in place.
    assert (report["schedule_created"], report["schedule_deleted"], report["schedule_updated"]) == (4930, 4931, 0)
    stats = (report["stats_created"], report["stats_deleted"], report["stats_updated"])
    assert stats == ((536, 537, 0) if churn == "new_ids" else (0, 1, 536))
    assert (report["schedule_rewritten"], report["stats_rewritten"]) == (4929, 536)  # all but the three changes
    summary = summarize(latest_run(db))
    assert "matches 0 added, 1 changed, 1 removed; standings 0 added, 0 changed, 1 removed" in summary
    assert f"bookkeeping, the same for users: {report['schedule_rewritten']:,} matches and" in summary


def test_the_guard_refuses_before_writing_and_a_raised_ratio_passes(db, tmp_path):
    load(db, "night-1")
    ids = team_ids(db)
    src = copy_demo(tmp_path)
    leaving = drop_series(src, 0.2)
    assert leaving / 537 > 0.2
    before, seqs = snapshot(db), sequences(db)
    with pytest.raises(GuardError) as refused:
        load(db, "night-2", src)
    message = str(refused.value)
    assert f"league {LEAGUE}: this run would deactivate {leaving} of 537 active teams" in message
    assert "more than max_deactivation_ratio=0.2" in message and "Nothing was written" in message
    assert "looks like a new season" not in message  # the dates did not move
    assert snapshot(db) == before
    assert archived(db, "schedule") == archived(db, "series_stats") == 0
    assert sequences(db)["teams"] == seqs["teams"]

    report = load(db, "night-3", src, ratio=1.0)["leagues"][LEAGUE]
    assert (report["teams_deactivated"], report["teams_created"]) == (leaving, 0)
    assert one(db, "SELECT count(*) FROM teams WHERE is_active") == 537 - leaving
    assert one(db, "SELECT count(*) FROM teams") == 537  # deactivated, never deleted
    back = load(db, "night-4")["leagues"][LEAGUE]  # the series come back: the same ids, active again
    assert (back["teams_created"], back["teams_updated"]) == (0, leaving)
    assert team_ids(db) == ids and one(db, "SELECT count(*) FROM teams WHERE is_active") == 537


def test_a_ratio_outside_0_and_1_is_a_param_error(db):
    steps.validate(db, "night-1", source_dir=str(FRESH_DEMO), leagues=[], dry_run=False)
    before = snapshot(db)
    with pytest.raises(SourceError, match=r"param max_deactivation_ratio: 1.5 is not between 0 and 1"):
        steps.upsert(db, "night-1", max_ratio=1.5, dry_run=False)
    assert snapshot(db) == before


def test_a_season_change_is_noted_and_named_by_the_guard(db, tmp_path):
    load(db, "night-1")
    src = copy_demo(tmp_path)
    next_year(src)
    leaving = drop_series(src, 0.2)
    before = snapshot(db)
    with pytest.raises(GuardError) as refused:
        load(db, "night-2", src)
    assert (
        "The schedule starts on 2025-09-24, after the last imported season ended on 2025-03-11: "
        "this looks like a new season"
    ) in str(refused.value)
    assert "max_deactivation_ratio raised" in str(refused.value)
    assert snapshot(db) == before
    report = load(db, "night-3", src, ratio=1.0)["leagues"][LEAGUE]
    assert report["season_change"] is True
    assert (report["last_season_end"], report["new_schedule_start"]) == ("2025-03-11", "2025-09-24")
    assert report["teams_deactivated"] == leaving
    assert one(db, "SELECT min(match_date)::text FROM schedule") == "2025-09-24"


def second_league(src, code="ZZ_SECOND"):
    """A copy of the season under another league code."""
    shutil.copytree(src / LEAGUE, src / code)
    stats = [dict(r, league_id=code) for r in read(src, STATS_FILE)]
    schedule = [dict(r, League=code) for r in read(src, SCHEDULE_FILE)]
    (src / code / STATS_FILE).write_text(json.dumps(stats))
    (src / code / SCHEDULE_FILE).write_text(json.dumps(schedule))


REFUSE_SECOND = """
CREATE FUNCTION public.refuse_second() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT code FROM public.leagues WHERE id = NEW.league_id) = 'ZZ_SECOND' THEN
        RAISE EXCEPTION 'refused a schedule row of ZZ_SECOND';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_second BEFORE INSERT ON public.schedule
    FOR EACH ROW EXECUTE FUNCTION public.refuse_second();
"""


def test_all_leagues_or_none(db, tmp_path):
    """The second league fails in the database: the first league's changes are rolled back too."""
    load(db, "night-1")
    src = copy_demo(tmp_path)
    schedule = read(src, SCHEDULE_FILE)
    schedule[0]["time"] = "07:15 pm"
    write(src, SCHEDULE_FILE, schedule)
    write(src, STATS_FILE, read(src, STATS_FILE)[1:])
    second_league(src)
    db.execute(REFUSE_SECOND)
    db.commit()
    before = snapshot(db)
    steps.validate(db, "night-2", source_dir=str(src), leagues=[], dry_run=False)
    with pytest.raises(psycopg.errors.RaiseException, match="refused a schedule row of ZZ_SECOND"):
        steps.upsert(db, "night-2", max_ratio=0.2, dry_run=False)
    assert snapshot(db) == before
    assert q(db, "SELECT code FROM leagues") == [(LEAGUE,)]
    assert archived(db, "series_stats") == 0

    db.execute("DROP TRIGGER refuse_second ON public.schedule")
    db.commit()
    report = steps.upsert(db, "night-2", max_ratio=0.2, dry_run=False)
    assert report["leagues"][LEAGUE]["schedule_updated"] == 1
    assert report["leagues"][LEAGUE]["stats_deleted"] == 1
    assert report["leagues"]["ZZ_SECOND"]["teams_created"] == 537
    assert one(db, "SELECT count(*) FROM teams") == 2 * 537


def test_a_dry_run_writes_nothing_and_reports_what_a_run_would_do(db, tmp_path):
    load(db, "night-1")
    src = copy_demo(tmp_path)
    leaving = drop_series(src, 0.05)
    schedule = read(src, SCHEDULE_FILE)
    schedule[0]["time"] = "07:15 pm"
    schedule.append(dict(schedule[0], date="03/30/2025"))
    write(src, SCHEDULE_FILE, schedule)
    stats = read(src, STATS_FILE)
    stats.append(dict(stats[0], series="Series 2", team="Midlothian 2"))
    write(src, STATS_FILE, stats)
    before, rows = snapshot(db), xmins(db)
    dry = load(db, "dry", src, dry_run=True)
    assert snapshot(db) == before and xmins(db) == rows
    assert archived(db, "schedule") == 0
    assert one(db, "SELECT count(*) FROM etl.rename_suspects") == 0
    real = load(db, "real", src)
    assert snapshot(db) != before
    assert dry["dry_run"] is True and real["dry_run"] is False
    assert {**dry, "dry_run": False} == real
    league = real["leagues"][LEAGUE]
    assert (league["teams_created"], league["teams_deactivated"]) == (1, leaving)
    assert (league["schedule_created"], league["schedule_updated"]) == (1, 1)


def test_a_dry_run_on_an_empty_database_writes_nothing(db):
    before = snapshot(db)
    report = load(db, "dry", dry_run=True)
    assert report["leagues"][LEAGUE]["teams_created"] == 537
    assert snapshot(db) == before
    assert all(count == 0 for count, _ in before.values())


def test_an_alias_ties_a_new_spelling_to_the_existing_team(db, tmp_path):
    load(db, "night-1")
    glenbrook = team_id(db, "1", "glenbrookrc")
    src = copy_demo(tmp_path)
    for name in (STATS_FILE, SCHEDULE_FILE):
        path = src / LEAGUE / name
        path.write_text(path.read_text().replace('"Glenbrook RC 1"', '"Glenbrook Racquet 1"'))
    # Without the alias the new spelling is a new team.
    dry = load(db, "dry", src, dry_run=True)["leagues"][LEAGUE]
    assert (dry["teams_created"], dry["teams_deactivated"]) == (1, 1)

    with db.transaction(), db.cursor() as cur:
        history.add_alias(cur, LEAGUE, "Series 1", "Glenbrook Racquet 1", glenbrook, source="operator", by="test")
    seq = sequences(db)["teams"]
    report = load(db, "night-2", src)["leagues"][LEAGUE]
    assert (report["teams_created"], report["teams_deactivated"], report["teams_by_alias"]) == (0, 0, 1)
    assert one(db, "SELECT count(*) FROM teams") == 537
    assert sequences(db)["teams"] == seq
    assert q(db, "SELECT team_name, is_active FROM teams WHERE id = %s", glenbrook) == [("Glenbrook Racquet 1", True)]
    assert one(db, "SELECT count(*) FROM schedule WHERE %s IN (home_team_id, away_team_id)", glenbrook) == 20
    assert one(db, "SELECT count(*) FROM series_stats WHERE team_id = %s", glenbrook) == 1
    assert one(db, "SELECT count(*) FROM etl.rename_suspects") == 0


def test_a_suspected_rename_is_recorded_for_a_person(db, tmp_path):
    load(db, "night-1")
    old_ids = {k: v for k, v in team_ids(db).items() if k[1] == "glenellyn"}
    assert len(old_ids) == 14
    src = copy_demo(tmp_path)
    for name in (STATS_FILE, SCHEDULE_FILE):
        path = src / LEAGUE / name
        path.write_text(path.read_text().replace("Glen Ellyn", "Glen Elyn"))
    report = load(db, "night-2", src, ratio=1.0)
    league = report["leagues"][LEAGUE]
    assert (league["teams_created"], league["teams_deactivated"]) == (14, 14)

    new_ids = {k: v for k, v in team_ids(db).items() if k[1] == "glenelyn"}
    suspects = q(
        db,
        """SELECT kind, league_code, series_key, old_team_id, new_team_id, old_name, new_name, score, status, run_id
           FROM etl.rename_suspects ORDER BY series_key""",
    )
    assert len(suspects) == 14
    by_series = {s[2]: s for s in suspects}
    kind, code, series, old, new, old_name, new_name, score, status, run_id = by_series["1"]
    assert (kind, code, status, run_id) == ("rename", LEAGUE, "pending", "night-2")
    assert (old, new) == (old_ids[("1", "glenellyn")], new_ids[("1", "glenelyn")])
    assert (old_name, new_name) == ("Glen Ellyn 1", "Glen Elyn 1")
    assert 85 <= score < 100
    assert by_series["9 SW"][5:7] == ("Glen Ellyn - 9 SW", "Glen Elyn - 9 SW")
    assert {(s[3], s[4]) for s in suspects} == {(old_ids[k[0], "glenellyn"], new_ids[k]) for k in new_ids}

    listed = {
        (s["series_key"], s["old_name"], s["new_name"], s["old_team_id"], s["new_team_id"])
        for s in report["suspected_renames"]
    }
    assert listed == {(s[2], s[5], s[6], s[3], s[4]) for s in suspects}
    assert all(s["kind"] == "rename" and s["score"] >= 85 for s in report["suspected_renames"])
    # The old teams are kept, inactive, for the person's decision.
    assert one(db, "SELECT count(*) FROM teams WHERE id = ANY(%s) AND NOT is_active", list(old_ids.values())) == 14
