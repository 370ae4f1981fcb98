"""restore_mapping: put every orphaned or misplaced user row back on its real team, or quarantine it.

Two phases, so the app keeps working while it runs:
1. Decide, in one transaction that locks no user table: record new ids and re-used ids in the
   key map, collect every row whose team id exists nowhere and every row the last good backup
   shows on an id another process re-used, and decide each by the strategies documented at the
   top of include/sql/repair.sql. Nothing is attached to a plausible team: a strategy decides a
   row only when exactly one team qualifies.
2. Write, per team column, in batches of at most BATCH_ROWS rows, each one short transaction
   that takes row locks only: moves (collisions on a natural key settled by the dedup rule,
   archived), and quarantine (the original archived first; a nullable team column set NULL, a
   NOT NULL one has its row moved to the archive), with etl.repairs and etl.quarantine written
   in the same transaction. A batch re-checks that each row is still on the id it was collected
   on; a row the app changed meanwhile is left for the next run. Rows that share a natural key
   but for the team (one user's memberships) are written in one batch: on re-used ids they may
   trade places. A retry, or a run killed midway, starts again from the rows still wrong; a
   second run finds none.
"""

from __future__ import annotations

from functools import partial

from psycopg import Connection, Cursor, Rollback, sql

from league_import.archive import archive_rows, live_columns
from league_import.catalog import TeamColumn, natural_key
from league_import.constraints import keys_for_dry_run, validate_team_references
from league_import.errors import CountMismatchError
from league_import.history import refresh_key_map, settle_reuses, unsettled_reuses
from league_import.identity import mentions, parse_label
from league_import.pgcatalog import table_columns
from league_import.references import row_id, team_columns
from league_import.sql import run, statements

STRATEGIES = ("key_map", "restored_team", "content", "user_context", "quarantine")
MOVES = ["key_map", "restored_team", "content", "user_context"]
BATCH_ROWS = 10_000

_run = partial(run, "repair")


def _optional(alias: str, column: str | None, kind: str) -> sql.Composable:
    if column is None:
        return sql.SQL("NULL::{}").format(sql.SQL(kind))
    return sql.Identifier(alias, column)


class _Column:
    """How the statements name one team column's rows: across transactions, in reports, in quarantine."""

    def __init__(self, cur: Cursor, col: TeamColumn, columns: dict[str, bool]) -> None:
        self.col = col
        self.table = sql.Identifier("public", col.table)
        self.column = sql.Identifier(col.column)
        self.not_null = columns[col.column]
        key = natural_key(col.table)
        others = [c for c in (key.columns if key else ()) if c != col.column]
        if "id" in columns:
            self.row_pk, self.match = sql.SQL("t.id"), sql.SQL("t.id = o.row_pk")
        elif key and col.column in key.columns and len(others) == 1:
            other = sql.Identifier("t", others[0])
            self.row_pk = sql.SQL("{}::bigint").format(other)
            self.match = sql.SQL("{} = o.row_pk AND t.{} = o.old_team_id").format(other, self.column)
        else:
            self.row_pk, self.match = sql.SQL("NULL::bigint"), sql.SQL("t.ctid = o.row_ref")
        self.parts = {
            "table": self.table,
            "column": self.column,
            "row_pk": self.row_pk,
            "row_id": row_id(cur, col.table, col.column),
            "quarantine_id": row_id(cur, col.table, col.column, with_team=True),
            "author": _optional("t", col.author, "bigint"),
            "league": _optional("t", col.league, "bigint"),
            "text": _optional("t", col.text, "text"),
        }
        self.params = {"table_name": col.table, "column_name": col.column}
        self.key = key if key and col.column in key.columns else None
        self.has_id = "id" in columns
        # Rows that share the key but for the team: one batch writes them all (see assign_batches).
        self.parts["group"] = (
            sql.SQL("jsonb_build_object({})::text").format(
                sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(o), sql.Identifier("t", o)) for o in others)
            )
            if self.key is not None
            else sql.SQL("NULL::text")
        )


def restore_mapping(conn: Connection, run_id: str, *, dry_run: bool = False, sample: int = 20) -> dict:
    """Repair every orphaned or misplaced team reference; returns counts per table and strategy."""
    with conn.cursor() as cur:
        with conn.transaction() as tx:
            if dry_run:
                keys_for_dry_run(conn)
            columns = [_Column(cur, c, table_columns(cur)[c.table]) for c in team_columns(cur)]
            key_map = refresh_key_map(cur, run_id)  # the ids the upsert just issued; re-used ids
            reuses = unsettled_reuses(cur)
            unmoved = _decide(cur, columns, reuses)
            decided = _run(cur, "decision_counts").fetchall()
            decisions = [
                dict(zip(("table", "row_id", "old_team_id", "new_team_id", "strategy", "reason", "candidates"), r))
                for r in _run(cur, "sample_decisions", {"limit": sample}).fetchall()
            ]
            if dry_run:
                _run(cur, "drop_work")
                raise Rollback(tx)
            if unmoved:  # rows whose own team was restored under their id: done, with the team
                _run(cur, "record_unmoved", {"run_id": run_id})
        written = {} if dry_run else _write(conn, cur, columns, run_id, decided)
        with conn.transaction():
            unapplied = {} if dry_run else dict(_run(cur, "unapplied").fetchall())
            if reuses and not dry_run:
                settle_reuses(cur, run_id, [r[0] for r in _run(cur, "settled_reuses").fetchall()])
            _run(cur, "drop_work")
    validated = [] if dry_run else validate_team_references(conn)

    counts: dict[str, dict[str, int]] = {}
    for table, _, strategy, n in decided:
        by_table = counts.setdefault(table, {})
        by_table[strategy] = by_table.get(strategy, 0) + n
    return {
        "dry_run": dry_run,
        "orphans": sum(sum(by.values()) for by in counts.values()),
        "by_strategy": {s: sum(by.get(s, 0) for by in counts.values()) for s in STRATEGIES},
        "by_table": counts,
        "reused_ids": len(reuses),
        "reused_sample": [
            {"team_id": r.team_id, "was": r.old_key, "now": r.new_key, "evidence_run": r.evidence_run}
            for r in reuses[:sample]
        ],
        **written,
        "left_for_next_run": unapplied,
        "foreign_keys_validated": validated,
        "key_map": key_map,
        "sample": decisions,
    }


def _decide(cur: Cursor, columns: list[_Column], reuses) -> int:
    """Collect the rows to repair and decide each (phase 1), into the session's repair_orphans;
    returns how many need no write (their own team was restored under their id)."""
    _run(cur, "create_orphans")
    for r in reuses:
        _run(cur, "add_reuse_target", {"team_id": r.team_id, "prev_epoch": r.epoch - 1, "evidence_run": r.evidence_run})
    for c in columns:
        _run(cur, "collect_orphans", c.params, **c.parts)
        if reuses:
            _run(cur, "collect_misplaced", c.params, **c.parts)
    _run(cur, "analyze_orphans")
    # a. the key map; b. restore known teams, then the key map again for their other old ids
    _run(cur, "decide_by_key_map")
    if _undecided(cur):
        _run(cur, "restore_known_teams")
        _run(cur, "advance_team_ids")
        _run(cur, "decide_by_key_map")
    # c. series named in the text; d. the author's only team; e. quarantine
    if _undecided(cur):
        _find_mentions(cur)
        _run(cur, "author_memberships")
        _run(cur, "decide_by_content")
        _run(cur, "decide_by_user_context")
        _run(cur, "quarantine_rest")
    return _run(cur, "no_op_decisions").rowcount


def _undecided(cur: Cursor) -> int:
    return _run(cur, "undecided").fetchone()[0]


def _find_mentions(cur: Cursor) -> None:
    """The series each undecided row's text names, by identity.mentions (the one definition of a
    series label), against the series its league has."""
    keys: dict[int, set[str]] = {}
    prefixes: dict[int, set[str]] = {}
    for league_id, key, name in _run(cur, "series_names").fetchall():
        keys.setdefault(league_id, set()).add(key)
        prefixes.setdefault(league_id, set()).update(parse_label(name).prefix)
    every_key = frozenset(k for ks in keys.values() for k in ks)
    every_prefix = frozenset(p for ps in prefixes.values() for p in ps)
    # Read before the COPY starts: no other statement can run on the connection during it.
    inputs = _run(cur, "mention_inputs").fetchall()
    _run(cur, "create_mentions")
    with cur.copy("COPY repair_mentions (n, series_key) FROM STDIN") as copy:
        for n, body, league_id in inputs:
            known = frozenset(keys.get(league_id, ())) if league_id else every_key
            words = frozenset(prefixes.get(league_id, ())) if league_id else every_prefix
            for key in mentions(body, known, words):
                copy.write_row((n, key))


def _write(conn: Connection, cur: Cursor, columns: list[_Column], run_id: str, decided) -> dict:
    """Phase 2: the decisions, written in short batches per team column."""
    wanted = {(t, c): set() for t, c, *_ in decided}
    for t, c, strategy, _ in decided:
        wanted[(t, c)].add(strategy)
    batches, removed, merged = 0, {}, {}
    for c in columns:
        strategies = wanted.get((c.col.table, c.col.column), set())
        for kind in ([m for m in MOVES if m in strategies], ["quarantine"] if "quarantine" in strategies else []):
            if not kind:
                continue
            with conn.transaction():  # outside one, the batches below would be savepoints of it
                found = _run(cur, "assign_batches", {**c.params, "size": BATCH_ROWS, "strategies": kind}).fetchall()
            for batch in sorted({b for (b,) in found}):
                args = {**c.params, "batch": batch, "strategies": kind, "run_id": run_id}
                with conn.transaction():
                    _run(cur, "clear_batch")
                    _run(cur, "batch_rows", args, table=c.table, column=c.column, match=c.match)
                    if kind == ["quarantine"]:
                        removed[c.col.table] = removed.get(c.col.table, 0) + _quarantine(cur, c, run_id, args)
                    else:
                        merged[c.col.table] = merged.get(c.col.table, 0) + _move(cur, c, run_id)
                    _run(cur, "record_decisions", args)
                batches += 1
    return {
        "batches": batches,
        "quarantined_rows_removed": {t: n for t, n in removed.items() if n},
        "merged_into_existing_rows": {t: n for t, n in merged.items() if n},
    }


def _move(cur: Cursor, c: _Column, run_id: str) -> int:
    """Move the batch's rows to their decided teams; returns the rows merged into an existing one."""
    merged = 0
    if c.key is not None:
        order_terms = [
            sql.SQL("r.{} {}").format(sql.Identifier(col), sql.SQL("DESC" if d.upper() == "DESC" else "ASC"))
            for col, d in c.key.keep_order
        ] + ([sql.SQL("r.id")] if c.has_id else [])
        mapped = sql.SQL(", ").join(
            sql.SQL("coalesce(m.new_team_id, r.{})").format(c.column)
            if name == c.col.column
            else sql.SQL("r.{}").format(sql.Identifier(name))
            for name in c.key.columns
        )
        order = sql.SQL(", ").join(order_terms) if order_terms else sql.SQL("NULL")
        _run(cur, "move_collisions", table=c.table, column=c.column, mapped_key=mapped, order=order)
        collided = sql.SQL(statements("repair")["collided"])
        archived = archive_rows(cur, c.col.table, collided, {}, run_id, "duplicate")
        gone = [n for (n,) in _run(cur, "delete_collided", table=c.table).fetchall()]
        if archived < len(gone):
            raise CountMismatchError(f"{c.col.table}: {len(gone)} rows merged but {archived} archived")
        merged = archived
        if gone:  # a row of the batch that was itself the duplicate: its decision is done
            _run(cur, "mark_applied", {"ns": gone})
        _run(cur, "swapping_rows", table=c.table)
    _run(cur, "move_rows", table=c.table, column=c.column)
    if c.key is not None:
        names = [name for name, _ in live_columns(cur, c.col.table)]
        values = sql.SQL(", ").join(
            sql.Identifier("t", "repair_team_id") if n == c.col.column else sql.Identifier("t", n) for n in names
        )
        columns = sql.SQL(", ").join(map(sql.Identifier, names))
        _run(cur, "swapped_rows_back", table=c.table, columns=columns, values=values)
    return merged


def _quarantine(cur: Cursor, c: _Column, run_id: str, args: dict) -> int:
    """Archive the batch's rows, then detach (nullable) or remove (NOT NULL) them; returns removed."""
    predicate = sql.SQL(statements("repair")["quarantined_predicate"])
    archived = archive_rows(cur, c.col.table, predicate, {}, run_id, "orphan")
    statement = "remove_quarantined" if c.not_null else "detach_quarantined"
    done = _run(cur, statement, table=c.table, column=c.column).rowcount
    if archived != done:
        raise CountMismatchError(f"{c.col.table}: {done} rows quarantined but {archived} archived")
    _run(cur, "record_quarantine", args)
    return done if c.not_null else 0
