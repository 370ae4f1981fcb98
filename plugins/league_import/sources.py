"""Read and validate one league folder of scraper JSON into normalised frames.

Every error names the file, the record index and the field, so an operator can open the file
and find the problem; nothing is written until every selected league has been read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from league_import.identity import TeamNameError, clean, is_bye, parse_team, series_key

STATS_FILE = "series_stats.json"
SCHEDULE_FILE = "schedules.json"
STATS_NUMBERS = {
    "points": "points",
    "matches.won": "matches_won",
    "matches.lost": "matches_lost",
    "matches.tied": "matches_tied",
    "lines.won": "lines_won",
    "lines.lost": "lines_lost",
    "lines.for": "lines_for",
    "lines.ret": "lines_ret",
    "sets.won": "sets_won",
    "sets.lost": "sets_lost",
    "games.won": "games_won",
    "games.lost": "games_lost",
}
STATS_TEXT = ("series", "team", "league_id")
SCHEDULE_TEXT = ("date", "time", "home_team", "away_team", "location", "series", "League")
# Reading costs about 5x a file's size in memory (a 36 MB file peaks at 283 MB): 50 MB keeps a
# run under the benchmarks' 500 MB bound, 40x the size of a real season's file.
MAX_FILE_BYTES = 50 * 1024 * 1024


class SourceError(ValueError):
    """Bad input: the message names the file or param and the record."""


@dataclass
class LeagueSource:
    """One league's validated, normalised rows, ready for staging."""

    code: str
    teams: pd.DataFrame  # series_key, series_name, club, club_key, team_name, team_key, sub_team
    schedule: pd.DataFrame  # series_key, match_date, match_time, home_key, away_key, location
    stats: pd.DataFrame  # series_key, team_key, and the STATS_NUMBERS columns
    counts: dict[str, int] = field(default_factory=dict)


def select_leagues(source_dir: str | Path, leagues: list[str] | None) -> list[str]:
    """The league codes to import: the `leagues` param, or every subfolder when it is empty."""
    root = Path(source_dir)
    if not root.is_dir():
        raise SourceError(f"param source_dir: '{root}' is not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not leagues:
        if not found:
            raise SourceError(f"param source_dir: '{root}' has no league subfolders")
        return found
    if not isinstance(leagues, list) or not all(isinstance(c, str) for c in leagues):
        raise SourceError(f"param leagues: expected an array of league codes, got {leagues!r}")
    unknown = [c for c in leagues if c not in found]
    if unknown:
        raise SourceError(
            f"param leagues: no folder for {', '.join(unknown)} in '{root}' (found: {', '.join(found) or 'none'})"
        )
    return list(dict.fromkeys(leagues))


def read_leagues(source_dir: str | Path, leagues: list[str] | None) -> list[LeagueSource]:
    """Read every selected league, failing on the first bad file before anything is written."""
    return [read_league(Path(source_dir) / code) for code in select_leagues(source_dir, leagues)]


def read_league(folder: Path) -> LeagueSource:
    code = folder.name
    stats_path, schedule_path = folder / STATS_FILE, folder / SCHEDULE_FILE
    if not stats_path.exists() and not schedule_path.exists():
        raise SourceError(f"{folder}: league folder has neither {STATS_FILE} nor {SCHEDULE_FILE}")
    stats = _frame(stats_path, (*STATS_TEXT, *STATS_NUMBERS), "league_id", code)
    schedule = _frame(schedule_path, SCHEDULE_TEXT, "League", code)

    named: dict[tuple[str, str], tuple[Path, int, str]] = {}  # (series, team) -> first place seen
    if stats is not None:
        for i, row in enumerate(stats[["series", "team"]].itertuples(index=False)):
            named.setdefault((row.series, row.team), (stats_path, i, "team"))
    bye_rows = 0
    if schedule is not None:
        # A side is a BYE when its name is only a series label; the other side of a BYE row is a real team.
        for side in ("home", "away"):
            schedule[f"{side}_bye"] = [is_bye(t, None, s) for t, s in zip(schedule[f"{side}_team"], schedule.series)]
        bye_rows = int((schedule.home_bye | schedule.away_bye).sum())
        for side in ("home", "away"):
            live = schedule[~schedule[f"{side}_bye"]]
            for i, s, t in zip(live.index, live.series, live[f"{side}_team"]):
                named.setdefault((s, t), (schedule_path, int(i), f"{side}_team"))

    identities = {}
    for (series, team), (path, i, fld) in named.items():
        try:
            identities[(series, team)] = parse_team(team, series)
        except TeamNameError as exc:
            raise SourceError(f"{path}: record {i}: field '{fld}': {exc}") from None

    teams = _teams_frame(named, identities, stats_path)
    _check_collisions(teams, stats, identities, stats_path)
    return LeagueSource(
        code=code,
        teams=teams.drop(columns=["from_stats", "source_name"]),
        schedule=_schedule_frame(schedule, identities, schedule_path),
        stats=_stats_frame(stats, identities),
        counts={
            "stats_records": 0 if stats is None else len(stats),
            "schedule_records": 0 if schedule is None else len(schedule),
            "bye_rows": bye_rows,
        },
    )


def _frame(path: Path, required: tuple[str, ...], league_field: str, code: str) -> pd.DataFrame | None:
    """Parse and check one file; None when the file is absent (the other file may carry the league)."""
    if not path.exists():
        return None
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SourceError(
            f"{path}: {path.stat().st_size:,} bytes is over the limit of {MAX_FILE_BYTES:,} bytes per file"
        )
    try:
        records: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(records, list):
        raise SourceError(f"{path}: expected a JSON array of records, found {type(records).__name__}")
    if not records:
        raise SourceError(f"{path}: the array holds no records")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise SourceError(f"{path}: record {i}: expected an object, found {type(rec).__name__}")
    frame = pd.json_normalize(records)
    for col in required:
        if col not in frame.columns:
            raise SourceError(f"{path}: record 0: missing field '{col}'")
        missing = frame[col].isna()
        if missing.any():
            raise SourceError(f"{path}: record {int(missing.idxmax())}: missing field '{col}'")
    for col in required:
        if col in STATS_NUMBERS:
            ok = frame[col].map(lambda v: isinstance(v, int) and not isinstance(v, bool))
            kind = "a whole number"
        else:
            ok = frame[col].map(lambda v: isinstance(v, str))
            kind = "a string"
        if not ok.all():
            i = int((~ok).idxmax())
            raise SourceError(f"{path}: record {i}: field '{col}' must be {kind}, got {frame[col][i]!r}")
    wrong = frame[league_field] != code
    if wrong.any():
        i = int(wrong.idxmax())
        raise SourceError(
            f"{path}: record {i}: field '{league_field}' is '{frame[league_field][i]}' but the folder is '{code}'"
        )
    return frame


def _teams_frame(named, identities, stats_path: Path) -> pd.DataFrame:
    rows = [
        {
            "series_key": ident.series_key,
            "series_label": clean(series),
            "club": ident.club,
            "club_key": ident.club.casefold(),
            "team_key": ident.team_key,
            "sub_team": ident.sub_team,
            "source_name": clean(team),
            "from_stats": path == stats_path,
        }
        for (series, team), ident in identities.items()
        for path, _, _ in [named[(series, team)]]
    ]
    frame = pd.DataFrame(rows)
    # The stats file's spelling wins for display; the schedule's stands in where stats are absent.
    frame = frame.sort_values(["from_stats", "source_name"], ascending=[False, True], kind="stable")
    series_names = frame.drop_duplicates("series_key").set_index("series_key")["series_label"]
    teams = frame.drop_duplicates(["series_key", "team_key"]).copy()
    teams["series_name"] = teams["series_key"].map(series_names)
    teams["team_name"] = teams["source_name"]
    return teams[
        [
            "series_key",
            "series_name",
            "club",
            "club_key",
            "team_name",
            "team_key",
            "sub_team",
            "from_stats",
            "source_name",
        ]
    ].reset_index(drop=True)


def _check_collisions(teams: pd.DataFrame, stats: pd.DataFrame | None, identities, stats_path: Path) -> None:
    """Two stats rows of one series that resolve to one team would be a guess: refuse them."""
    if stats is None:
        return
    keys = [(identities[(s, t)].series_key, identities[(s, t)].team_key) for s, t in zip(stats.series, stats.team)]
    seen: dict[tuple[str, str], int] = {}
    for i, key in enumerate(keys):
        if key in seen:
            raise SourceError(
                f"{stats_path}: record {i}: team '{stats.team[i]}' is the same team as record {seen[key]} "
                f"('{stats.team[seen[key]]}') in series '{stats.series[i]}'"
            )
        seen[key] = i


def _schedule_frame(schedule: pd.DataFrame | None, identities, path: Path) -> pd.DataFrame:
    columns = ["series_key", "match_date", "match_time", "home_key", "away_key", "location"]
    if schedule is None:
        return pd.DataFrame(columns=columns)
    dates = pd.to_datetime(schedule["date"], format="%m/%d/%Y", errors="coerce")
    if dates.isna().any():
        i = int(dates.isna().idxmax())
        raise SourceError(f"{path}: record {i}: field 'date' is {schedule['date'][i]!r}, expected MM/DD/YYYY")
    times_text = schedule["time"].str.strip()
    times = pd.to_datetime(times_text, format="%I:%M %p", errors="coerce")
    bad_time = times.isna() & (times_text != "")
    if bad_time.any():
        i = int(bad_time.idxmax())
        raise SourceError(f"{path}: record {i}: field 'time' is {schedule['time'][i]!r}, expected like '06:30 pm'")

    def key(side: str) -> list[str | None]:
        return [
            None if bye else identities[(s, t)].team_key
            for s, t, bye in zip(schedule.series, schedule[f"{side}_team"], schedule[f"{side}_bye"])
        ]

    return pd.DataFrame(
        {
            "series_key": [series_key(s) for s in schedule.series],
            "match_date": dates.dt.date,
            "match_time": [None if pd.isna(t) else t.time() for t in times],
            "home_key": key("home"),
            "away_key": key("away"),
            "location": schedule["location"].map(clean),
        }
    )[columns]


def _stats_frame(stats: pd.DataFrame | None, identities) -> pd.DataFrame:
    columns = ["series_key", "team_key", *STATS_NUMBERS.values()]
    if stats is None:
        return pd.DataFrame(columns=columns)
    idents = [identities[(s, t)] for s, t in zip(stats.series, stats.team)]
    frame = stats[list(STATS_NUMBERS)].rename(columns=STATS_NUMBERS)
    frame.insert(0, "team_key", [i.team_key for i in idents])
    frame.insert(0, "series_key", [i.series_key for i in idents])
    return frame[columns].reset_index(drop=True)
