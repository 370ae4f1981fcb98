"""Where user-owned rows point at teams: the database's foreign keys plus the declared columns.

The old system had polls without a foreign key, so discovery cannot rely on the catalogs alone;
and an app table this project does not know about is found through its foreign key to teams.
"""

from __future__ import annotations

from psycopg import Cursor, sql

from league_import.catalog import ETL_TABLES, TEAM_COLUMNS, TeamColumn, natural_key
from league_import.constraints import foreign_keys
from league_import.sql import statements


def team_columns(cur: Cursor) -> list[TeamColumn]:
    """Declared team columns, then any other user table's foreign key to teams."""
    declared = {(c.table, c.column) for c in TEAM_COLUMNS}
    found = [
        TeamColumn(table, column)
        for (table, column), (target, _, _) in foreign_keys(cur).items()
        if target == "teams" and table not in ETL_TABLES and (table, column) not in declared
    ]
    return [*TEAM_COLUMNS, *sorted(found, key=lambda c: (c.table, c.column))]


def columns_of(cur: Cursor, table: str) -> dict[str, bool]:
    """Column name -> NOT NULL, for public.<table>."""
    qualified = sql.Identifier("public", table).as_string(cur)
    return dict(cur.execute(statements("constraints")["column_facts"], {"table": qualified}).fetchall())


def row_id(cur: Cursor, table: str, team_column: str, alias: str = "t") -> sql.Composable:
    """A text id for a row: its id, or for a table without one its other key columns as JSON."""
    columns = columns_of(cur, table)
    if "id" in columns:
        return sql.SQL("{}::text").format(sql.Identifier(alias, "id"))
    key = natural_key(table)
    names = [c for c in (key.columns if key else columns) if c != team_column]
    pairs = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(alias, c)) for c in names)
    return sql.SQL("jsonb_build_object({})::text").format(pairs)
