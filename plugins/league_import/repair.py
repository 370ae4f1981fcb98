"""restore_mapping: put every orphaned user row back on its real team, or quarantine it.

One transaction over all user tables: a retry, or a run killed midway, starts from the same
orphans, and a second run finds none. The strategies and their order are documented at the top
of include/sql/repair.sql. Nothing is attached to a plausible team: a strategy decides a row
only when exactly one team qualifies. Quarantined rows are archived first; a nullable team
column is then set NULL, a NOT NULL one has its row removed (its copy stays in etl_archive).
"""

from __future__ import annotations

from functools import partial

from psycopg import Connection, Cursor, Rollback, sql

from league_import.archive import archive_rows
from league_import.backup import refresh_key_map
from league_import.catalog import TeamColumn
from league_import.constraints import keys_for_dry_run, validate_team_references
from league_import.dedup import repoint_references
from league_import.references import columns_of, row_id, team_columns
from league_import.sql import run, statements

STRATEGIES = ("key_map", "restored_team", "content", "user_context", "quarantine")
ROW_STRATEGIES = ("content", "user_context", "quarantine")  # written row by row into the user tables


_run = partial(run, "repair")


def _optional(alias: str, column: str | None, kind: str) -> sql.Composable:
    if column is None:
        return sql.SQL("NULL::{}").format(sql.SQL(kind))
    return sql.Identifier(alias, column)


def _collect(cur: Cursor, col: TeamColumn) -> None:
    _run(
        cur,
        "collect_orphans",
        {"table_name": col.table, "column_name": col.column},
        table=sql.Identifier("public", col.table),
        column=sql.Identifier(col.column),
        row_id=row_id(cur, col.table, col.column),
        author=_optional("t", col.author, "bigint"),
        league=_optional("t", col.league, "bigint"),
        text=_optional("t", col.text, "text"),
    )


def restore_mapping(conn: Connection, run_id: str, *, dry_run: bool = False, sample: int = 20) -> dict:
    """Repair every orphaned team reference; returns counts per table and strategy."""
    with conn.transaction() as tx, conn.cursor() as cur:
        if dry_run:
            keys_for_dry_run(conn)
        columns = team_columns(cur)
        for table in dict.fromkeys(c.table for c in columns):
            _run(cur, "lock_table", table=sql.Identifier("public", table))
        key_map_written = refresh_key_map(cur, run_id)  # the ids the upsert just issued
        _run(cur, "create_orphans")
        for col in columns:
            _collect(cur, col)
        _run(cur, "analyze_orphans")

        # a. the key map; b. restore known teams, then the key map again for their other old ids
        _run(cur, "decide_by_key_map")
        if _undecided(cur):
            _run(cur, "restore_known_teams")
            _run(cur, "advance_team_ids")
            _run(cur, "decide_by_key_map")
        _run(cur, "key_map_ids")
        moved = repoint_references(cur, [(c.table, c.column) for c in columns], run_id)

        # c. series named in the text; d. the author's only team; e. quarantine
        if _undecided(cur):
            _run(cur, "find_series_mentions")
            _run(cur, "decide_by_content")
            _run(cur, "decide_by_user_context")
            _run(cur, "quarantine_rest")
        decided = _run(cur, "decision_counts").fetchall()
        removed = {}
        for col in columns:
            if any((t, c) == (col.table, col.column) and s in ROW_STRATEGIES for t, c, s, _ in decided):
                removed[col.table] = _apply(cur, col, run_id)
        _run(cur, "record_quarantine", {"run_id": run_id})
        _run(cur, "record_decisions", {"run_id": run_id})

        counts: dict[str, dict[str, int]] = {}
        for table, _, strategy, n in decided:
            by_table = counts.setdefault(table, {})
            by_table[strategy] = by_table.get(strategy, 0) + n
        decisions = [
            dict(zip(("table", "row_id", "old_team_id", "new_team_id", "strategy", "reason", "candidates"), r))
            for r in _run(cur, "sample_decisions", {"limit": sample}).fetchall()
        ]
        validated = validate_team_references(conn)
        report = {
            "dry_run": dry_run,
            "orphans": sum(sum(by.values()) for by in counts.values()),
            "by_strategy": {s: sum(by.get(s, 0) for by in counts.values()) for s in STRATEGIES},
            "by_table": counts,
            "repointed": moved,
            "quarantined_rows_removed": {t: n for t, n in removed.items() if n},
            "foreign_keys_validated": validated,
            "key_map_written": key_map_written,
            "sample": decisions,
        }
        if dry_run:
            raise Rollback(tx)
    return report


def _undecided(cur: Cursor) -> int:
    return _run(cur, "undecided").fetchone()[0]


def _apply(cur: Cursor, col: TeamColumn, run_id: str) -> int:
    """Write the row-level decisions (content, user context) and quarantine the rest of one column."""
    params = {"table_name": col.table, "column_name": col.column}
    table, column = sql.Identifier("public", col.table), sql.Identifier(col.column)
    _run(cur, "apply_row_decisions", params, table=table, column=column)
    predicate = sql.SQL(statements("repair")["quarantined_predicate"])
    archived = archive_rows(cur, col.table, predicate, params, run_id, "orphan")
    if not archived:
        return 0
    if columns_of(cur, col.table)[col.column]:  # NOT NULL: the row moves to the archive
        removed = _run(cur, "remove_quarantined", params, table=table, predicate=predicate).rowcount
    else:
        removed = 0
        _run(cur, "detach_quarantined", params, table=table, column=column, predicate=predicate)
    return removed


class ReleaseError(ValueError):
    """A release that cannot be done as asked: the message says why."""


def release(conn: Connection, table: str, row: str, team_id: int, column: str = "team_id") -> str:
    """Put a quarantined row back on the team a person decided; one transaction.

    A detached row (nullable column) gets its team id again; a removed row is re-inserted from
    its archived copy with the new team id.
    """
    from league_import.archive import ARCHIVE_SCHEMA, live_columns

    params = {"table_name": table, "column_name": column, "row_id": row, "team_id": team_id}
    with conn.transaction(), conn.cursor() as cur:
        found = _run(cur, "quarantined_row", params).fetchone()
        if found is None:
            raise ReleaseError(f"no unresolved quarantine entry for {table}.{column} row {row}")
        if not _run(cur, "team_exists", params).fetchone()[0]:
            raise ReleaseError(f"team {team_id} does not exist")
        target, col = sql.Identifier("public", table), sql.Identifier(column)
        rid = row_id(cur, table, column)
        if _run(cur, "reattach", params, table=target, column=col, row_id=rid).rowcount == 1:
            done = f"{table} row {row}: {column} set to {team_id}"
        else:
            names = [name for name, _ in live_columns(cur, table)]
            values = sql.SQL(", ").join(
                sql.Placeholder("team_id") if n == column else sql.Identifier("t", n) for n in names
            )
            inserted = _run(
                cur,
                "reinsert_from_archive",
                params,
                table=target,
                columns=sql.SQL(", ").join(map(sql.Identifier, names)),
                values=values,
                archive=sql.Identifier(ARCHIVE_SCHEMA, table),
                row_id=rid,
            ).rowcount
            if inserted != 1:
                raise ReleaseError(f"{table} row {row} is neither detached nor in etl_archive.{table}")
            done = f"{table} row {row}: restored from etl_archive.{table} with {column} = {team_id}"
        _run(cur, "mark_resolved", {**params, "id": found[0]})
    return done
