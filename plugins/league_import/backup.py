"""The backup task: before teams change, keep what every user row points at, keyed by run id.

One transaction on one REPEATABLE READ snapshot: the counts and the copies agree with each
other without locking a table (the app's writers never wait on the backup). The previous
attempt's rows for this run are deleted and written again, so a retry or a loop can never double
the backup (the old system's looping backup grew to 3.47 M rows). Each copy's row count must
equal its table's in the snapshot, or the step fails and nothing is kept.
"""

from __future__ import annotations

from functools import partial

from psycopg import Connection, IsolationLevel, Rollback, sql

from league_import.errors import CountMismatchError
from league_import.history import refresh_key_map
from league_import.references import row_id, team_columns, user_tables
from league_import.sql import run
from league_import.target import current

_run = partial(run, "backup")


def backup(conn: Connection, run_id: str, *, dry_run: bool = False) -> dict:
    """Snapshot teams and every team reference of the user-owned tables; prune older backups."""
    args = {"run_id": run_id}
    level = conn.isolation_level
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction() as tx, conn.cursor() as cur:
            columns = team_columns(cur)
            teams = current().table_name("teams")
            tables = list(dict.fromkeys([teams, *user_tables(cur), *(c.table for c in columns)]))
            _run(cur, "clear_run", args)
            key_map = refresh_key_map(cur, run_id)

            counts = {t: _run(cur, "count_rows", table=sql.Identifier("public", t)).fetchone()[0] for t in tables}
            copied = {teams: _run(cur, "backup_teams", args).rowcount}
            for col in columns:
                params = {**args, "table_name": col.table, "column_name": col.column}
                copied[f"{col.table}.{col.column}"] = _run(
                    cur,
                    "backup_refs",
                    params,
                    table=sql.Identifier("public", col.table),
                    column=sql.Identifier(col.column),
                    row_id=row_id(cur, col.table, col.column),
                ).rowcount
            for table, count in counts.items():
                _run(cur, "record_count", {**args, "table_name": table, "row_count": count})

            wrong = {n: (c, counts[n.split(".")[0]]) for n, c in copied.items() if c != counts[n.split(".")[0]]}
            if wrong:
                raise CountMismatchError(
                    "backup copies differ from their tables (copied, live): "
                    + ", ".join(f"{name} {n} vs {live}" for name, (n, live) in wrong.items())
                )
            pruned = _run(cur, "prune", args).fetchone()[0]
            report = {"row_counts": counts, "copied": copied, "key_map": key_map, "pruned_backups": pruned}
            if dry_run:
                raise Rollback(tx)
    finally:
        conn.isolation_level = level
    return report
