"""Adoption: on an app's database, the rows an older importer wrote that are the sources' own
become the pipeline's, keeping their ids, instead of being written a second time.

The upsert asks this module, in its transaction, before it writes: the app's clubs, series and
teams that are not the pipeline's are keyed by the identity rules (the same rules as the files,
so a team stored under any spelling of its name is found); tonight's clubs and series are
adopted at once, and the teams are offered to the upsert's resolution (adoptable_teams), which
takes one only for a key no team of the pipeline holds. Matches and standings rows are adopted
by the upsert itself, by their natural key (league_import.upsert). A name the rules cannot read
stays the app's and is counted. On a target the pipeline owns there is nothing to adopt.
"""

from __future__ import annotations

from functools import partial

from psycopg import Cursor

from league_import.identity import TeamNameError, fold, parse_label, parse_team
from league_import.sql import compose, run
from league_import.target import current

_run = partial(run, "adoption")


def _copy(cur: Cursor, table: str, columns: tuple[str, ...], rows) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def adopt_reference_data(cur: Cursor, run_id: str) -> dict:
    """Key the app's clubs and series that are not the pipeline's, and adopt those of tonight's
    (the lowest id per key). Returns how many of each were adopted, and the names unreadable."""
    target = current()
    _run(cur, "create_adoptable")
    if target.owns_tables:
        return {}
    args = {"run_id": run_id}
    clubs = [(i, name, fold(name)) for i, name in _run(cur, "unowned_clubs").fetchall()]
    _copy(cur, "adoptable_clubs", ("id", "name", "name_key"), (c for c in clubs if c[2]))
    series, unreadable = [], 0
    for i, league_id, name in _run(cur, "unowned_series", args).fetchall():
        try:
            series.append((i, league_id, name, parse_label(name).key))
        except TeamNameError:
            unreadable += 1
    _copy(cur, "adoptable_series", ("id", "league_id", "name", "series_key"), series)
    return {
        "clubs": target.adopt(cur, "clubs", compose("adoption", "adopt_clubs"), args),
        "series": target.adopt(cur, "series", compose("adoption", "adopt_series"), args),
        "series_unreadable": unreadable,
    }


def prepare_teams(cur: Cursor, run_id: str) -> dict:
    """The app's teams of tonight's leagues that are not the pipeline's, keyed, one per key, in
    adoptable_teams for the upsert's resolution. Returns the teams unreadable and those left to
    the app because a lower id has the same key."""
    if current().owns_tables:
        return {}
    rows, unreadable = [], 0
    for i, league_id, series_id, name, label in _run(cur, "unowned_teams", {"run_id": run_id}).fetchall():
        try:
            ident = parse_team(name, label)
        except TeamNameError:
            unreadable += 1
            continue
        rows.append((i, league_id, series_id, name, ident.series_key, ident.team_key, ident.sub_team))
    columns = ("id", "league_id", "series_id", "team_name", "series_key", "team_key", "sub_team")
    _copy(cur, "adoptable_teams", columns, rows)
    same_key = [i for (i,) in _run(cur, "one_team_per_key").fetchall()]
    _run(cur, "analyze_adoptable")
    return {"teams_unreadable": unreadable, "teams_with_a_lower_id_of_the_same_key": sorted(same_key)}
