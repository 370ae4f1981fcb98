"""Remove duplicate rows on a natural key, archive them, and make the key UNIQUE.

One transaction per table: a retry, or a run killed midway, starts again from the same state.
The plan depends on the share of duplicates. When most rows go and nothing references the table,
the survivors are set aside and the table's heap, every other row in it, becomes an archive
batch while the table is created anew (archive.archive_table: no row copied, so the 3.47 M-row
incident costs about one scan); a table with something the new one could not carry over (a view,
a trigger, a publication: pgcatalog.heap_move_blockers) instead has its removed rows copied to a
batch, is truncated, and gets its survivors back. Otherwise the removed rows are archived and
deleted against the keep-set. A referenced table is never replaced or truncated: references to a
removed duplicate move to its survivor first.
"""

from __future__ import annotations

from functools import partial

from psycopg import Connection, Cursor, Rollback, sql
from psycopg.errors import LockNotAvailable

from league_import.archive import archive_bulk, archive_rows, archive_table, live_columns
from league_import.catalog import NaturalKey, references
from league_import.constraints import add_unique, sample_key
from league_import.errors import CountMismatchError
from league_import.history import keep_order, repoint_references
from league_import.pgcatalog import (
    column_definitions,
    foreign_keys,
    has_unique,
    heap_move_blockers,
    referenced_tables,
    references_to,
)
from league_import.sql import run, statements

TRUNCATE_SHARE = 0.5  # above this share of duplicates, truncate-and-reload beats DELETE
KEEP_LIST_MAX = 100_000  # up to this many survivors, the keep-set is passed as an array
MOVE_LOCK_WAIT = "100ms"  # the longest the heap move waits for the tables its foreign keys reference

_run = partial(run, "dedup")


def _referencing(cur: Cursor, table: str) -> list[tuple[str, str]]:
    """(table, column) pairs pointing at `table`: its foreign keys plus the declared references."""
    found = [(fk.table, fk.column) for fk in references_to(cur, table)]
    declared = [(r.table, r.column) for r in references() if r.target == table]
    return list(dict.fromkeys([*found, *declared]))


def deduplicate(conn: Connection, key: NaturalKey, run_id: str, *, dry_run: bool = False, sample: int = 5) -> dict:
    """Keep one row per key (the lowest id, or key.keep_order), archive the rest, add the UNIQUE key.

    A table whose key is already enforced by a valid unique index cannot hold duplicates: it is
    neither scanned nor locked (the app's writers never wait on a clean table).
    """
    table = sql.Identifier("public", key.table)
    key_cols = sql.SQL(", ").join(map(sql.Identifier, key.columns))
    with conn.transaction() as tx, conn.cursor() as cur:
        if has_unique(cur, key.table, key.columns):
            return {"table": key.table, "duplicates": 0, "plan": "enforced", "unique_added": False}
        _run(cur, "lock_table", table=table)
        has_id = any(name == "id" for name, _ in live_columns(cur, key.table))
        ref = sql.Identifier("id") if has_id else sql.SQL("ctid")
        if key.keep_order:
            order = keep_order(key, alias=None)
            _run(cur, "keep_ordered", table=table, key=key_cols, ref=ref, order=order)
        else:
            _run(cur, "keep_lowest", table=table, key=key_cols, ref=ref)
        kept, total = _run(cur, "keep_summary").fetchone()
        removed = total - kept
        report = {"table": key.table, "rows_before": total, "duplicates": removed, "plan": "none", "repointed": {}}
        report["sample_keys"] = [
            {"copies": c, "key": k}
            for c, k in _run(
                cur, "sample_keys", {"limit": sample}, key_json=sample_key(key.table, key.columns, "k")
            ).fetchall()
        ]
        if removed:
            referencing = _referencing(cur, key.table)
            if referencing:
                report["repointed"] = _repoint(cur, key, referencing, run_id)
            predicate, params = sql.SQL(statements("dedup")["not_kept"]).format(ref=ref), {}
            ref_type = sql.SQL("bigint" if has_id else "tid")
            most_go = removed > total * TRUNCATE_SHARE
            bulk = most_go and kept <= KEEP_LIST_MAX
            if bulk:  # most rows go, few stay: the keep-set as a hashed array, the archive as one batch
                params["keep"] = _run(cur, "keep_list").fetchone()[0]
                predicate = sql.SQL(statements("dedup")["not_in_keep_list"]).format(ref=ref, ref_type=ref_type)
            report["plan"] = "delete"
            if most_go and not referencing:
                _run(cur, "save_survivors", table=table, ref=ref)
                if not _survivors_break_foreign_keys(cur, key.table):
                    report["plan"] = "truncate_reload"
                    if bulk:
                        blockers = heap_move_blockers(cur, key.table)
                        if blockers:
                            report["move_blocked_by"] = blockers
                        else:
                            report["plan"] = "move_heap"
            if report["plan"] == "move_heap":
                archived = _move_heap(cur, key, params, ref, ref_type, kept, run_id)
                if archived is None:
                    report["plan"], report["move_blocked_by"] = "truncate_reload", ["a referenced table is in use"]
            if report["plan"] != "move_heap":
                archive = archive_bulk if bulk else archive_rows
                archived = archive(cur, key.table, predicate, params, run_id, "duplicate")
                if report["plan"] == "truncate_reload":
                    _run(cur, "truncate_reload", table=table, columns=_stored_columns(cur, key.table))
                else:
                    _run(cur, "delete_not_kept", params, table=table, predicate=predicate)
            after = _run(cur, "count_rows", table=table).fetchone()[0]
            if archived != removed or after != kept:
                raise CountMismatchError(
                    f"{key.table}: {removed} duplicates, but {archived} archived and {total - after} removed"
                )
            report["archived"] = archived
        report["rows_after"] = kept
        report["unique_added"] = _ensure_unique(cur, key)
        if dry_run:
            raise Rollback(tx)
    return report


def _move_heap(
    cur: Cursor, key: NaturalKey, params: dict, ref: sql.Composable, ref_type: sql.Composable, kept: int, run_id: str
) -> int | None:
    """The survivors (saved) leave the table, whose heap then becomes the archive batch
    (archive.archive_table) and the table is created anew for them; returns the rows archived.

    Moving drops the old table's foreign keys and adds the new one's, which locks the tables they
    point at (`teams`) until the commit. Those locks are taken first, waiting at most
    MOVE_LOCK_WAIT: an app transaction that holds one of them and waits for this table would
    otherwise deadlock with the step. Not granted in time, nothing has changed (a savepoint) and
    None tells the caller to copy instead.
    """
    table = sql.Identifier("public", key.table)
    try:
        with cur.connection.transaction():
            taken = _run(cur, "delete_kept", params, table=table, ref=ref, ref_type=ref_type).rowcount
            if taken != kept:
                raise CountMismatchError(f"{key.table}: {kept} survivors, but {taken} set aside")
            moving = _run(cur, "count_rows", table=table).fetchone()[0]  # the heap's rows, counted before the move
            referenced = referenced_tables(cur, key.table)
            if referenced:
                wait = _run(cur, "lock_wait").fetchone()[0]
                _run(cur, "set_lock_wait", {"wait": MOVE_LOCK_WAIT})
                _run(cur, "lock_referenced", tables=sql.SQL(", ").join(sql.Identifier(*t) for t in referenced))
                _run(cur, "set_lock_wait", {"wait": wait})
    except LockNotAvailable:
        return None
    archive_table(cur, key.table, run_id, "duplicate")
    _run(cur, "reload_survivors", table=table, columns=_stored_columns(cur, key.table))
    return moving


def _stored_columns(cur: Cursor, table: str) -> sql.Composable:
    """The columns a reload writes: all but generated ones."""
    columns = column_definitions(cur, table)
    return sql.SQL(", ").join(sql.Identifier(c.name) for c in columns if not c.generated)


def _survivors_break_foreign_keys(cur: Cursor, table: str) -> bool:
    """Whether a survivor points at a missing row through one of the table's foreign keys."""
    for fk in foreign_keys(cur).values():
        if (
            fk.table == table
            and _run(
                cur,
                "survivor_orphans",
                column=sql.Identifier(fk.column),
                target=sql.Identifier("public", fk.target),
                target_column=sql.Identifier(fk.target_column),
            ).fetchone()[0]
        ):
            return True
    return False


def _repoint(cur: Cursor, key: NaturalKey, referencing: list[tuple[str, str]], run_id: str) -> dict:
    """Map each removed duplicate to its survivor, then move the references (league_import.history)."""
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{c} IS NOT DISTINCT FROM k.{c}").format(c=sql.Identifier(c)) for c in key.columns
    )
    _run(cur, "map_duplicates", table=sql.Identifier("public", key.table), key_match=match)
    return repoint_references(cur, referencing, run_id, "duplicate")


def _ensure_unique(cur: Cursor, key: NaturalKey) -> bool:
    """Add the key's UNIQUE NULLS NOT DISTINCT constraint unless a unique index on its columns exists."""
    if has_unique(cur, key.table, key.columns):
        return False
    add_unique(cur, key)
    return True
