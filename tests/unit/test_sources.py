"""Reading and validating league folders: the real season, and every kind of bad input.

Every problem must name its file, record and field, and one run's problems must all arrive in
one SourceError: an operator fixes the files once, not once per problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from helpers import DEMO_DATA, LEAGUE, copy_demo, read, write

from league_import import sources
from league_import.errors import SourceError
from league_import.sources import MAX_LISTED, SCHEDULE_FILE, STATS_FILE, STATS_NUMBERS, read_leagues


@pytest.fixture(scope="module")
def season():
    (league,) = read_leagues(DEMO_DATA, [])
    return league


@pytest.fixture
def src(tmp_path) -> Path:
    return copy_demo(tmp_path)


def refused(src: Path, **kwargs) -> str:
    """The one SourceError of reading `src`, with the folder's path shortened to SRC."""
    with pytest.raises(SourceError) as caught:
        read_leagues(src, [], **kwargs)
    return str(caught.value).replace(str(src), "SRC")


def edit(src: Path, name: str, change) -> None:
    records = read(src, name)
    change(records)
    write(src, name, records)


STATS = f"SRC/{LEAGUE}/{STATS_FILE}"
SCHEDULE = f"SRC/{LEAGUE}/{SCHEDULE_FILE}"


def test_the_real_season_reads_to_537_teams_in_53_series(season):
    assert season.code == LEAGUE
    assert len(season.teams) == 537
    assert len({t.series_key for t in season.teams}) == 53
    assert len({(t.series_key, t.team_key) for t in season.teams}) == 537
    assert all(t.in_stats for t in season.teams)
    # Series 12 and 29 have standings but no matches in the scraped schedule.
    assert {t.series_key for t in season.teams if not t.in_schedule} == {"12", "29"}


def test_the_schedule_keeps_every_record_and_its_two_byes(season):
    assert len(season.schedule) == 4931
    assert season.counts == {"stats_records": 537, "schedule_records": 4931, "bye_rows": 2}
    byes = [row for row in season.schedule if row[3] is None or row[4] is None]
    assert len(byes) == 2
    assert all(row[3] is None and row[4] is not None and row[5] == "BYE" for row in byes)
    teams = {(t.series_key, t.team_key) for t in season.teams}
    for series_key, _, _, home, away, *_ in season.schedule:
        assert {(series_key, k) for k in (home, away) if k is not None} <= teams


def test_the_stats_spelling_wins_for_the_team_name(season):
    (butterfield,) = [t for t in season.teams if t.series_key == "15 SW" and t.club == "Butterfield"]
    # The schedule says "Butterfield 15 SW" in "Series 15 SW"; the stats file's spelling is kept.
    assert butterfield.team_name == "Butterfield - 15 SW"
    assert butterfield.series_label == "Chicago 15 SW"


def test_stats_numbers_come_in_column_order(season):
    first = season.stats[0]
    assert first[:2] == ("1", "glenbrookrc")
    assert dict(zip(STATS_NUMBERS, first[2:])) == {
        "points": 147,
        "matches_won": 14,
        "matches_lost": 3,
        "matches_tied": 1,
        "lines_won": 45,
        "lines_lost": 26,
        "lines_for": 0,
        "lines_ret": 0,
        "sets_won": 92,
        "sets_lost": 62,
        "games_won": 777,
        "games_lost": 667,
    }
    assert len(season.stats) == 537


def test_file_facts_are_kept_for_freshness(season):
    stats, schedule = season.files
    path = DEMO_DATA / LEAGUE / STATS_FILE
    assert (stats.name, stats.records, stats.size) == (STATS_FILE, 537, path.stat().st_size)
    assert stats.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (schedule.records, str(schedule.first_date), str(schedule.last_date)) == (4931, "2024-09-24", "2025-03-11")


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        pytest.param(
            STATS_FILE,
            lambda r: r[5].__setitem__("points", 1.5),
            f"{STATS}: record 5: field 'points' must be a whole number, got 1.5",
            id="float",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[7]["matches"].__setitem__("won", 2.0),
            f"{STATS}: record 7: field 'matches.won' must be a whole number, got 2.0",
            id="nested-float",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[4]["games"].__setitem__("lost", 2**31),
            f"{STATS}: record 4: field 'games.lost' must be a whole number between 0 and 2147483647, "
            "got 2147483648",
            id="beyond-int32",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[4]["games"].__setitem__("lost", -100),
            f"{STATS}: record 4: field 'games.lost' must be a whole number between 0 and 2147483647, got -100",
            id="negative-count",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[2].__setitem__("points", -3),
            f"{STATS}: record 2: field 'points' must be a whole number between 0 and 2147483647, got -3",
            id="negative-points",
        ),
        pytest.param(
            SCHEDULE_FILE,
            lambda r: r[9].__setitem__("home_team", "Glen Ellyn 1\x1b[2J"),
            f"{SCHEDULE}: record 9: field 'home_team' contains a control character (U+001B)",
            id="escape-sequence",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[6].__setitem__("team", "Glenbrook\u200b RC 1"),
            f"{STATS}: record 6: field 'team' contains an invisible format character (U+200B)",
            id="zero-width-space",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[6].__setitem__("team", "\u202eGlenbrook RC 1"),
            f"{STATS}: record 6: field 'team' contains an invisible format character (U+202E)",
            id="right-to-left-override",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[3].pop("team"),
            f"{STATS}: record 3: missing field 'team'",
            id="missing",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[3]["lines"].pop("for"),
            f"{STATS}: record 3: missing field 'lines.for'",
            id="missing-nested",
        ),
        pytest.param(
            SCHEDULE_FILE,
            lambda r: r[9].__setitem__("home_team", "Glen\x00 Ellyn 1"),
            f"{SCHEDULE}: record 9: field 'home_team' contains a NUL character",
            id="nul",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[6].__setitem__("team", "x" * 3000),
            f"{STATS}: record 6: field 'team' is 3,000 characters long, over the limit of 200",
            id="3000-characters",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[8].__setitem__("series", ""),
            f"{STATS}: record 8: field 'series': series label '' names no series",
            id="empty-series",
        ),
        pytest.param(
            SCHEDULE_FILE,
            lambda r: r[12].__setitem__("series", "Series"),
            f"{SCHEDULE}: record 12: field 'series': series label 'Series' names no series",
            id="prefix-only-series",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[1].__setitem__("team", "Series 1"),
            f"{STATS}: record 1: field 'team': team name 'Series 1' in series 'Series 1': only a series label",
            id="team-is-a-label",
        ),
        pytest.param(
            SCHEDULE_FILE,
            lambda r: r.append(dict(r[10], time="08:00 pm", location="elsewhere")),
            f"{SCHEDULE}: record 4931: the same match as record 10 (series 'Series 1', 10/15/2024, "
            "'Glen Ellyn 1' v 'Glenbrook RC 1')",
            id="duplicate-match",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r.append(dict(r[0], team="Glenbrook  RC - Series 1")),
            f"{STATS}: record 537: field 'team': team 'Glenbrook  RC - Series 1' is the same team as record 0 "
            "('Glenbrook RC 1') in series 'Series 1'",
            id="same-team-twice",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r[42].__setitem__("league_id", "NSTF"),
            f"{STATS}: record 42: field 'league_id' is 'NSTF' but the folder is '{LEAGUE}'",
            id="other-league",
        ),
        pytest.param(
            SCHEDULE_FILE,
            lambda r: r[11].__setitem__("date", "2024-09-24"),
            f"{SCHEDULE}: record 11: field 'date' is '2024-09-24', expected MM/DD/YYYY",
            id="date",
        ),
        pytest.param(
            SCHEDULE_FILE,
            lambda r: r[12].__setitem__("time", "half past six"),
            f"{SCHEDULE}: record 12: field 'time' is 'half past six'",
            id="time",
        ),
        pytest.param(
            STATS_FILE,
            lambda r: r.__setitem__(4, 3),
            f"{STATS}: record 4: expected an object, found int",
            id="record-not-an-object",
        ),
    ],
)
def test_a_bad_record_is_named_with_file_record_and_field(src, name, change, expected):
    edit(src, name, change)
    message = refused(src)
    assert message.startswith(expected), message
    assert "problems in the sources" not in message  # exactly one problem


def test_an_empty_array_and_a_top_level_object_are_refused(src):
    write(src, STATS_FILE, [])
    write(src, SCHEDULE_FILE, {"date": "09/24/2024"})
    assert refused(src).splitlines()[1:] == [
        f"- {STATS}: the array holds no records",
        f"- {SCHEDULE}: expected a JSON array of records, found object",
    ]


@pytest.mark.parametrize("ascii_only", [True, False], ids=["escaped", "raw"])
def test_an_invisible_character_is_refused_raw_or_escaped(src, ascii_only):
    records = read(src, STATS_FILE)
    records[6]["team"] = "Glenbrook\u200b RC 1"
    (src / LEAGUE / STATS_FILE).write_text(json.dumps(records, ensure_ascii=ascii_only), encoding="utf-8")
    assert refused(src).startswith(f"{STATS}: record 6: field 'team' contains an invisible format character (U+200B)")


def test_an_accented_name_is_no_invisible_character(src):
    records = read(src, STATS_FILE)
    records[6]["team"] = records[6]["team"].replace("e", "\u00e9", 1)
    (src / LEAGUE / STATS_FILE).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert read_leagues(src, [])[0].code == LEAGUE


def test_a_repeated_key_is_refused_naming_the_record(src):
    """A JSON object may spell a key twice; decoders keep the last: the phantom team is refused."""
    records = read(src, STATS_FILE)
    index = next(i for i, r in enumerate(records) if r["team"] == "Winnetka 1")
    body = json.dumps(records)
    spot = body.index('"team": "Winnetka 1"')
    body = body[:spot] + '"team": "Winnetka 1", "team": "Hacked 1"' + body[spot + len('"team": "Winnetka 1"') :]
    (src / LEAGUE / STATS_FILE).write_text(body)
    assert refused(src) == f"{STATS}: record {index}: repeats the key 'team' in one object (JSON keeps only the last)"


def test_a_repeated_key_in_a_record_without_percentages_is_found_too(src):
    """The quick count of keys needs every record in full; a file of other records is read object by object."""
    records = read(src, STATS_FILE)
    for r in records:
        r["matches"].pop("percentage")
    body = json.dumps(records).replace('"series": "Series 3"', '"series": "Series 3", "series": "Series 3"', 1)
    (src / LEAGUE / STATS_FILE).write_text(body)
    assert "repeats the key 'series' in one object" in refused(src)


def test_bytes_that_are_not_utf8_are_refused_naming_the_place(src):
    body = (src / LEAGUE / SCHEDULE_FILE).read_bytes()
    spot = body.index(b"Winnetka")
    (src / LEAGUE / SCHEDULE_FILE).write_bytes(body[:spot] + b"\xff" + body[spot:])
    line = body.count(b"\n", 0, spot) + 1
    message = refused(src)
    assert message.startswith(f"{SCHEDULE}: not UTF-8: byte {spot} (line {line} column"), message


def test_league_folders_whose_codes_differ_only_in_case_are_refused(src):
    shutil.copytree(src / LEAGUE, src / LEAGUE.lower())
    with pytest.raises(SourceError) as failed:
        read_leagues(src, [])
    assert str(failed.value) == (
        f"param source_dir: league folders {LEAGUE}, {LEAGUE.lower()} in '{src}' differ only in case: one league "
        "twice? Keep one"
    )


def test_malformed_json_names_the_file_line_and_column(src):
    (src / LEAGUE / STATS_FILE).write_text('[{"series": "Series 1",\n  "team": }]')
    assert refused(src) == f"{STATS}: malformed JSON at line 2 column 11: invalid character"


@pytest.mark.parametrize("float_at", [None, 2], ids=["alone", "after-a-bad-record"])
def test_deep_nesting_is_a_source_error_not_a_recursion_error(src, float_at):
    """5,000 levels in an unknown field: msgspec gives up with RecursionError, on the first decode
    or, when an earlier record is bad, on the decode that looks for every record's problem."""
    records = read(src, STATS_FILE)
    records[3]["extra"] = "DEEP"
    if float_at is not None:
        records[float_at]["points"] = 1.5
    text = json.dumps(records).replace('"DEEP"', "[" * 5000 + "]" * 5000)
    (src / LEAGUE / STATS_FILE).write_text(text)
    message, deep = refused(src), f"{STATS}: record 3: JSON nested too deeply (a record is a few levels deep)"
    if float_at is None:
        assert message == deep
    else:  # record 2's problem may or may not be found before the nesting stops the decoder
        assert message == deep or message.endswith(f"\n- {deep}")


def test_every_problem_of_a_run_is_in_one_error(src):
    (src / "NSTF").mkdir()  # a second league, with only a stats file
    stats = [dict(r, league_id="NSTF") for r in read(src, STATS_FILE)[:10]]
    stats[2]["league_id"] = "CNSWPL"
    (src / "NSTF" / STATS_FILE).write_text(json.dumps(stats))
    edit(src, STATS_FILE, lambda r: r[5].__setitem__("points", 1.5))
    edit(src, SCHEDULE_FILE, lambda r: r[8].pop("away_team"))
    assert refused(src).splitlines() == [
        "3 problems in the sources, nothing was written:",
        f"- {STATS}: record 5: field 'points' must be a whole number, got 1.5",
        f"- {SCHEDULE}: record 8: missing field 'away_team'",
        "- SRC/NSTF/series_stats.json: record 2: field 'league_id' is 'CNSWPL' but the folder is 'NSTF'",
    ]


def test_many_problems_are_capped_and_counted(src):
    edit(src, STATS_FILE, lambda r: [x.__setitem__("points", 0.5) for x in r])
    lines = refused(src).splitlines()
    assert lines[0] == "537 problems in the sources, nothing was written:"
    assert len(lines) == 1 + MAX_LISTED + 1
    assert lines[1] == f"- {STATS}: record 0: field 'points' must be a whole number, got 0.5"
    assert lines[MAX_LISTED] == f"- {STATS}: record {MAX_LISTED - 1}: field 'points' must be a whole number, got 0.5"
    assert lines[-1] == f"- ... and {537 - MAX_LISTED} more"


def test_a_folder_where_a_file_should_be(src):
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    (src / LEAGUE / SCHEDULE_FILE).mkdir()
    assert refused(src) == f"{SCHEDULE}: not a regular file (a folder); a league file must be a plain file"


def test_a_fifo_is_refused_without_blocking(src):
    """A FIFO with no writer blocks a plain open() for ever: the read must not wait on it."""
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    os.mkfifo(src / LEAGUE / SCHEDULE_FILE)
    outcome: list[BaseException | None] = []

    def attempt():
        try:
            read_leagues(src, [])
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(timeout=5)
    if reader.is_alive():
        try:  # a writer unblocks the reader, so the thread ends
            os.close(os.open(src / LEAGUE / SCHEDULE_FILE, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        pytest.fail("read_leagues blocked on a FIFO")
    (error,) = outcome
    assert isinstance(error, SourceError)
    assert str(error).replace(str(src), "SRC") == (
        f"{SCHEDULE}: not a regular file (a FIFO); a league file must be a plain file"
    )


def test_a_file_over_the_size_limit_is_refused_while_read(src, monkeypatch):
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 500_000)  # the stats file is 274 kB, the schedule 1.2 MB
    assert refused(src) == f"{SCHEDULE}: more than the limit of 500,000 bytes per file; refused"


def test_file_problems_are_listed_with_record_problems(src):
    """A file that cannot be read does not hide the other files' problems."""
    edit(src, STATS_FILE, lambda r: r[2].__setitem__("points", "lots"))
    (src / LEAGUE / SCHEDULE_FILE).unlink()
    os.mkfifo(src / LEAGUE / SCHEDULE_FILE)
    assert refused(src).splitlines() == [
        "2 problems in the sources, nothing was written:",
        f"- {STATS}: record 2: field 'points' must be a whole number, got 'lots'",
        f"- {SCHEDULE}: not a regular file (a FIFO); a league file must be a plain file",
    ]


def test_the_leagues_param_selects_folders(src):
    shutil.copytree(src / LEAGUE, src / "NSTF")
    assert [lg.code for lg in read_leagues(src, [LEAGUE])] == [LEAGUE]
    assert [lg.code for lg in read_leagues(src, [LEAGUE, LEAGUE])] == [LEAGUE]
    with pytest.raises(SourceError, match=re.escape("folder is 'NSTF'")):
        read_leagues(src, ["NSTF"])  # the copy still says APTA_CHICAGO
    with pytest.raises(SourceError, match=rf"param leagues: no folder for CNSWPL in '.*' \(found: {LEAGUE}, NSTF\)"):
        read_leagues(src, ["CNSWPL"])


def test_a_missing_source_folder_names_the_param(tmp_path):
    with pytest.raises(SourceError, match=r"^param source_dir: '.*nowhere' is not a folder$"):
        read_leagues(tmp_path / "nowhere", [])


def test_a_league_folder_without_files(tmp_path):
    (tmp_path / "CNSWPL").mkdir()
    with pytest.raises(SourceError, match=r"CNSWPL: league folder has neither series_stats.json nor schedules.json$"):
        read_leagues(tmp_path, [])


def test_a_bad_league_stops_the_sink(src):
    """Each league reaches the sink (the stage) as soon as it is valid, read once; after the first
    problem nothing more does (the caller drops what was staged)."""
    for code in ("AA_FIRST", "ZZ_LAST"):
        shutil.copytree(src / LEAGUE, src / code)
        (src / code / STATS_FILE).write_text(json.dumps([dict(r, league_id=code) for r in read(src, STATS_FILE)]))
        (src / code / SCHEDULE_FILE).write_text(
            json.dumps([dict(r, League=code) for r in read(src, SCHEDULE_FILE)])
        )
    schedule = json.loads((src / LEAGUE / SCHEDULE_FILE).read_text())
    schedule[30]["time"] = "soon"
    (src / LEAGUE / SCHEDULE_FILE).write_text(json.dumps(schedule))
    sunk = []
    message = refused(src, sink=sunk.append)
    assert message == f"SRC/{LEAGUE}/schedules.json: record 30: field 'time' is 'soon', expected like '06:30 pm'"
    assert [lg.code for lg in sunk] == ["AA_FIRST"]
    schedule[30]["time"] = "06:30 pm"
    (src / LEAGUE / SCHEDULE_FILE).write_text(json.dumps(schedule))
    sunk.clear()
    returned = read_leagues(src, [], sink=sunk.append)
    assert [lg.code for lg in sunk] == ["AA_FIRST", LEAGUE, "ZZ_LAST"]
    assert [len(lg.teams) for lg in sunk] == [537, 537, 537]
    assert [(lg.code, lg.teams, lg.counts["schedule_records"]) for lg in returned] == [
        ("AA_FIRST", [], 4931),
        (LEAGUE, [], 4931),
        ("ZZ_LAST", [], 4931),
    ]
