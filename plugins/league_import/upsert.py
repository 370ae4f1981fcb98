"""Incremental team upsert from the run's stage: ids preserved, only what changed is written.

One transaction for every staged league (all or nothing): re-key when the identity rules
changed, resolve each staged team to its id (natural key, else alias, else an existing team of
the target with the same key, adopted), check the deactivation guard before any team is written
(a refusal rolls everything back), then insert the new rows, update the changed ones, deactivate
the teams that left (never deleted), archive and remove the matches and stats rows that left,
and record suspected renames. Only the pipeline's own rows are compared, changed or removed; on
an app's database its existing rows of tonight's matches and standings are adopted, not
duplicated (league_import.adoption). A re-import of unchanged files writes no row, locks no row
and takes no value from any sequence.
"""

from __future__ import annotations

from functools import partial

import psycopg
from psycopg import Rollback, sql

from league_import import renames
from league_import.adoption import adopt_reference_data, prepare_teams
from league_import.constraints import add_as_defined, drop_constraint, keys_for_dry_run
from league_import.errors import GuardError, SourceError, TerminalError
from league_import.history import rekey_teams
from league_import.pgcatalog import foreign_key_definitions
from league_import.sources import SCHEDULE_FILE, STATS_FILE, STATS_NUMBERS
from league_import.sql import compose, run
from league_import.target import current

_run = partial(run, "upsert")


def _per_league(rows) -> dict[int, int]:
    return {league_id: count for league_id, count in rows}


def guard(cur: psycopg.Cursor, run_id: str, max_ratio: float) -> dict[str, dict]:
    """Per league: active teams, how many would leave, and whether the schedule is a new season.

    Raises GuardError, naming the param to raise, when a league would deactivate more than
    `max_ratio` of its active teams. Read-only.
    """
    if not 0 <= max_ratio <= 1:
        raise SourceError(f"param max_deactivation_ratio: {max_ratio} is not between 0 and 1")
    plans = {}
    for code, active, leaving, last_end, new_start in _run(cur, "guard", {"run_id": run_id}).fetchall():
        season_change = bool(last_end and new_start and new_start > last_end)
        plans[code] = {
            "active_before": active,
            "to_deactivate": leaving,
            "season_change": season_change,
            **({"last_season_end": str(last_end), "new_schedule_start": str(new_start)} if season_change else {}),
        }
        if active and leaving / active > max_ratio:
            season = (
                f" The schedule starts on {new_start}, after the last imported season ended on {last_end}: this "
                "looks like a new season, where clubs that move series are different teams."
                if season_change
                else ""
            )
            raise GuardError(
                f"league {code}: this run would deactivate {leaving} of {active} active teams "
                f"({leaving / active:.0%}), more than max_deactivation_ratio={max_ratio}.{season} Nothing was "
                "written. If this is expected (a new season), trigger again with the param "
                "max_deactivation_ratio raised (1.0 allows any share)."
            )
    return plans


STATS_FIELDS = ("series_id", *STATS_NUMBERS)
SCHEDULE_FIELDS = ("match_time", "location")


def _fragment(name: str, **parts: sql.Composable) -> sql.Composed:
    return compose("upsert", name, **parts)


def upsert_teams(conn: psycopg.Connection, run_id: str, *, max_ratio: float, dry_run: bool = False) -> dict:
    """Load every staged league of this run in one transaction; returns the counts per league."""
    target = current()
    with conn.transaction() as tx, conn.cursor() as cur:
        if dry_run:
            keys_for_dry_run(conn)
        _run(cur, "settings")
        rekeyed = rekey_teams(cur, run_id)
        forgotten = target.forget_stale(cur)
        deferred = _drop_foreign_keys(cur, target)
        _run(cur, "staged_leagues_table", {"run_id": run_id, "schedule_file": SCHEDULE_FILE, "stats_file": STATS_FILE})
        args = {"run_id": run_id}
        adoption = adopt_reference_data(cur, run_id)
        clubs = target.insert(cur, "clubs", _new(cur, "new_clubs", "clubs"), args)
        leagues = target.insert(cur, "leagues", _new(cur, "new_leagues", "leagues"), args)
        _run(cur, "stage_series", args)
        series_created = target.insert(cur, "series", _new(cur, "new_series", "series"), args)
        series_renamed = target.update(cur, "series", _fragment("renamed_series"), ("name",))
        prepare_teams(cur, run_id)
        _run(cur, "resolve_teams", args)
        _run(cur, "analyze_teams")
        adoption["teams"] = target.adopt(cur, "teams", _fragment("adopted_teams"))
        conflicts = _run(cur, "alias_conflicts").fetchall()
        plans = guard(cur, run_id, max_ratio)

        _run(cur, "issue_team_ids", next_id=target.next_id(cur, "teams"))
        target.insert(cur, "teams", _fragment("new_teams"))
        _run(cur, "team_updates")
        target.update(cur, "teams", sql.SQL("SELECT * FROM team_updates"), TEAM_FIELDS)
        updated = _per_league(_run(cur, "updated_per_league").fetchall())
        _run(cur, "deactivate_teams")
        target.update(cur, "teams", sql.SQL("SELECT * FROM deactivated"), ("is_active",))
        counts = _run(cur, "team_counts").fetchall()

        matches = _fragment("staged_matches")
        if target.tracked("schedule"):
            adopt = _fragment(
                "adopt_schedule", staged_matches=matches, adopt_match=target.adopt_match("schedule", "t", "r")
            )
            adoption["schedule"] = target.adopt(cur, "schedule", adopt, args)
        changed = target.differs("schedule", "t", "r", SCHEDULE_FIELDS)
        _run(cur, "schedule_changes", args, staged_matches=matches, changed=changed)
        _run(cur, "analyze_schedule")
        unresolved = _run(cur, "unresolved_schedule").fetchone()[0]
        if unresolved:  # the stage is validated: this is a bug, not bad input
            raise TerminalError(f"{unresolved} staged matches name a team that was not staged")
        schedule = _for_users(cur, target, "schedule", args, SCHEDULE_FIELDS)
        schedule |= _write(cur, target, "schedule", run_id, SCHEDULE_FIELDS)
        if target.tracked("series_stats"):
            adoption["series_stats"] = target.adopt(cur, "series_stats", _fragment("adopt_stats"), args)
        _run(cur, "stats_changes", args, changed=target.differs("series_stats", "t", "r", STATS_FIELDS))
        _run(cur, "analyze_stats")
        stats = _for_users(cur, target, "stats", args, STATS_FIELDS)
        stats |= _write(cur, target, "stats", run_id, STATS_FIELDS)
        _add_foreign_keys(cur, deferred)
        suspects = renames.detect(cur, run_id)

        report: dict = {"dry_run": dry_run, "leagues": {}, "clubs_created": clubs, "leagues_created": leagues}
        report["series_created"], report["series_renamed"] = series_created, series_renamed
        for league_id, code, in_sources, created, by_alias, deactivated, adopted in counts:
            report["leagues"][code] = {
                **plans.get(code, {}),
                "league_id": league_id,
                "teams_in_sources": in_sources,
                "teams_created": created,
                "teams_updated": updated.get(league_id, 0),
                "teams_unchanged": in_sources - created - updated.get(league_id, 0),
                "teams_by_alias": by_alias,
                "teams_deactivated": deactivated,
                **({"teams_adopted": adopted} if not target.owns_tables else {}),
                **{f"schedule_{k}": v.get(league_id, 0) for k, v in schedule.items()},
                **{f"stats_{k}": v.get(league_id, 0) for k, v in stats.items()},
            }
        report["alias_conflicts"] = [
            {"league": c[0], "series": c[1], "spelling": c[2], "alias_team_id": c[3]} for c in conflicts
        ]
        report["suspected_renames"] = suspects
        if not target.owns_tables:
            report["adopted"] = adoption
            report["no_longer_the_pipelines"] = {k: v for k, v in forgotten.items() if v}
        if rekeyed:
            report["rekey"] = rekeyed
        if dry_run:
            raise Rollback(tx)
    return report


TEAM_FIELDS = ("team_name", "club_id", "series_id", "sub_team", "is_active")


def _new(cur: psycopg.Cursor, statement: str, entity: str) -> sql.Composable:
    """The rows a named statement finds new, each with a new id of the entity."""
    return _fragment(statement, next_id=current().next_id(cur, entity))


def _drop_foreign_keys(cur: psycopg.Cursor, target) -> list[tuple[str, str, str]]:
    """On a first import (no team yet: no app row can point at one) into tables the pipeline
    owns, their foreign keys, dropped until its inserts are done: one check per key instead of
    one per row, 10 s less for 900,000 matches. An app's tables are never altered."""
    if not target.owns_tables or not _run(cur, "first_import").fetchone()[0]:
        return []
    found = foreign_key_definitions(cur, ["teams", "schedule", "series_stats"])
    for table, name, _ in found:
        drop_constraint(cur, table, name)
    return found


def _add_foreign_keys(cur: psycopg.Cursor, dropped: list[tuple[str, str, str]]) -> None:
    """The keys _drop_foreign_keys took off, as they were; adding one checks every row at once."""
    for table, name, definition in dropped:
        add_as_defined(cur, table, name, definition)


def _for_users(cur: psycopg.Cursor, target, kind: str, args: dict, fields: tuple[str, ...]) -> dict[str, dict]:
    """Per league, tonight's changes as the app's users see them (rows told apart by their teams'
    natural keys, not ids): `for_users_added`, `_changed`, `_removed`; and `rewritten`, rows
    written again only because their teams' ids changed. Counted before _write removes rows."""
    entity = "schedule" if kind == "schedule" else "series_stats"
    out: dict[str, dict[int, int]] = {
        name: {} for name in ("for_users_added", "for_users_changed", "for_users_removed", "rewritten")
    }
    counts = _run(cur, f"{kind}_counts").fetchall()
    found = {change for change, _, _ in counts}
    if not (found & {"gone", "changed"} and found & {"new", "changed"}):  # nothing to pair (a first import)
        for change, league_id, n in counts:
            out[{"new": "for_users_added", "gone": "for_users_removed"}[change]][league_id] = n
        return out
    _run(cur, "meanings_before_run", args)
    _run(cur, "analyze_meanings")
    changed = target.differs(entity, "g", "n", fields)
    for league_id, change, n in _run(cur, f"{kind}_for_users", args, changed=changed).fetchall():
        out["rewritten" if change == "rewritten" else f"for_users_{change}"][league_id] = n
    return out


def _write(cur: psycopg.Cursor, target, kind: str, run_id: str, fields: tuple[str, ...]) -> dict[str, dict[int, int]]:
    """Archive and remove the rows that left the sources, insert the new, update the changed."""
    entity = "schedule" if kind == "schedule" else "series_stats"
    target.delete(cur, entity, _fragment(f"{kind}_gone"), run_id, "left_sources")
    target.insert(cur, entity, _fragment(f"{kind}_new", next_id=target.next_id(cur, entity)))
    target.update(cur, entity, _fragment(f"{kind}_changed"), fields)
    out: dict[str, dict[int, int]] = {"deleted": {}, "created": {}, "updated": {}}
    names = {"gone": "deleted", "new": "created", "changed": "updated"}
    for change, league_id, n in _run(cur, f"{kind}_counts").fetchall():
        out[names[change]][league_id] = n
    return out
