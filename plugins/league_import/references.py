"""Where rows point at teams: the database's foreign keys plus the target's declared columns; and
how a row is named across transactions.

The old system had polls without a foreign key, so discovery cannot rely on the catalogs alone;
and an app table this project does not know about is found through its foreign key to teams. On
an app's database the pipeline's own tables hold rows of the app's too (practices in schedule):
their team columns are repaired as well, for the rows the pipeline did not write.
"""

from __future__ import annotations

from psycopg import Cursor, sql

from league_import import pgcatalog
from league_import.catalog import NaturalKey, TeamColumn
from league_import.pgcatalog import foreign_keys, table_columns
from league_import.target import current


def team_columns(cur: Cursor) -> list[TeamColumn]:
    """The team columns restore_mapping repairs: the target's declared ones, then any other
    table's foreign key to teams (on an app's database, the pipeline's own tables' too, for the
    app's rows in them)."""
    target = current()
    declared = target.declared_team_columns()
    seen = {(c.table, c.column) for c in declared}
    found = []
    for fk in foreign_keys(cur).values():
        if fk.target != target.table_name("teams") or (fk.table, fk.column) in seen:
            continue
        entity = target.entity_of(fk.table)
        if entity is None:
            found.append(TeamColumn(fk.table, fk.column))
        elif target.tracked(entity):
            found.append(TeamColumn(fk.table, fk.column, owned_by=entity))
    return [*declared, *sorted(found, key=lambda c: (c.table, c.column))]


def team_references(cur: Cursor) -> list[tuple[str, str]]:
    """Every (table, column) holding a team id: the pipeline's own tables', the user tables',
    declared or found."""
    target = current()
    teams = target.table_name("teams")
    own = [(r.table, r.column) for r in target.references() if r.to_teams and r.table in target.etl_tables]
    found = [(fk.table, fk.column) for fk in foreign_keys(cur).values() if fk.target == teams]
    return list(dict.fromkeys([*own, *((c.table, c.column) for c in team_columns(cur)), *found]))


def row_id(cur: Cursor, table: str, team_column: str, alias: str = "t", *, with_team: bool = False) -> sql.Composable:
    """A text that names one row of `table` whatever happens to it: its id; for a table without
    one, its natural key as JSON (all its columns when it has none).

    Without `with_team` the team column is left out (a backup keeps the team id beside it);
    with it, the name stays unique however many rows of one user wait in quarantine.
    """
    columns = table_columns(cur).get(table, {})
    if "id" in columns:
        return sql.SQL("{}::text").format(sql.Identifier(alias, "id"))
    key = current().natural_key(table)
    names = [c for c in (key.columns if key else columns) if with_team or c != team_column]
    pairs = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(alias, c)) for c in names)
    return sql.SQL("jsonb_build_object({})::text").format(pairs)


def row_key(cur: Cursor, table: str, column: str) -> NaturalKey | None:
    """What makes two rows of a table one row when a team id moves: the key the target declares,
    else the table's own unique key that holds the team column (an app's saved lineups are unique
    per user, team and name): a move onto a team where the same row exists is settled by the
    dedup rule, the copy archived, not refused."""
    declared = current().natural_key(table)
    if declared is not None:
        return declared
    for key in pgcatalog.table_constraints(cur, table):
        if key.kind == "u" and column in key.columns:
            return NaturalKey(table, key.columns)
    return None


def not_owned(column: TeamColumn, alias: str = "t") -> sql.Composable:
    """A condition on a row of the column's table (alias `alias`): true unless the row is one the
    pipeline wrote (then the upsert keeps it right, not the repair)."""
    if column.owned_by is None:
        return sql.SQL("true")
    target = current()
    return sql.SQL("NOT EXISTS (SELECT 1 FROM {} o WHERE o.id = {} AND o.owned)").format(
        target.relation(column.owned_by), sql.Identifier(alias, target.column(column.owned_by, "id"))
    )


def user_tables(cur: Cursor) -> list[str]:
    """The tables of user data: those the target names, and every table whose team column the
    repair writes (not the pipeline's own tables, whose counts move with the sources)."""
    tables = [c.table for c in team_columns(cur) if c.owned_by is None]
    return list(dict.fromkeys([*current().user_tables, *tables]))
