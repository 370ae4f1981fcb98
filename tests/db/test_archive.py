"""The archive of removed rows: it follows the live table's columns, and never refuses a row."""

from __future__ import annotations

from helpers import q
from psycopg import sql

from league_import.archive import archive_rows
from league_import.schema import ensure_schema


def test_the_archive_gains_the_columns_the_live_table_gained(conn):
    ensure_schema(conn)
    conn.execute("INSERT INTO polls (id, question) VALUES (1, 'first'), (2, 'second')")
    with conn.cursor() as cur:
        assert archive_rows(cur, "polls", sql.SQL("t.id = 1"), {}, "run-1", "test") == 1
        conn.execute("ALTER TABLE polls ADD COLUMN closes_at date")
        conn.execute("UPDATE polls SET closes_at = '2026-12-24' WHERE id = 2")
        assert archive_rows(cur, "polls", sql.SQL("t.id = 2"), {}, "run-2", "test") == 1
        assert archive_rows(cur, "polls", sql.SQL("t.id = 3"), {}, "run-3", "test") == 0  # nothing to copy
    conn.commit()
    rows = q(conn, "SELECT id, question, closes_at::text, run_id, reason FROM etl_archive.polls ORDER BY id")
    assert rows == [(1, "first", None, "run-1", "test"), (2, "second", "2026-12-24", "run-2", "test")]
