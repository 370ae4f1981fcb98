"""Incremental team upsert: stage by COPY, then one set-based statement per table.

Team ids survive because teams are matched on their natural key (league, series, team_key),
never re-created; teams that leave the sources are deactivated, never deleted. Each league is
one transaction, so a retry after a failure starts from a clean state.
"""

from __future__ import annotations

import pandas as pd
import psycopg
from psycopg import sql

from league_import.constraints import keys_for_dry_run
from league_import.sources import STATS_NUMBERS, LeagueSource, SourceError
from league_import.sql import statements

TEAM_COLUMNS = ("series_key", "series_name", "club", "club_key", "team_name", "team_key", "sub_team")
SCHEDULE_COLUMNS = ("series_key", "match_date", "match_time", "home_key", "away_key", "location")
STATS_COLUMNS = ("series_key", "team_key", *STATS_NUMBERS.values())


class DeactivationGuardError(RuntimeError):
    """A run would deactivate more of a league's teams than max_deactivation_ratio allows."""


def check_deactivation_guard(conn: psycopg.Connection, leagues: list[LeagueSource], max_ratio: float) -> dict:
    """Fail before any write when a league would lose too many active teams.

    Read-only: compares the league's active natural keys with the incoming ones.
    """
    if not 0 <= max_ratio <= 1:
        raise SourceError(f"param max_deactivation_ratio: {max_ratio} is not between 0 and 1")
    plans = {}
    query = statements("upsert")["current_teams"]
    for league in leagues:
        incoming = set(zip(league.teams.series_key, league.teams.team_key))
        with conn.cursor() as cur:
            known = cur.execute(query, {"code": league.code}).fetchall()
        conn.rollback()
        active = {(s, t) for s, t, is_active in known if is_active}
        leaving = len(active - incoming)
        plans[league.code] = {"active_before": len(active), "to_deactivate": leaving}
        if active and leaving / len(active) > max_ratio:
            raise DeactivationGuardError(
                f"league {league.code}: this run would deactivate {leaving} of {len(active)} active teams "
                f"({leaving / len(active):.0%}), more than max_deactivation_ratio={max_ratio}. "
                "Nothing was written. If this is expected (a new season), trigger again with the param "
                "max_deactivation_ratio raised (1.0 allows any share)."
            )
    return plans


def load_league(conn: psycopg.Connection, league: LeagueSource, *, dry_run: bool = False) -> dict:
    """Upsert one league's teams, schedule and stats in one transaction; returns its counts."""
    q = statements("upsert")
    with conn.transaction() as tx, conn.cursor() as cur:
        if dry_run:
            keys_for_dry_run(conn)
        cur.execute(q["create_staging"])
        copy_frame(cur, "stage_teams", league.teams, TEAM_COLUMNS)
        copy_frame(cur, "stage_schedule", league.schedule, SCHEDULE_COLUMNS)
        copy_frame(cur, "stage_stats", league.stats, STATS_COLUMNS)

        league_id = cur.execute(q["upsert_league"], {"code": league.code}).fetchone()[0]
        args = {"league_id": league_id}
        clubs_created = cur.execute(q["upsert_clubs"]).rowcount
        series_written = cur.execute(q["upsert_series"], args).rowcount
        created, updated = cur.execute(q["upsert_teams"], args).fetchone()
        deactivated = cur.execute(q["deactivate_missing_teams"], args).rowcount

        cur.execute(q["resolve_schedule"], args)
        unresolved = cur.execute(q["unresolved_schedule"]).fetchone()[0]
        if unresolved:
            raise RuntimeError(f"league {league.code}: {unresolved} schedule rows name a team that was not staged")
        schedule_deleted = cur.execute(q["delete_stale_schedule"], args).rowcount
        schedule_created, schedule_updated = cur.execute(q["upsert_schedule"], args).fetchone()
        cur.execute(q["resolve_stats"], args)
        stats_deleted = cur.execute(q["delete_stale_stats"], args).rowcount
        stats_created, stats_updated = cur.execute(q["upsert_stats"], args).fetchone()

        report = {
            "league_id": league_id,
            "teams_in_sources": len(league.teams),
            "teams_created": created,
            "teams_updated": updated,
            "teams_unchanged": len(league.teams) - created - updated,
            "teams_deactivated": deactivated,
            "clubs_created": clubs_created,
            "series_written": series_written,
            "schedule_rows": len(league.schedule),
            "schedule_created": schedule_created,
            "schedule_updated": schedule_updated,
            "schedule_deleted": schedule_deleted,
            "stats_rows": len(league.stats),
            "stats_written": stats_created + stats_updated,
            "stats_deleted": stats_deleted,
            **league.counts,
        }
        if dry_run:
            raise psycopg.Rollback(tx)
    return report


def copy_frame(cur: psycopg.Cursor, table: str, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """COPY a frame into a table; rows go as Python values, so None is NULL and '' stays ''."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    # Column by column: Python values with None for every missing one (pandas would send NaN).
    values = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in columns]
    rows = zip(*values)
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
