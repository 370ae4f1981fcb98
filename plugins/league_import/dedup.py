"""Remove duplicate rows on a natural key, archive them, and make the key UNIQUE.

One transaction per table: a retry, or a run killed midway, starts again from the same state,
and the table keeps its definition (columns, options, storage, privileges, comments) but for the
added key, with fresh planner statistics. When most rows go and nothing references the table,
the removed rows are copied to an archive batch in one pass, the table is truncated and its
survivors put back; otherwise the removed rows are archived and deleted against the keep-set. A
referenced table is never truncated: references to a removed duplicate move to its survivor first.

Deleting a row that other tables point at makes PostgreSQL look each one up in every table that
points at it: with no index on the pointing column that is a scan of the table per deleted row
(seconds for a thousand duplicate users). Such a column gets an index for the step's transaction
only, dropped before it commits: no other session ever sees it, and the table's definition after
the step is what it was.

Locks: before it reads, the step takes every lock it will need, in one order (the tables the
table points at and those that point at it, EXCLUSIVE, or ACCESS EXCLUSIVE for a table that gets
a passing index; then the table, ACCESS EXCLUSIVE), each wait bounded well under the server's
deadlock_timeout. An app transaction that holds one of them
and waits for another makes the step give way (it lets go of all, and tries again a moment
later), never the app: the step holds nothing while it waits, and no other lock is waited for
once it holds them (no row of those tables can be locked by another transaction meanwhile).
"""

from __future__ import annotations

import time
from functools import partial

from psycopg import Connection, Cursor, Rollback, sql
from psycopg.errors import LockNotAvailable

from league_import import pgcatalog
from league_import.archive import archive_bulk, archive_rows, live_columns
from league_import.catalog import NaturalKey, references
from league_import.constraints import add_unique, sample_key
from league_import.errors import CountMismatchError, LockBusyError
from league_import.history import keep_order, repoint_references
from league_import.pgcatalog import (
    column_definitions,
    foreign_keys,
    has_unique,
    index_leads_with,
    referenced_tables,
    references_to,
)
from league_import.sql import run, statements

TRUNCATE_SHARE = 0.5  # above this share of duplicates, truncate-and-reload beats DELETE
KEEP_LIST_MAX = 100_000  # up to this many survivors, the keep-set is passed as an array
LOCK_WAIT_MS = 100  # the longest one lock is waited for (and never more than half the deadlock_timeout)
LOCK_PATIENCE_S = 60.0  # how long the step keeps trying for its locks before Airflow's retry

_run = partial(run, "dedup")


def _referencing(cur: Cursor, table: str) -> list[tuple[str, str]]:
    """(table, column) pairs pointing at `table`: its foreign keys plus the declared references."""
    found = [(fk.table, fk.column) for fk in references_to(cur, table)]
    declared = [(r.table, r.column) for r in references() if r.target == table]
    return list(dict.fromkeys([*found, *declared]))


def deduplicate(
    conn: Connection,
    key: NaturalKey,
    run_id: str,
    *,
    dry_run: bool = False,
    sample: int = 5,
    add_key: bool | None = None,
) -> dict:
    """Keep one row per key (the lowest id, or key.keep_order), archive the rest, add the UNIQUE key.

    A table whose key is already enforced by a valid unique index cannot hold duplicates: it is
    neither scanned nor locked (the app's writers never wait on a clean table). The key is added
    where the pipeline owns the tables (`add_key`: by default); on an app's database only `target
    apply` adds it.
    """
    if add_key is None:
        from league_import.target import current

        add_key = current().owns_tables
    table = sql.Identifier("public", key.table)
    key_cols = sql.SQL(", ").join(map(sql.Identifier, key.columns))
    with conn.transaction() as tx, conn.cursor() as cur:
        if has_unique(cur, key.table, key.columns):
            return {"table": key.table, "duplicates": 0, "plan": "enforced", "unique_added": False}
        referencing = _referencing(cur, key.table)
        unindexed = [(t, c) for t, c in referencing if not index_leads_with(cur, t, c)]
        _lock(conn, cur, key.table, referencing, whole={t for t, _ in unindexed})
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
            # Before any row moves: an index built after this transaction's own updates of its
            # column would be one this transaction cannot use (its HOT chains broken).
            passing = _passing_indexes(cur, unindexed)
            if referencing:
                report["repointed"] = _repoint(cur, key, referencing, run_id)
            predicate, params = sql.SQL(statements("dedup")["not_kept"]).format(ref=ref), {}
            most_go = removed > total * TRUNCATE_SHARE
            bulk = most_go and kept <= KEEP_LIST_MAX
            if bulk:  # most rows go, few stay: the keep-set as a hashed array, the archive as one batch
                params["keep"] = _run(cur, "keep_list").fetchone()[0]
                ref_type = sql.SQL("bigint" if has_id else "tid")
                predicate = sql.SQL(statements("dedup")["not_in_keep_list"]).format(ref=ref, ref_type=ref_type)
            report["plan"] = "delete"
            if most_go and not referencing:
                _run(cur, "save_survivors", table=table, ref=ref)
                if not _survivors_break_foreign_keys(cur, key.table):
                    report["plan"] = "truncate_reload"
            archive = archive_bulk if bulk else archive_rows
            archived = archive(cur, key.table, predicate, params, run_id, "duplicate")
            if report["plan"] == "truncate_reload":
                _run(cur, "truncate_reload", table=table, columns=_stored_columns(cur, key.table))
            else:
                _run(cur, "delete_not_kept", params, table=table, predicate=predicate)
            for name in passing:
                _run(cur, "drop_index", index=name)
            after = _run(cur, "count_rows", table=table).fetchone()[0]
            if archived != removed or after != kept:
                raise CountMismatchError(
                    f"{key.table}: {removed} duplicates, but {archived} archived and {total - after} removed"
                )
            report["archived"] = archived
            _run(cur, "analyze", table=table)  # the planner's statistics of the table as it is now
        report["rows_after"] = kept
        report["unique_added"] = _ensure_unique(cur, key) if add_key else False
        if dry_run:
            raise Rollback(tx)
    return report


def _passing_indexes(cur: Cursor, unindexed: list[tuple[str, str]]) -> list[sql.Identifier]:
    """An index on each pointing column that has none, for this transaction (see the module's doc)."""
    names = []
    for number, (table, column) in enumerate(unindexed):
        name = f"league_import_dedup_{number}"
        _run(cur, "create_index", index=sql.Identifier(name), table=sql.Identifier("public", table),
             column=sql.Identifier(column))  # fmt: skip
        names.append(sql.Identifier("public", name))
    return names


def _lock(
    conn: Connection, cur: Cursor, table: str, referencing: list[tuple[str, str]], whole: set[str] = frozenset()
) -> None:
    """Every lock the step needs, in one order, each wait bounded (see the module's doc); tried
    again after a pause while another transaction holds one, for LOCK_PATIENCE_S at most. The
    tables in `whole` are taken ACCESS EXCLUSIVE (they get a passing index, dropped before the
    commit: a lock raised later could deadlock)."""
    referenced = {name for schema, name in referenced_tables(cur, table) if schema == "public"}
    others = ({t for t, _ in referencing} | referenced) - {table}
    wait = min(LOCK_WAIT_MS, _run(cur, "deadlock_timeout_ms").fetchone()[0] // 2)
    deadline, pause = time.monotonic() + LOCK_PATIENCE_S, 0.05
    while True:
        try:
            with conn.transaction():  # a savepoint: a lock not granted lets go of the ones taken
                _run(cur, "set_lock_wait", {"wait": f"{wait}ms"})
                for name in sorted(others):
                    mode = "lock_table" if name in whole else "lock_exclusive"
                    _run(cur, mode, table=sql.Identifier("public", name))
                _run(cur, "lock_table", table=sql.Identifier("public", table))
            return
        except LockNotAvailable:
            if time.monotonic() > deadline:
                raise LockBusyError(
                    f"{table}: other transactions kept a lock the deduplication needs for {LOCK_PATIENCE_S:g} s; "
                    "nothing was changed (retried)"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


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
    # NULLs in a key are equal; a NOT NULL column is compared with = so that the join is hashed
    # (IS NOT DISTINCT FROM alone makes it a nested loop: seconds for a few thousand keys).
    not_null = {c.name for c in pgcatalog.columns(cur, key.table) if c.not_null}
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{c} {op} k.{c}").format(
            c=sql.Identifier(c), op=sql.SQL("=" if c in not_null else "IS NOT DISTINCT FROM")
        )
        for c in key.columns
    )
    referenced = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT r.{} FROM {} r").format(sql.Identifier(column), sql.Identifier("public", table))
        for table, column in referencing
    )
    _run(cur, "map_duplicates", table=sql.Identifier("public", key.table), key_match=match, referenced=referenced)
    return repoint_references(cur, referencing, run_id, "duplicate")


def _ensure_unique(cur: Cursor, key: NaturalKey) -> bool:
    """Add the key's UNIQUE NULLS NOT DISTINCT constraint unless a unique index on its columns exists."""
    if has_unique(cur, key.table, key.columns):
        return False
    add_unique(cur, key)
    return True
