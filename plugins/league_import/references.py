"""Where rows point at teams: the database's foreign keys plus the declared columns; and how a
row is named across transactions.

The old system had polls without a foreign key, so discovery cannot rely on the catalogs alone;
and an app table this project does not know about is found through its foreign key to teams.
"""

from __future__ import annotations

from psycopg import Cursor, sql

from league_import.catalog import ETL_TABLES, REFERENCES, TEAM_COLUMNS, TeamColumn, natural_key
from league_import.pgcatalog import foreign_keys, table_columns


def team_columns(cur: Cursor) -> list[TeamColumn]:
    """User-owned team columns: the declared ones, then any other user table's foreign key to teams."""
    declared = {(c.table, c.column) for c in TEAM_COLUMNS}
    found = [
        TeamColumn(fk.table, fk.column)
        for fk in foreign_keys(cur).values()
        if fk.target == "teams" and fk.table not in ETL_TABLES and (fk.table, fk.column) not in declared
    ]
    return [*TEAM_COLUMNS, *sorted(found, key=lambda c: (c.table, c.column))]


def team_references(cur: Cursor) -> list[tuple[str, str]]:
    """Every (table, column) holding a team id: ETL-owned and user-owned, declared or found."""
    etl = [(r.table, r.column) for r in REFERENCES if r.to_teams and r.table in ETL_TABLES]
    found = [(fk.table, fk.column) for fk in foreign_keys(cur).values() if fk.target == "teams"]
    return list(dict.fromkeys([*etl, *((c.table, c.column) for c in team_columns(cur)), *found]))


def row_id(cur: Cursor, table: str, team_column: str, alias: str = "t", *, with_team: bool = False) -> sql.Composable:
    """A text that names one row of `table` whatever happens to it: its id; for a table without
    one, its natural key as JSON (all its columns when it has none).

    Without `with_team` the team column is left out (a backup keeps the team id beside it);
    with it, the name stays unique however many rows of one user wait in quarantine.
    """
    columns = table_columns(cur).get(table, {})
    if "id" in columns:
        return sql.SQL("{}::text").format(sql.Identifier(alias, "id"))
    key = natural_key(table)
    names = [c for c in (key.columns if key else columns) if with_team or c != team_column]
    pairs = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(alias, c)) for c in names)
    return sql.SQL("jsonb_build_object({})::text").format(pairs)
