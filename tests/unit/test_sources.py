"""Reading and validating league folders: the real season, and every kind of bad input."""

from __future__ import annotations

import pytest
from helpers import DEMO_DATA, LEAGUE, copy_demo, read, write

from league_import.sources import SCHEDULE_FILE, STATS_FILE, SourceError, read_league, read_leagues


@pytest.fixture(scope="module")
def season():
    return read_league(DEMO_DATA / LEAGUE)


def test_real_season_has_537_teams_in_53_series(season):
    assert len(season.teams) == 537
    assert season.teams.series_key.nunique() == 53
    assert not season.teams.duplicated(["series_key", "team_key"]).any()


def test_schedule_rows_keep_every_record_and_mark_byes(season):
    assert len(season.schedule) == 4931
    assert season.counts == {"stats_records": 537, "schedule_records": 4931, "bye_rows": 2}
    byes = season.schedule[season.schedule.location == "BYE"]
    assert len(byes) == 2
    assert byes.home_key.isna().all() and byes.away_key.notna().all()
    real = season.schedule[season.schedule.location != "BYE"]
    assert real.home_key.notna().all() and real.away_key.notna().all()


def test_schedule_teams_resolve_to_stats_teams(season):
    teams = set(zip(season.teams.series_key, season.teams.team_key))
    for side in ("home_key", "away_key"):
        live = season.schedule[season.schedule[side].notna()]
        assert set(zip(live.series_key, live[side])) <= teams


def test_display_names_prefer_the_stats_spelling(season):
    row = season.teams[(season.teams.series_key == "15 SW") & (season.teams.club == "Butterfield")]
    assert row.team_name.tolist() == ["Butterfield - 15 SW"]
    assert row.series_name.tolist() == ["Chicago 15 SW"]


def test_stats_numbers_are_flattened(season):
    first = season.stats.iloc[0]
    assert (first.points, first.matches_won, first.games_lost) == (147, 14, 667)


def test_leagues_param_selects_and_rejects(tmp_path):
    src = copy_demo(tmp_path)
    assert [lg.code for lg in read_leagues(src, [])] == [LEAGUE]
    assert [lg.code for lg in read_leagues(src, [LEAGUE])] == [LEAGUE]
    with pytest.raises(SourceError, match=r"param leagues: no folder for NSTF in .* \(found: APTA_CHICAGO\)"):
        read_leagues(src, ["NSTF"])


def test_missing_source_dir_names_the_param(tmp_path):
    with pytest.raises(SourceError, match=r"param source_dir: '.*nowhere' is not a folder"):
        read_leagues(tmp_path / "nowhere", [])


def test_league_folder_without_files(tmp_path):
    (tmp_path / "CNSWPL").mkdir()
    with pytest.raises(SourceError, match=r"CNSWPL: league folder has neither series_stats.json nor schedules.json"):
        read_leagues(tmp_path, [])


def test_one_file_is_enough(tmp_path):
    src = copy_demo(tmp_path)
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    league = read_league(src / LEAGUE)
    assert len(league.teams) == 537 and league.schedule.empty


def test_malformed_json_names_file_line_and_column(tmp_path):
    src = copy_demo(tmp_path)
    (src / LEAGUE / STATS_FILE).write_text('[{"series": "Series 1",\n  "team": }]')
    with pytest.raises(SourceError, match=r"series_stats.json: malformed JSON at line 2 column 11"):
        read_league(src / LEAGUE)


def test_not_an_array(tmp_path):
    src = copy_demo(tmp_path)
    write(src, SCHEDULE_FILE, {"date": "09/24/2024"})
    with pytest.raises(SourceError, match=r"schedules.json: expected a JSON array of records, found dict"):
        read_league(src / LEAGUE)


def test_empty_array(tmp_path):
    src = copy_demo(tmp_path)
    write(src, STATS_FILE, [])
    with pytest.raises(SourceError, match=r"series_stats.json: the array holds no records"):
        read_league(src / LEAGUE)


@pytest.mark.parametrize(
    ("file", "index", "field"),
    [
        (STATS_FILE, 7, "team"),
        (STATS_FILE, 3, "matches.won"),
        (SCHEDULE_FILE, 100, "home_team"),
        (SCHEDULE_FILE, 5, "date"),
    ],
)
def test_missing_field_names_file_record_and_field(tmp_path, file, index, field):
    src = copy_demo(tmp_path)
    records = read(src, file)
    head, _, leaf = field.rpartition(".")
    del (records[index][head] if head else records[index])[leaf]
    write(src, file, records)
    with pytest.raises(SourceError, match=rf"{file}: record {index}: missing field '{field}'"):
        read_league(src / LEAGUE)


def test_wrong_type_names_the_field(tmp_path):
    src = copy_demo(tmp_path)
    records = read(src, STATS_FILE)
    records[2]["points"] = "lots"
    write(src, STATS_FILE, records)
    with pytest.raises(SourceError, match=r"series_stats.json: record 2: field 'points' must be a whole number"):
        read_league(src / LEAGUE)


@pytest.mark.parametrize(("file", "field"), [(STATS_FILE, "league_id"), (SCHEDULE_FILE, "League")])
def test_league_code_disagreeing_with_folder(tmp_path, file, field):
    src = copy_demo(tmp_path)
    records = read(src, file)
    records[42][field] = "NSTF"
    write(src, file, records)
    with pytest.raises(
        SourceError, match=rf"{file}: record 42: field '{field}' is 'NSTF' but the folder is '{LEAGUE}'"
    ):
        read_league(src / LEAGUE)


def test_team_name_that_parses_to_nothing(tmp_path):
    src = copy_demo(tmp_path)
    records = read(src, STATS_FILE)
    records[9]["team"] = " - "
    write(src, STATS_FILE, records)
    with pytest.raises(SourceError, match=r"series_stats.json: record 9: field 'team':"):
        read_league(src / LEAGUE)


def test_bad_date_and_time(tmp_path):
    src = copy_demo(tmp_path)
    records = read(src, SCHEDULE_FILE)
    records[11]["date"] = "2024-09-24"
    write(src, SCHEDULE_FILE, records)
    with pytest.raises(
        SourceError, match=r"schedules.json: record 11: field 'date' is '2024-09-24', expected MM/DD/YYYY"
    ):
        read_league(src / LEAGUE)
    records[11]["date"] = "09/24/2024"
    records[12]["time"] = "half past six"
    write(src, SCHEDULE_FILE, records)
    with pytest.raises(SourceError, match=r"schedules.json: record 12: field 'time' is 'half past six'"):
        read_league(src / LEAGUE)


def test_two_stats_rows_for_one_team_are_refused(tmp_path):
    src = copy_demo(tmp_path)
    records = read(src, STATS_FILE)
    twin = dict(records[0], team=records[0]["team"].replace("Glenbrook RC", "Glenbrook  RC"))
    write(src, STATS_FILE, [*records, twin])
    with pytest.raises(SourceError, match=r"record 537: team 'Glenbrook  RC 1' is the same team as record 0"):
        read_league(src / LEAGUE)
