"""Copies of removed rows in etl_archive.<table>: nothing is removed without one (CONTRACT section 5).

Rows are inserted into etl_archive.<table>. A large batch is written instead as a table of its
own, etl_archive.<table>__<id>, that inherits from etl_archive.<table>: reading the archive sees
its rows too, and writing it costs about one copy of the rows instead of two (docs/benchmarks.md).
"""

from __future__ import annotations

import uuid
from functools import partial

import psycopg
from psycopg import sql

from league_import import pgcatalog
from league_import.sql import run, statements

ARCHIVE_SCHEMA = "etl_archive"
EXTRA_COLUMNS = (("run_id", "text"), ("reason", "text"), ("archived_at", "timestamptz NOT NULL DEFAULT now()"))

NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1

_run = partial(run, "archive")


def _columns(cur: psycopg.Cursor, schema: str, table: str) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in pgcatalog.columns(cur, table, schema)]


def live_columns(cur: psycopg.Cursor, table: str) -> list[tuple[str, str]]:
    """(name, type) of public.<table>, in order."""
    return _columns(cur, "public", table)


def ensure_archive(cur: psycopg.Cursor, table: str) -> list[str]:
    """Create etl_archive.<table> like the live table, adding any column the live table gained since."""
    q = statements("archive")
    archive = sql.Identifier(ARCHIVE_SCHEMA, table)
    cur.execute(sql.SQL(q["create_archive"]).format(archive=archive, table=sql.Identifier("public", table)))
    columns = live_columns(cur, table)
    existing = pgcatalog.columns(cur, table, ARCHIVE_SCHEMA)
    have = {c.name for c in existing}
    # Only what is missing: an ALTER TABLE, even one that changes nothing, locks the archive.
    # The types come from format_type() of our own catalog, never from user input.
    adds = [
        sql.SQL("ADD COLUMN {} {}").format(sql.Identifier(name), sql.SQL(kind))
        for name, kind in [*columns, *EXTRA_COLUMNS]
        if name not in have
    ]
    if adds:
        cur.execute(sql.SQL("ALTER TABLE {} ").format(archive) + sql.SQL(", ").join(adds))
    strict = [c.name for c in existing if c.not_null and c.name != "archived_at"]
    if strict:  # an archive made elsewhere (LIKE copies NOT NULLs): never refuse an archived row
        drops = [sql.SQL("ALTER COLUMN {} DROP NOT NULL").format(sql.Identifier(n)) for n in strict]
        cur.execute(sql.SQL("ALTER TABLE {} ").format(archive) + sql.SQL(", ").join(drops))
    return [name for name, _ in columns]


def archive_rows(
    cur: psycopg.Cursor, table: str, predicate: sql.Composable, params: dict, run_id: str, reason: str
) -> int:
    """Copy the rows of public.<table> matching `predicate` (alias t) to the archive; returns the count.

    Nothing to copy, nothing done: the archive table is not even touched (no DDL, no lock).
    The probe is planned for all rows (a materialized CTE), not for the first one: under EXISTS
    the planner takes an anti-join predicate for a nested loop, quadratic when no row matches
    (10 s for 27,000 unchanged matches; minutes for 900,000); planned whole, it is one hash join
    that still stops at the first match.
    """
    found = sql.SQL(statements("archive")["any_rows"]).format(
        table=sql.Identifier("public", table), predicate=predicate
    )
    if not cur.execute(found, params or None).fetchone()[0]:
        return 0
    columns = ensure_archive(cur, table)
    query = sql.SQL(statements("archive")["archive_rows"]).format(
        archive=sql.Identifier(ARCHIVE_SCHEMA, table),
        table=sql.Identifier("public", table),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        t_columns=sql.SQL(", ").join(sql.Identifier("t", c) for c in columns),
        predicate=predicate,
    )
    return cur.execute(query, {**params, "run_id": run_id, "reason": reason}).rowcount


def archive_bulk(
    cur: psycopg.Cursor, table: str, predicate: sql.Composable, params: dict, run_id: str, reason: str
) -> int:
    """Like archive_rows, for a batch most of a large table: CREATE TABLE AS, then inherit."""
    live = ensure_archive(cur, table)
    q = statements("archive")
    batch = sql.Identifier(ARCHIVE_SCHEMA, _batch_name(table, uuid.uuid4().hex[:12]))
    copied = cur.execute(
        sql.SQL(q["bulk_batch"]).format(batch=batch, table=sql.Identifier("public", table), predicate=predicate),
        params,
    ).rowcount
    _attach_batch(cur, table, batch, live, run_id, reason)
    return copied


def _batch_name(table: str, suffix: str) -> str:
    """<table>__<suffix>, the table's part shortened so that the suffix survives PostgreSQL's
    63-byte limit on names (a long name would otherwise lose it, and two batches clash)."""
    room = NAME_BYTES - len(suffix.encode()) - 2
    head = table.encode()[:room].decode(errors="ignore")
    return f"{head}__{suffix}"


def _attach_batch(
    cur: psycopg.Cursor, table: str, batch: sql.Identifier, live: list[str], run_id: str, reason: str
) -> None:
    """Give a batch holding rows of public.<table> the archive's own columns and make it a child
    of etl_archive.<table>."""
    q = statements("archive")
    # DDL takes no bound parameters: the two values are quoted by the driver (sql.Literal).
    cur.execute(
        sql.SQL(q["bulk_batch_columns"]).format(batch=batch, run_id=sql.Literal(run_id), reason=sql.Literal(reason))
    )
    known = {*live, *dict(EXTRA_COLUMNS)}
    missing = [(name, kind) for name, kind in _columns(cur, ARCHIVE_SCHEMA, table) if name not in known]
    if missing:  # columns the live table has dropped since: the batch needs them to inherit
        adds = [sql.SQL("ADD COLUMN {} {}").format(sql.Identifier(n), sql.SQL(k)) for n, k in missing]
        cur.execute(sql.SQL("ALTER TABLE {} ").format(batch) + sql.SQL(", ").join(adds))
    cur.execute(sql.SQL(q["attach_batch"]).format(batch=batch, archive=sql.Identifier(ARCHIVE_SCHEMA, table)))
