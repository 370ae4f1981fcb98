"""Copies of removed rows in etl_archive.<table>: nothing is removed without one (CONTRACT section 5)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from league_import.sql import statements

ARCHIVE_SCHEMA = "etl_archive"
EXTRA_COLUMNS = (("run_id", "text"), ("reason", "text"), ("archived_at", "timestamptz NOT NULL DEFAULT now()"))


def live_columns(cur: psycopg.Cursor, table: str) -> list[tuple[str, str]]:
    """(name, type) of public.<table>, in order."""
    qualified = sql.Identifier("public", table).as_string(cur)
    return [tuple(r) for r in cur.execute(statements("archive")["live_columns"], {"table": qualified}).fetchall()]


def ensure_archive(cur: psycopg.Cursor, table: str) -> list[str]:
    """Create etl_archive.<table> like the live table, adding any column the live table gained since."""
    q = statements("archive")
    archive = sql.Identifier(ARCHIVE_SCHEMA, table)
    cur.execute(sql.SQL(q["create_archive"]).format(archive=archive, table=sql.Identifier("public", table)))
    columns = live_columns(cur, table)
    adds = [
        sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(sql.Identifier(name), sql.SQL(kind))
        for name, kind in [*columns, *EXTRA_COLUMNS]
    ]
    # The types come from format_type() of our own catalog, never from user input.
    cur.execute(sql.SQL("ALTER TABLE {} ").format(archive) + sql.SQL(", ").join(adds))
    return [name for name, _ in columns]


def archive_rows(
    cur: psycopg.Cursor, table: str, predicate: sql.Composable, params: dict, run_id: str, reason: str
) -> int:
    """Copy the rows of public.<table> matching `predicate` (alias t) to the archive; returns the count."""
    columns = ensure_archive(cur, table)
    query = sql.SQL(statements("archive")["archive_rows"]).format(
        archive=sql.Identifier(ARCHIVE_SCHEMA, table),
        table=sql.Identifier("public", table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        t_columns=sql.SQL(", ").join(sql.Identifier("t", c) for c in columns),
        predicate=predicate,
    )
    return cur.execute(query, {**params, "run_id": run_id, "reason": reason}).rowcount
