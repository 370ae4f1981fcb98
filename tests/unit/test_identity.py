"""Unit tests for team identity parsing, including a whole-sample check on APTA_CHICAGO."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from league_import.identity import (
    TeamIdentity,
    TeamNameError,
    clean,
    is_bye,
    mentions,
    parse_team,
    series_key,
)

SAMPLE = Path(__file__).resolve().parents[2] / "include" / "demo_data" / "APTA_CHICAGO"


def key(name: str, series: str) -> tuple[str, str]:
    ident = parse_team(name, series)
    return ident.series_key, ident.team_key


def test_clean_collapses_whitespace() -> None:
    assert clean("  Lake  Forest\t S1 \n") == "Lake Forest S1"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Chicago 15 SW", "15 SW"),
        ("Series 15 SW", "15 SW"),
        ("Division 15 SW", "15 SW"),
        ("series  15   sw", "15 SW"),
        ("Series 1", "1"),
        ("Series 2B", "2B"),
        ("Series A", "A"),
        ("Series SN", "SN"),
        ("Series Legends", "LEGENDS"),
        ("Sunday A", "A"),
        ("Series Sunday A", "A"),
        ("Flight B", "B"),
        ("Div 3", "3"),
        ("Chicago", "CHICAGO"),
        ("15 SW", "15 SW"),
    ],
)
def test_series_key(label: str, expected: str) -> None:
    assert series_key(label) == expected


@pytest.mark.parametrize("label", ["", "   ", "Series", "Division ", "flight", "Div"])
def test_series_key_rejects_empty(label: str) -> None:
    with pytest.raises(ValueError, match="series label"):
        series_key(label)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            ("Butterfield - 15 SW", "Chicago 15 SW"),
            ("Butterfield 15 SW", "Series 15 SW"),
        ),
        (("Winnetka 99 A 99", "Series 99"), ("Winnetka 99 A", "Series 99")),
        (("Legends - Legends", "Series Legends"), ("Legends", "Series Legends")),
        (
            ("Hinsdale PC II - 9 SW", "Chicago 9 SW"),
            ("Hinsdale PC II 9 SW", "Series 9 SW"),
        ),
        (("Westmoreland A - Series A", "Series A"), ("Westmoreland A", "Series A")),
        (("Westmoreland A", "Series A"), ("Westmoreland", "Series A")),
        (("Tennaqua S2B", "Series 2B"), ("Tennaqua 2B", "Series 2B")),
        (("Lake Forest  S1", "Series 1"), ("Lake Forest 1", "Series 1")),
        (
            ("Lake Forest Sunday A", "Sunday A"),
            ("Lake Forest Sunday A", "Series Sunday A"),
        ),
        (("LifeSport-Lshire 7", "Series 7"), ("Lifesport-Lshire 7", "Series 7")),
        (("Winnetka B(2)", "Series B"), ("Winnetka B (2)", "Series B")),
    ],
)
def test_same_team(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert key(*a) == key(*b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("Winnetka 99 A", "Series 99"), ("Winnetka 99 B", "Series 99")),
        (("Wilmette PD I 11", "Series 11"), ("Wilmette PD II 11", "Series 11")),
        (("Winnetka B(2)", "Series B"), ("Winnetka B(1)", "Series B")),
        (("Birchwood 14", "Series 14"), ("Birchwood 17", "Series 17")),
        (("Butterfield 15 SW", "Series 15 SW"), ("Butterfield 15", "Series 15")),
    ],
)
def test_different_teams(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert key(*a) != key(*b)


@pytest.mark.parametrize(
    ("name", "series", "club", "sub"),
    [
        ("Butterfield - 15 SW", "Chicago 15 SW", "Butterfield", ""),
        ("Winnetka 99 A 99", "Series 99", "Winnetka", "A"),
        ("Legends - Legends", "Series Legends", "Legends", ""),
        ("Legends", "Series Legends", "Legends", ""),
        ("Wilmette PD I 11", "Series 11", "Wilmette PD", "1"),
        ("Wilmette PD II 11", "Series 11", "Wilmette PD", "2"),
        ("Hinsdale PC II - 9 SW", "Chicago 9 SW", "Hinsdale PC", "2"),
        ("Glenbrook RC 1", "Series 1", "Glenbrook RC", ""),
        ("Westmoreland A - Series A", "Series A", "Westmoreland", ""),
        ("Middlefork", "Series A", "Middlefork", ""),
        ("Evanston K", "Series K", "Evanston", ""),
        ("Evanston K - Series K", "Series K", "Evanston", ""),
        ("Winnetka B(2)", "Series B", "Winnetka", "2"),
        ("Wilmette H (1)", "Series H", "Wilmette", "1"),
        ("Tennaqua S2B", "Series 2B", "Tennaqua", ""),
        ("Lake Forest  S1", "Series 1", "Lake Forest", ""),
        ("Tennaqua SN", "Series SN", "Tennaqua", ""),
        ("Tennaqua SSN", "Series SN", "Tennaqua", ""),
        ("Lake Forest Sunday A", "Sunday A", "Lake Forest", ""),
        ("Lake Forest Sunday A", "Series Sunday A", "Lake Forest", ""),
        ("Oak Park CC I - 29 SW", "Chicago 29 SW", "Oak Park CC", "1"),
        ("Club 7 Tennis 3", "Series 3", "Club 7 Tennis", ""),
        ("Butterfield - Series 15 SW", "Chicago 15 SW", "Butterfield", ""),
        ("Butterfield - Division 15 SW", "Series 15 SW", "Butterfield", ""),
        # "Chicago" is this label's prefix only in labels that use it: here it is the club's word.
        ("Midtown - Chicago 10", "Series 10", "Midtown - Chicago", ""),
        ("Salt Creek IV 27 SW", "Series 27 SW", "Salt Creek", "4"),
        ("Hinsdale 1a", "Series 1", "Hinsdale", "A"),
        ("Hinsdale 1b", "Series 1", "Hinsdale", "B"),
        ("Lake Forest Flight B", "Flight B", "Lake Forest", ""),
        ("Lake Sc C", "Series C", "Lake Sc", ""),
    ],
)
def test_club_and_sub_team(name: str, series: str, club: str, sub: str) -> None:
    ident = parse_team(name, series)
    assert (ident.club, ident.sub_team) == (club, sub)


def test_identity_fields() -> None:
    assert parse_team("Hinsdale PC II - 9 SW", "Chicago 9 SW") == TeamIdentity(
        club="Hinsdale PC",
        club_key="hinsdalepc",
        sub_team="2",
        series_key="9 SW",
        team_key="hinsdalepc#2",
        display="Hinsdale PC II",
    )
    assert parse_team("Glenbrook RC 1", "Series 1").team_key == "glenbrookrc"
    assert parse_team("Winnetka 99 A", "Series 99").team_key == "winnetka#a"
    assert parse_team("Tennaqua S2B", "Series 2B").series_key == "2B"


@pytest.mark.parametrize(
    ("name", "location", "series", "expected"),
    [
        (" - 9 SW", "BYE", "Series 9 SW", True),
        (" - 9 SW", None, "Series 9 SW", True),
        ("- 9 SW", "", "Series 9 SW", True),
        ("9 SW", "Somewhere", "Series 9 SW", True),
        ("Series 9 SW", "Somewhere", "Series 9 SW", True),
        ("Glen Ellyn 9 SW", "BYE", "Series 9 SW", True),
        ("Glen Ellyn 9 SW", " bye ", "Series 9 SW", True),
        ("Glen Ellyn 9 SW", "Glen Ellyn", "Series 9 SW", False),
        ("Legends", "Legends", "Series Legends", False),
        ("Legends - Legends", "Legends", "Series Legends", False),
    ],
)
def test_is_bye(name: str, location: str | None, series: str, expected: bool) -> None:
    assert is_bye(name, location, series) is expected


@pytest.mark.parametrize(
    ("name", "series"),
    [
        (" - 9 SW", "Series 9 SW"),
        ("Series 9 SW", "Series 9 SW"),
        ("A", "Series A"),
        ("", "Series 7"),
        ("   ", "Series 7"),
        ("(2)", "Series 7"),
        ("II 7", "Series 7"),
    ],
)
def test_unparseable_names_raise(name: str, series: str) -> None:
    with pytest.raises(TeamNameError) as err:
        parse_team(name, series)
    assert repr(name) in str(err.value) and series in str(err.value)


def test_team_name_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        parse_team("Glen Ellyn", "  ")


def _generated_clubs(count: int = 40) -> list[tuple[str, int]]:
    """Small deterministic sample of club names and series numbers."""
    rng = random.Random(20240924)
    words = [
        "Glen",
        "Oak",
        "Park",
        "Lake",
        "Forest",
        "Ruth",
        "Salt",
        "Creek",
        "Hinsdale",
        "Elm",
    ]
    cases = []
    for _ in range(count):
        parts = [rng.choice(words) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            parts.append(rng.choice(["CC", "RC", "PC", "PD"]))
        cases.append((" ".join(parts), rng.randint(1, 40)))
    return cases


@pytest.mark.parametrize(("club", "n"), _generated_clubs())
def test_generated_spellings_agree(club: str, n: int) -> None:
    plain = parse_team(f"{club} {n}", f"Series {n}")
    dashed = parse_team(f"{club} - {n}", f"Chicago {n}")
    assert plain == dashed
    assert (plain.club, plain.sub_team) == (club, "")


def _load(name: str) -> list[dict]:
    return json.loads((SAMPLE / name).read_text(encoding="utf-8"))


def test_whole_sample() -> None:
    stats = _load("series_stats.json")
    schedules = _load("schedules.json")

    stat_keys: dict[tuple[str, str], str] = {}
    for row in stats:
        k = key(row["team"], row["series"])
        assert stat_keys.setdefault(k, row["team"]) == row["team"], f"{row['team']!r} collapses"

    schedule_keys = set()
    byes = 0
    for row in schedules:
        for side in ("home_team", "away_team"):
            if is_bye(row[side], row["location"], row["series"]):
                byes += 1
                continue
            schedule_keys.add(key(row[side], row["series"]))

    union = set(stat_keys) | schedule_keys
    # Two BYE rows; location "BYE" marks both sides, the placeholder and the team with the bye.
    assert byes == 4
    assert len(union) == 537
    assert len({s for s, _ in union}) == 53
    assert schedule_keys <= set(stat_keys)


@pytest.mark.parametrize("name", [" - 1", "- 2", "2 - 2", "(3)"])
def test_a_club_needs_a_letter(name):
    with pytest.raises(TeamNameError, match="Series 2"):
        parse_team(name, "Series 2")


@pytest.mark.parametrize(
    "spelling",
    [
        "Lake Forest 3",
        "Lake-Forest 3",
        "Lake \u2013 Forest 3",
        "LakeForest 3",
        "lake forest 3",
        "LAKE  FOREST 3",
        "Lake.Forest 3",
        "Lake/Forest 3",
        "Lake Forest - 3",
        "Lake Forest \u2013 3",
        "Läke Forest 3",
    ],
)
def test_separators_case_and_diacritics_are_not_identity(spelling):
    assert key(spelling, "Series 3") == ("3", "lakeforest")


def test_abbreviations_are_kept_not_expanded():
    assert parse_team("Glenbrook RC 1", "Series 1").club_key == "glenbrookrc"
    assert key("Glenbrook RC 1", "Series 1") != key("Glenbrook Racquet Club 1", "Series 1")


def test_roman_and_parenthesised_sub_teams_agree():
    assert key("Wilmette H (1)", "Series H") == key("Wilmette H I", "Series H")
    assert key("Wilmette H (1)", "Series H") != key("Wilmette H (2)", "Series H")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Practice for Series 2B moved", {"2B"}),
        ("our series 22 match", {"22"}),
        ("SERIES 22 SW lineup", {"22 SW"}),
        ("Chicago 22 SW lineup", {"22 SW"}),
        ("Division 11 rained out", {"11"}),
        ("Div 11 rained out", {"11"}),
        ("Flight 11 rained out", {"11"}),
        ("S2B subs needed", {"2B"}),
        ("Series A captains", {"A"}),
        ("Practice moved to 7:22", set()),
        ("see you on 11/22", set()),
        ("we play 22 games", set()),
        ("a series a day", set()),
        ("Series 99", set()),  # not a series of this league
        (None, set()),
    ],
)
def test_mentions(text, expected):
    known = frozenset({"2B", "22", "22 SW", "11", "A"})
    assert mentions(text, known, frozenset({"Chicago"})) == expected
