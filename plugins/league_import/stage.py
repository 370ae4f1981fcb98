"""The run's stage: the rows validate_constraints parsed, kept in the target database.

The files are read once, by the first task; later tasks load from the stage and never from the
files (which may change between two tasks). Each run has its own UNLOGGED partitions of
etl.stage_teams, etl.stage_schedule and etl.stage_stats: a retry of the first task rebuilds
them, and they are dropped when the run ends (or by the next run, after a crash).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from functools import partial

import psycopg
from psycopg import sql

from league_import.sources import SCHEDULE_FILE, STATS_FILE, STATS_NUMBERS, LeagueSource
from league_import.sql import run

_run = partial(run, "stage")

TEAM_COLUMNS = (
    "run_id",
    "league_code",
    "series_key",
    "series_label",
    "club",
    "club_key",
    "team_key",
    "sub_team",
    "team_name",
    "in_stats",
    "in_schedule",
    "seen_in",
)
SCHEDULE_COLUMNS = (
    "run_id",
    "league_code",
    "series_key",
    "match_date",
    "match_time",
    "home_key",
    "away_key",
    "location",
    "series_label",
    "home_name",
    "away_name",
)
STATS_COLUMNS = ("run_id", "league_code", "series_key", "team_key", *STATS_NUMBERS, "series_label", "team_name")


def suffix(run_id: str) -> str:
    return hashlib.sha1(run_id.encode()).hexdigest()[:16]


def _parts(run_id: str) -> dict[str, sql.Composable]:
    s = suffix(run_id)
    return {
        "teams": sql.Identifier("etl", f"stage_teams__{s}"),
        "schedule": sql.Identifier("etl", f"stage_schedule__{s}"),
        "stats": sql.Identifier("etl", f"stage_stats__{s}"),
        "run_id": sql.Literal(run_id),
    }


def open_stage(conn: psycopg.Connection, run_id: str) -> None:
    """Empty partitions for this run (a retry starts over); stages of ended runs are dropped."""
    with conn.transaction(), conn.cursor() as cur:
        drop_ended(cur, keep=run_id)
        _run(cur, "register", {"run_id": run_id, "suffix": suffix(run_id)})
        _run(cur, "create_partitions", **_parts(run_id))


# Column types for COPY in binary format: the server reads dates, times and numbers as they are
# instead of parsing text (900,000 matches staged in about half the time).
_TYPES = {
    TEAM_COLUMNS: ["text"] * 9 + ["bool"] * 2 + ["text"],
    SCHEDULE_COLUMNS: ["text"] * 3 + ["date", "time"] + ["text"] * 6,
    STATS_COLUMNS: ["text"] * 4 + ["int4"] * len(STATS_NUMBERS) + ["text"] * 2,
}


def _copy(cur: psycopg.Cursor, table: sql.Composable, columns: tuple[str, ...], rows) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(statement) as copy:
        copy.set_types(_TYPES[columns])
        for row in rows:
            copy.write_row(row)


def add_league(conn: psycopg.Connection, run_id: str, league: LeagueSource) -> None:
    """Stage one validated league, in one transaction."""
    parts, code = _parts(run_id), league.code
    with conn.transaction(), conn.cursor() as cur:
        _copy(
            cur,
            parts["teams"],
            TEAM_COLUMNS,
            (
                (
                    run_id,
                    code,
                    t.series_key,
                    t.series_label,
                    t.club,
                    t.club_key,
                    t.team_key,
                    t.sub_team,
                    t.team_name,
                    t.in_stats,
                    t.in_schedule,
                    t.seen_in,
                )
                for t in league.teams
            ),
        )
        _copy(cur, parts["schedule"], SCHEDULE_COLUMNS, ((run_id, code, *row) for row in league.schedule))
        _copy(cur, parts["stats"], STATS_COLUMNS, ((run_id, code, *row) for row in league.stats))
        for f in league.files:
            _run(cur, "record_file", {"run_id": run_id, "league": code, **asdict(f)})
        _run(cur, "add_league", {"run_id": run_id, "league": code})


def close_stage(cur: psycopg.Cursor, run_id: str) -> None:
    """Analyze the staged rows, so the loads plan well (one ANALYZE, after the last league)."""
    _run(cur, "analyze", **_parts(run_id))


def staged_leagues(cur: psycopg.Cursor, run_id: str) -> list[str] | None:
    """The leagues this run staged, or None when it has no stage (the first task never ran)."""
    found = _run(cur, "staged", {"run_id": run_id}).fetchone()
    return None if found is None else list(found[0])


def implied_counts(cur: psycopg.Cursor, run_id: str) -> dict[str, dict[str, int | None]]:
    """Per league, the rows the files imply: teams, series, clubs, schedule and stats rows (None
    for a table whose file was absent tonight: its stored rows are kept, not reconciled)."""
    names = ("teams", "series", "clubs", "schedule", "series_stats")
    params = {"run_id": run_id, "schedule_file": SCHEDULE_FILE, "stats_file": STATS_FILE}
    return {code: dict(zip(names, counts)) for code, *counts in _run(cur, "counts", params).fetchall()}


def drop_stage(cur: psycopg.Cursor, run_id: str) -> None:
    _run(cur, "drop_partitions", **_parts(run_id))
    _run(cur, "unregister", {"run_id": run_id})


def discard(cur: psycopg.Cursor, run_id: str) -> None:
    """A stage that must not be used (a later league was bad): its rows and its files' record."""
    drop_stage(cur, run_id)
    _run(cur, "forget_files", {"run_id": run_id})


def drop_ended(cur: psycopg.Cursor, keep: str | None = None) -> int:
    """Drop the stages of runs that are no longer running (a crashed run leaves its stage)."""
    ended = _run(cur, "ended_stages", {"keep": keep}).fetchall()
    for run_id, _ in ended:
        drop_stage(cur, run_id)
    return len(ended)
