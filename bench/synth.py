"""Synthetic league folders on disk, shaped like the bundled season, for the benchmarks.

The bundled season (include/demo_data) has 537 teams in about 50 series of ~11 teams, 57 clubs
(~9 teams each), one stats record per team and 4,931 schedule rows (9.2 per team: a double
round robin in each series). These folders keep those proportions at any size, split over
several leagues so that every file stays well under sources.MAX_FILE_BYTES, with names written
the way the scraper writes them ("Hinsdale PC II - 9 SW", "Winnetka 12", BYE rows).
Deterministic: the same arguments give the same bytes.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path

from league_import.sources import MAX_FILE_BYTES, SCHEDULE_FILE, STATS_FILE

TEAMS_PER_SERIES = 10
TEAMS_PER_CLUB = 9
TEAMS_PER_LEAGUE = 10_000  # ~25 MB of schedules per league: half of MAX_FILE_BYTES
SEASON_START = date(2024, 9, 24)

_PLACES = (
    "Glenbrook Barrington Winnetka Hinsdale Wilmette Evanston Skokie Medinah Northmoor Lake Forest "
    "Glen Ellyn Glen View Salt Creek Ruth Lake Indian Hill Saddle Sunset Ridge Knollwood Birchwood "
    "Westmoreland Butterfield Tennaqua Exmoor Onwentsia Inverness Briarwood Edgewood Prairie Oak Park "
    "River Forest Michigan Shores Valley Lo Lake Bluff Bryn Mawr Midtown Dunham Woods Hawthorn Biltmore "
    "Royal Melbourne White Eagle Winter Park South Barrington Highland Heights Lakeshore LaGrange Park Ridge"
).split(" ")
_PLACES = [" ".join(p) for p in zip(_PLACES[::2], _PLACES[1::2])] + _PLACES
_SUFFIXES = ("", "", "", " CC", " RC", " PD", " GC", " PC", " S&F", " Club", " Racquet", " Paddle")
_SUB_TEAMS = ("I", "II", "III")


def club_names(n: int, rng: random.Random) -> list[str]:
    """n distinct club names: a place, sometimes a second place word, and a club suffix."""
    names: dict[str, None] = {}
    while len(names) < n:
        place = rng.choice(_PLACES)
        extra = f" {rng.choice(_PLACES).split(' ')[0]}" if len(names) > 300 else ""
        names[f"{place}{extra}{rng.choice(_SUFFIXES)}"] = None
    return list(names)


def _team_name(club: str, sub: str, label: str, style: int) -> str:
    designator = label.split(" ", 1)[1]
    marker = f" {sub}" if sub else ""
    return f"{club}{marker} - {designator}" if style else f"{club}{marker} {designator}"


def _stats(rng: random.Random, code: str, label: str, team: str) -> dict:
    won, lost = rng.randint(0, 18), rng.randint(0, 18)
    lw, ll = rng.randint(0, 60), rng.randint(0, 60)
    sw, sl, gw, gl = rng.randint(0, 120), rng.randint(0, 120), rng.randint(0, 900), rng.randint(0, 900)
    pct = f"{100 * won / max(1, won + lost):.1f}%"
    return {
        "series": label,
        "team": team,
        "league_id": code,
        "points": rng.randint(0, 200),
        "matches": {"won": won, "lost": lost, "tied": rng.randint(0, 2), "percentage": pct},
        "lines": {"won": lw, "lost": ll, "for": 0, "ret": 0, "percentage": pct},
        "sets": {"won": sw, "lost": sl, "percentage": pct},
        "games": {"won": gw, "lost": gl, "percentage": pct},
    }


def _round_robin(teams: list[str]) -> list[list[tuple[str | None, str | None]]]:
    """A double round robin by the circle method; an odd count gives each round one BYE."""
    slots: list[str | None] = list(teams) + ([None] if len(teams) % 2 else [])
    n, rounds = len(slots), []
    for r in range(n - 1):
        pairs = [(slots[i], slots[n - 1 - i]) for i in range(n // 2)]
        rounds.append([(a, b) if r % 2 else (b, a) for a, b in pairs])
        slots = [slots[0], slots[-1], *slots[1:-1]]
    return rounds + [[(b, a) for a, b in rnd] for rnd in rounds]


def league(code: str, teams: int, seed: int) -> tuple[list[dict], list[dict]]:
    """One league's (stats records, schedule records)."""
    rng = random.Random(f"{seed}:{code}")
    n_series = max(1, round(teams / TEAMS_PER_SERIES))
    clubs = club_names(max(2, teams // TEAMS_PER_CLUB), rng)
    stats, schedule = [], []
    for s in range(n_series):
        size = teams // n_series + (1 if s < teams % n_series else 0)
        label = f"Series {s + 1}" if s % 4 else f"Chicago {s + 1} SW"
        entries: list[tuple[str, str]] = []
        for club in rng.sample(clubs, min(size, len(clubs))):
            if len(entries) == size:
                break
            entries.append((club, ""))
            if rng.random() < 0.1 and len(entries) < size:  # a club with two teams in the series
                entries[-1] = (club, _SUB_TEAMS[0])
                entries.append((club, _SUB_TEAMS[1]))
        names = [_team_name(club, sub, label, rng.random() < 0.25) for club, sub in entries]
        stats.extend(_stats(rng, code, label, name) for name in names)
        day = SEASON_START + timedelta(days=s % 5)
        for r, rnd in enumerate(_round_robin(names)):
            for home, away in rnd:
                bye = home is None or away is None
                if bye and r:  # the scraper lists a BYE now and then, not every week
                    continue
                schedule.append(
                    {
                        "date": day.strftime("%m/%d/%Y"),
                        "time": "" if bye else "06:30 pm",
                        "home_team": home if home is not None else f" - {label.split(' ', 1)[1]}",
                        "away_team": away if away is not None else f" - {label.split(' ', 1)[1]}",
                        "location": "BYE" if bye else (home or "").split(" - ")[0],
                        "series": label,
                        "League": code,
                    }
                )
            day += timedelta(days=7)
    return stats, schedule


def write_leagues(folder: Path, teams: int, *, seed: int = 14, per_league: int = TEAMS_PER_LEAGUE) -> dict:
    """League folders BENCH_01... under `folder` with `teams` teams in all; returns what was written."""
    n_leagues = max(1, -(-teams // per_league))
    facts = {"teams": 0, "schedule_rows": 0, "leagues": [], "bytes": 0, "largest_file_bytes": 0}
    for i in range(n_leagues):
        code = f"BENCH_{i + 1:02d}"
        count = teams // n_leagues + (1 if i < teams % n_leagues else 0)
        stats, schedule = league(code, count, seed)
        (folder / code).mkdir(parents=True, exist_ok=True)
        for name, records in ((STATS_FILE, stats), (SCHEDULE_FILE, schedule)):
            data = json.dumps(records, indent=1).encode()
            if len(data) > MAX_FILE_BYTES:
                raise ValueError(f"{code}/{name}: {len(data):,} bytes, over sources.MAX_FILE_BYTES")
            (folder / code / name).write_bytes(data)
            facts["bytes"] += len(data)
            facts["largest_file_bytes"] = max(facts["largest_file_bytes"], len(data))
        facts["teams"] += len(stats)
        facts["schedule_rows"] += len(schedule)
        facts["leagues"].append(code)
    return facts
