"""Copies of removed rows in etl_archive.<table>: nothing is removed without one (CONTRACT section 5).

Rows are inserted into etl_archive.<table>. A large batch is written instead as a table of its
own, etl_archive.<table>__<id>, that inherits from etl_archive.<table>: reading the archive sees
its rows too, and writing it costs about one copy of the rows instead of two. When every row of a
table goes (deduplicating the 3.47 M-row incident, once the few survivors are set aside), the
table's own heap becomes the batch and the table is created anew: no row is copied at all
(docs/benchmarks.md).
"""

from __future__ import annotations

import uuid
from functools import partial

import psycopg
from psycopg import sql

from league_import import pgcatalog
from league_import.constraints import add_as_defined, drop_constraint
from league_import.sql import run, statements

ARCHIVE_SCHEMA = "etl_archive"
EXTRA_COLUMNS = (("run_id", "text"), ("reason", "text"), ("archived_at", "timestamptz NOT NULL DEFAULT now()"))
PRIVILEGES = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN", "USAGE"}
)

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


def archive_table(cur: psycopg.Cursor, table: str, run_id: str, reason: str) -> str:
    """Move every row of public.<table> to the archive without copying one; returns the batch's name.

    The table's heap becomes the batch etl_archive.<table>__<id>, and public.<table> is created
    anew, empty, with the same columns, defaults, identity position, keys, checks, foreign keys,
    indexes (by their names), privileges and comment. Only for a table on which
    pgcatalog.heap_move_blockers finds nothing (no view, trigger, policy, publication or key
    elsewhere names it), with its lock held by the caller; it all commits or rolls back with the
    caller's transaction.
    """
    live = ensure_archive(cur, table)
    old = pgcatalog.table_definition(cur, table)
    suffix = uuid.uuid4().hex[:12]
    source = sql.Identifier("public", table)
    batch_name, fresh_name = _batch_name(table, suffix), _batch_name(table, f"new_{suffix}")
    identity = [c.sequence for c in old.columns if c.identity]
    sequence_state = {
        name: _run(cur, "sequence_state", sequence=sql.Identifier("public", name)).fetchone() for name in identity
    }
    sequence_privileges = {
        name: pgcatalog.privileges(cur, pgcatalog.qualified(cur, "public", name)) for name in identity
    }
    _run(cur, "create_like", table=source, fresh=sql.Identifier("public", fresh_name))
    fresh_sequences = {c.name: c.sequence for c in pgcatalog.column_definitions(cur, fresh_name) if c.identity}

    # The old table keeps nothing the archive must not have: keys, indexes, defaults, privileges.
    for name, _ in reversed(old.constraints):
        drop_constraint(cur, table, name)
    for name, _ in old.indexes:
        _run(cur, "drop_index", index=sql.Identifier("public", name))
    for c in old.columns:
        if c.sequence and not c.identity:  # a serial: the sequence stays, the new table's default uses it
            _run(cur, "disown_sequence", sequence=sql.Identifier("public", c.sequence))
    actions = [action for c in old.columns for action in _strip(c)]
    if actions:
        _run(cur, "alter_columns", table=source, actions=sql.SQL(", ").join(actions))
    _set_privileges(cur, "TABLE", "public", table, set())
    _run(
        cur,
        "move_to_archive",
        table=source,
        batch_name=sql.Identifier(batch_name),
        renamed=sql.Identifier("public", batch_name),
    )
    _attach_batch(cur, table, sql.Identifier(ARCHIVE_SCHEMA, batch_name), live, run_id, reason)

    # The new table takes the name and everything the old one had.
    _run(cur, "rename_table", table=sql.Identifier("public", fresh_name), name=sql.Identifier(table))
    for c in old.columns:
        if c.identity:
            _run(
                cur,
                "rename_sequence",
                sequence=sql.Identifier("public", fresh_sequences[c.name]),
                name=sql.Identifier(c.sequence),
            )
            last_value, is_called = sequence_state[c.sequence]
            params = {"sequence": pgcatalog.qualified(cur, "public", c.sequence), "last_value": last_value}
            _run(cur, "set_sequence", {**params, "is_called": is_called})
            _set_privileges(cur, "SEQUENCE", "public", c.sequence, sequence_privileges[c.sequence])
        elif c.sequence:
            _run(
                cur,
                "own_sequence",
                sequence=sql.Identifier("public", c.sequence),
                column=sql.Identifier("public", table, c.name),
            )
    for _, definition in old.indexes:  # first: a foreign key may rest on a unique index
        _run(cur, "create_index", definition=sql.SQL(definition))
    for name, definition in old.constraints:
        add_as_defined(cur, table, name, definition)
    _set_privileges(cur, "TABLE", "public", table, old.privileges)
    if old.comment is not None:
        _run(cur, "comment_table", table=source, comment=sql.Literal(old.comment))
    return batch_name


def _strip(column: pgcatalog.ColumnDefinition) -> list[sql.Composable]:
    """The ALTER TABLE actions that leave a column of the old table a plain archive column."""
    name = sql.Identifier(column.name)
    actions = []
    if column.identity:
        actions.append(sql.SQL("ALTER COLUMN {} DROP IDENTITY").format(name))
    elif column.generated:
        actions.append(sql.SQL("ALTER COLUMN {} DROP EXPRESSION").format(name))
    elif column.has_default:
        actions.append(sql.SQL("ALTER COLUMN {} DROP DEFAULT").format(name))
    if column.not_null:
        actions.append(sql.SQL("ALTER COLUMN {} DROP NOT NULL").format(name))
    return actions


def _set_privileges(
    cur: psycopg.Cursor, kind: str, schema: str, name: str, wanted: set[tuple[str | None, str, bool]]
) -> None:
    """Make the privileges on a table or sequence (its owner's aside) exactly `wanted`: revoke
    what is not wanted (a grant option included), then grant what is missing."""
    regclass = pgcatalog.qualified(cur, schema, name)
    parts = {"kind": sql.SQL(kind), "relation": sql.Identifier(schema, name)}
    for grantee, privilege, _ in pgcatalog.privileges(cur, regclass) - wanted:
        _run(cur, "revoke", privilege=_privilege(privilege), grantee=_grantee(grantee), **parts)
    for grantee, privilege, grantable in wanted - pgcatalog.privileges(cur, regclass):
        option = sql.SQL("WITH GRANT OPTION" if grantable else "")
        _run(cur, "grant", privilege=_privilege(privilege), grantee=_grantee(grantee), option=option, **parts)


def _privilege(privilege: str) -> sql.SQL:
    if privilege not in PRIVILEGES:  # a keyword from aclexplode(), never user input; checked all the same
        raise ValueError(f"unknown privilege {privilege!r}")
    return sql.SQL(privilege)


def _grantee(grantee: str | None) -> sql.Composable:
    return sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
