"""restore_mapping: put every orphaned or misplaced user row back on its real team, or quarantine it.

Two phases, so the app keeps working while it runs:
1. Decide, in one transaction that locks no user table: record new ids and re-used ids in the
   key map, collect every row whose team id exists nowhere and every row the last good backup
   shows on an id another process re-used, and decide each by the strategies documented at the
   top of include/sql/repair.sql. Nothing is attached to a plausible team: a strategy decides a
   row only when exactly one team qualifies.
2. Write, per team column, in batches of about BATCH_ROWS rows, each one short transaction
   that takes row locks only: moves (collisions on a natural key settled by the dedup rule,
   archived), and quarantine (the original archived first; a nullable team column set NULL, a
   NOT NULL one has its row moved to the archive), with etl.repairs and etl.quarantine written
   in the same transaction. A batch re-checks that each row is still on the id it was collected
   on; a row the app changed meanwhile is left for the next run. Rows that share a natural key
   but for the team (one user's memberships) are written in one batch: on re-used ids they may
   trade places. A retry, or a run killed midway, starts again from the rows still wrong; a
   second run finds none.

The bulk of a churn is rows on ids no team has, whose key map meaning names a live team: every
row on such an id goes to that one team, so the key map decides per id (repair_id_map), not per
row. Phase 1 only counts those rows, and phase 2 (after the row-by-row batches) writes them with
the floor's own UPDATE ... FROM, in batches of whole old ids where an index leads with the team
column, else of ranges of the column's position (its table's id, or the other column of its
natural key), etl.repairs filled from the UPDATE's RETURNING in the same statement. Where the
natural key holds the team column, the key's unique index checks each move as it is written; a
batch it refuses is rolled back to its savepoint and written again row by row, collisions
settled. Collecting, re-reading and comparing every row cost three times the writes themselves
(docs/benchmarks.md).
"""

from __future__ import annotations

from functools import partial

from psycopg import Connection, Cursor, Rollback, errors, sql

from league_import.archive import archive_rows, live_columns
from league_import.catalog import TeamColumn
from league_import.constraints import keys_for_dry_run, validate_team_references
from league_import.errors import CountMismatchError
from league_import.history import keep_order, refresh_key_map, settle_reuses, unsettled_reuses
from league_import.identity import mentions, parse_label
from league_import.pgcatalog import columns as column_types
from league_import.pgcatalog import index_leads_with, sequence_of, table_columns, unique_index_enforces
from league_import.references import not_owned, row_id, row_key, team_columns
from league_import.sql import compose, run, statements
from league_import.target import current

STRATEGIES = ("key_map", "restored_team", "content", "user_context", "quarantine")
MOVES = ["key_map", "restored_team", "content", "user_context"]
BATCH_ROWS = 10_000
POSITION_TYPES = ("bigint", "integer", "smallint")
FIRST, LAST = -(2**63), 2**63 - 1  # the ends of a bigint position range

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
        key = row_key(cur, col.table, col.column)
        others = [c for c in (key.columns if key else ()) if c != col.column]
        types = {c.name: c.type for c in column_types(cur, col.table)}
        if types.get("id") in POSITION_TYPES:  # an integer id (a uuid one names its row by text, below)
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
            "unowned": not_owned(col),
        }
        self.params = {"table_name": col.table, "column_name": col.column}
        self.key = key if key and col.column in key.columns else None
        self.has_id = "id" in columns
        # The bulk strategy's position: an integer that names the row and never changes with its
        # team (the id; for memberships the user, so a user's rows share a batch).
        position = "id" if self.has_id else (others[0] if self.key is not None and len(others) == 1 else None)
        self.pos = position if types.get(position) in POSITION_TYPES and columns[position] else None
        self.parts["pos"] = sql.Identifier(self.pos or col.column)
        self.nullable_key = any(not columns[n] for n in (self.key.columns if self.key else ()))
        self.moving: dict[int, tuple[int, int]] = {}  # old id -> (new id, rows) the bulk strategy moves
        self.batches: list[tuple[list[int] | None, int, int]] = []  # (old ids or all, position range)
        if self.key is not None:
            # A row s already holding the key a moving row x goes to: by equal values (what the
            # natural key's index finds), and NULL-safe (NULLs compare equal, as in the key).
            team = sql.SQL("s.{} = x.repair_new_team_id").format(self.column)

            def same(op: str) -> sql.Composable:
                return sql.SQL(" AND ").join(
                    [team, *(sql.SQL("s.{c} {op} x.{c}").format(c=sql.Identifier(n), op=sql.SQL(op)) for n in others)]
                )

            nullable = [sql.SQL("x.{} IS NULL").format(sql.Identifier(n)) for n in others if not columns[n]]
            self.parts["same_key_equal"] = same("=")
            self.parts["same_key"] = same("IS NOT DISTINCT FROM")
            self.parts["key_has_null"] = sql.SQL(" OR ").join(nullable) if nullable else sql.SQL("false")
        # Rows that share the key but for the team: one batch writes them all (see assign_batches).
        self.parts["group"] = (
            sql.SQL("jsonb_build_object({})::text").format(
                sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(o), sql.Identifier("t", o)) for o in others)
            )
            if self.key is not None
            else sql.SQL("NULL::text")
        )

    @property
    def moving_rows(self) -> int:
        return sum(n for _, n in self.moving.values())


def restore_mapping(conn: Connection, run_id: str, *, dry_run: bool = False, sample: int = 20) -> dict:
    """Repair every orphaned or misplaced team reference; returns counts per table and strategy."""
    with conn.cursor() as cur:
        with conn.transaction() as tx:
            _run(cur, "settings")
            if dry_run:
                keys_for_dry_run(conn)
            tables = table_columns(cur)
            columns = [_Column(cur, c, tables[c.table]) for c in team_columns(cur)]
            key_map = refresh_key_map(cur, run_id)  # the ids the upsert just issued; re-used ids
            reuses = unsettled_reuses(cur)
            unmoved = _decide(cur, columns, reuses)
            decided = _run(cur, "decision_counts").fetchall()
            decided += [(c.col.table, c.col.column, "key_map", c.moving_rows) for c in columns if c.moving_rows]
            decisions = [
                dict(zip(("table", "row_id", "old_team_id", "new_team_id", "strategy", "reason", "candidates"), r))
                for r in _run(cur, "sample_decisions", {"limit": sample}).fetchall()
            ]
            decisions = sorted(decisions + _bulk_sample(columns, sample), key=lambda d: (d["strategy"], d["table"]))
            decisions = decisions[:sample]
            if dry_run:  # the session's work tables go with the rollback
                raise Rollback(tx)
            if unmoved:  # rows whose own team was restored under their id: done, with the team
                _run(cur, "record_unmoved", {"run_id": run_id})
        written = {} if dry_run else _write(conn, cur, columns, run_id, swaps=bool(reuses))
        with conn.transaction():
            unapplied = {} if dry_run else dict(_run(cur, "unapplied").fetchall())
            for table, n in written.pop("bulk_left", {}).items():
                unapplied[table] = unapplied.get(table, 0) + n
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


def _bulk_ready(cur: Cursor, c: _Column) -> bool:
    """Whether the bulk strategy can write this column: it has a position, and a move that would
    repeat its natural key is refused by the key's own index (then settled; see module doc)."""
    if c.pos is None:
        return False
    if c.key is None:
        return True
    return unique_index_enforces(cur, c.col.table, c.key.columns, nullable=c.nullable_key)


def _scan_bulk(cur: Cursor, c: _Column) -> list[int]:
    """Count the column's rows on ids no team has, per id, and plan its batches; returns the ids
    repair_id_map has no team for (their rows are collected and decided one by one).

    Where an index leads with the team column, a batch is a run of whole old ids (split by
    position when one id has more rows than a batch): it reads only the rows it moves, through
    that index, as the floor's own UPDATE does. Elsewhere a batch is a range of positions, whose
    edges this read finds, and reads every row of its range.
    """
    params = {**c.params, "size": BATCH_ROWS}
    by_ids = index_leads_with(cur, c.col.table, c.col.column)
    if by_ids:
        found = [(old, new, n, None) for old, new, n in _run(cur, "bulk_ids", **c.parts).fetchall()]
    else:
        found = _run(cur, "bulk_scan", params, **c.parts).fetchall()
    c.moving = {old: (new, n) for old, new, n, _ in found if old is not None and new is not None}
    if by_ids:
        c.batches = _id_batches(cur, c)
    else:
        edges = sorted({edge for old, _, _, edge in found if old is None})
        c.batches = [(None, lo, hi) for lo, hi in _ranges(edges)]
    return [old for old, new, _, _ in found if old is not None and new is None]


def _id_batches(cur: Cursor, c: _Column) -> list[tuple[list[int] | None, int, int]]:
    """Runs of whole old ids of at most BATCH_ROWS rows; an id with more, by its own position edges."""
    batches: list[tuple[list[int] | None, int, int]] = []
    run: list[int] = []
    rows = 0
    for old, (_, n) in sorted(c.moving.items()):
        if n > BATCH_ROWS:
            edges = [e for (e,) in _run(cur, "id_edges", {"id": old, "size": BATCH_ROWS}, **c.parts).fetchall()]
            batches += [([old], lo, hi) for lo, hi in _ranges(edges)]
            continue
        if run and rows + n > BATCH_ROWS:
            batches.append((run, FIRST, LAST))
            run, rows = [], 0
        run.append(old)
        rows += n
    if run:
        batches.append((run, FIRST, LAST))
    return batches


def _decide(cur: Cursor, columns: list[_Column], reuses) -> int:
    """Collect the rows to repair and decide each (phase 1), into the session's repair_orphans;
    returns how many need no write (their own team was restored under their id)."""
    _run(cur, "create_orphans")
    _run(cur, "key_map_decisions")
    for r in reuses:
        _run(cur, "add_reuse_target", {"team_id": r.team_id, "prev_epoch": r.epoch - 1, "evidence_run": r.evidence_run})
    for c in columns:
        if not _bulk_ready(cur, c):
            _run(cur, "collect_orphans", c.params, **c.parts, scope=sql.SQL("true"))
        elif unmapped := _scan_bulk(cur, c):
            scope = sql.SQL("t.{} = ANY (%(ids)s)").format(c.column)
            _run(cur, "collect_orphans", {**c.params, "ids": unmapped}, **c.parts, scope=scope)
        if reuses:
            _run(cur, "collect_misplaced", c.params, **c.parts)
    _run(cur, "analyze_orphans")
    # a. the key map; b. restore known teams, then the key map again for their other old ids
    _run(cur, "decide_by_key_map")
    if _undecided(cur):
        _restore_known_teams(cur)
        _run(cur, "decide_by_key_map")
    # c. series named in the text; d. the author's only team; e. quarantine
    if _undecided(cur):
        _find_mentions(cur)
        _run(cur, "author_memberships")
        _run(cur, "decide_by_content")
        _run(cur, "decide_by_user_context")
        _run(cur, "quarantine_rest")
    return _run(cur, "no_op_decisions").rowcount


def _restore_known_teams(cur: Cursor) -> None:
    """Strategy b: put back each known team no longer there, inactive (and its league, club and
    series where they are gone too), through the target."""
    target = current()
    _run(cur, "restore_known_teams")
    for entity in ("leagues", "clubs", "series", "teams"):
        rows = compose("repair", f"restore_{entity}", next_id=target.next_id(cur, entity))
        target.insert(cur, entity, rows)
    _run(cur, "restored_decisions")
    teams = target.table_name("teams")
    if seq := sequence_of(cur, teams, target.column("teams", "id")):
        _run(cur, "advance_team_ids", {"seq": seq})


def _bulk_sample(columns: list[_Column], limit: int) -> list[dict]:
    """The bulk strategy's decisions, one entry per old id (with its rows), for the report."""
    return [
        {
            "table": c.col.table,
            "row_id": None,
            "old_team_id": old,
            "new_team_id": new,
            "strategy": "key_map",
            "reason": None,
            "candidates": None,
            "rows": n,
        }
        for c in columns
        for old, (new, n) in sorted(c.moving.items())[:limit]
    ]


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


def _write(conn: Connection, cur: Cursor, columns: list[_Column], run_id: str, *, swaps: bool) -> dict:
    """Phase 2: the decisions, written in short batches per team column. `swaps`: rows may trade
    places, which only rows on a re-used id can (every other row leaves an id no team has)."""
    with conn.transaction():  # outside one, the batches below would be savepoints of it
        _run(cur, "settings")
        _run(cur, "assign_batches", {"size": BATCH_ROWS})
        _run(cur, "index_batches")
        found = _run(cur, "batch_ranges").fetchall()
    ranges: dict[tuple[str, str, bool], list[tuple[int, int, int]]] = {}
    for table, column, quarantine, batch, first, last in found:
        ranges.setdefault((table, column, quarantine), []).append((batch, first, last))
    batches, removed, merged, archived = 0, {}, {}, {}
    for c in columns:
        for kind, quarantine in ((MOVES, False), (["quarantine"], True)):
            for batch, first, last in ranges.get((c.col.table, c.col.column, quarantine), []):
                args = {**c.params, "batch": batch, "first": first, "last": last, "strategies": kind, "run_id": run_id}
                with conn.transaction():
                    _run(cur, "clear_batch")
                    _run(cur, "batch_rows", args, table=c.table, column=c.column, match=c.match)
                    if quarantine:
                        gone, copies = _quarantine(cur, c, run_id, args)
                        removed[c.col.table] = removed.get(c.col.table, 0) + gone
                    else:
                        copies = _move(cur, c, run_id, swaps)
                        merged[c.col.table] = merged.get(c.col.table, 0) + copies
                    archived[c.col.table] = archived.get(c.col.table, 0) + copies
                    _run(cur, "record_decisions", args, written=_statement("batch_decisions"))
                batches += 1
    # The bulk strategy last: the rows decided one by one (on re-used ids) have left the ids
    # these rows go to, so a collision met here is a real duplicate.
    left: dict[str, int] = {}
    for c in columns:
        expected = c.moving_rows
        if not expected:
            continue
        moved = 0
        for ids, lo, hi in c.batches:
            args = {**c.params, "ids": ids, "lo": lo, "hi": hi, "run_id": run_id}
            parts = {**c.parts, "batch": _batch_rows(c, ids, lo, hi)}
            with conn.transaction():
                _run(cur, "bulk_settings")
                try:
                    with conn.transaction():  # a savepoint: a batch that repeats a key is written again
                        moves = _statement("move_by_key_map", **parts)
                        moved += _run(cur, "record_decisions", args, written=moves).rowcount
                except errors.UniqueViolation:
                    written, collided = _bulk_with_collisions(cur, c, run_id, args, parts)
                    moved += written
                    merged[c.col.table] = merged.get(c.col.table, 0) + collided
                    archived[c.col.table] = archived.get(c.col.table, 0) + collided
            batches += 1
        if moved < expected:  # rows the app moved or removed meanwhile
            left[c.col.table] = left.get(c.col.table, 0) + expected - moved
    return {
        "batches": batches,
        "quarantined_rows_removed": {t: n for t, n in removed.items() if n},
        "merged_into_existing_rows": {t: n for t, n in merged.items() if n},
        "archived_rows": {t: n for t, n in archived.items() if n},
        "bulk_left": left,
    }


def _statement(name: str, **parts: sql.Composable) -> sql.Composable:
    text = sql.SQL(statements("repair")[name])
    return text.format(**parts) if parts else text


def _batch_rows(c: _Column, ids: list[int] | None, lo: int, hi: int) -> sql.Composable:
    """A bulk batch's rows (alias t): its old ids, its position range, or both."""
    terms = [sql.SQL("t.{} = ANY (%(ids)s)").format(c.column)] if ids is not None else []
    if (lo, hi) != (FIRST, LAST):
        terms.append(sql.SQL("t.{} BETWEEN %(lo)s AND %(hi)s").format(sql.Identifier(c.pos)))
    return sql.SQL(" AND ").join(terms) if terms else sql.SQL("true")


def _ranges(edges: list[int]) -> list[tuple[int, int]]:
    """Position ranges [lo, hi] between the batch edges, the first and the last open-ended."""
    bounds = [FIRST - 1, *(e for e in edges if e < LAST), LAST]
    return [(lo + 1, hi) for lo, hi in zip(bounds, bounds[1:])]


def _bulk_with_collisions(cur: Cursor, c: _Column, run_id: str, args: dict, parts: dict) -> tuple[int, int]:
    """A bulk batch that repeats a natural key, written as a row-by-row batch: returns the rows
    recorded and the rows merged into an existing one."""
    _run(cur, "clear_batch")
    first, last = _run(cur, "collect_bulk_batch", args, **parts).fetchone()
    if first is None:
        return 0, 0
    merged = _move(cur, c, run_id, swaps=False)
    written = _statement("collected_decisions")
    return _run(cur, "record_decisions", {**args, "first": first, "last": last}, written=written).rowcount, merged


def _move(cur: Cursor, c: _Column, run_id: str, swaps: bool) -> int:
    """Move the batch's rows to their decided teams; returns the rows merged into an existing one."""
    merged = 0
    if c.key is not None:
        mapped = sql.SQL(", ").join(
            sql.SQL("coalesce(m.new_team_id, r.{})").format(c.column)
            if name == c.col.column
            else sql.SQL("r.{}").format(sql.Identifier(name))
            for name in c.key.columns
        )
        order = keep_order(c.key, has_id=c.has_id)
        _run(
            cur,
            "move_collisions",
            table=c.table,
            column=c.column,
            mapped_key=mapped,
            order=order,
            same_key=c.parts["same_key"],
            same_key_equal=c.parts["same_key_equal"],
            key_has_null=c.parts["key_has_null"],
        )
        collided = sql.SQL(statements("repair")["collided"])
        archived = archive_rows(cur, c.col.table, collided, {}, run_id, "duplicate")
        gone = [n for (n,) in _run(cur, "delete_collided", table=c.table).fetchall()]
        if archived < len(gone):
            raise CountMismatchError(f"{c.col.table}: {len(gone)} rows merged but {archived} archived")
        merged = archived
        if gone:  # a row of the batch that was itself the duplicate: its decision is done
            _run(cur, "mark_applied", {"ns": gone})
        if swaps:
            _run(cur, "swapping_rows", table=c.table)
    _run(cur, "move_rows", table=c.table, column=c.column)
    if c.key is not None and swaps:
        names = [name for name, _ in live_columns(cur, c.col.table)]
        values = sql.SQL(", ").join(
            sql.Identifier("t", "repair_team_id") if n == c.col.column else sql.Identifier("t", n) for n in names
        )
        columns = sql.SQL(", ").join(map(sql.Identifier, names))
        _run(cur, "swapped_rows_back", table=c.table, columns=columns, values=values)
    return merged


def _quarantine(cur: Cursor, c: _Column, run_id: str, args: dict) -> tuple[int, int]:
    """Archive the batch's rows, then detach (nullable) or remove (NOT NULL) them; returns the rows
    removed and the rows archived."""
    predicate = sql.SQL(statements("repair")["quarantined_predicate"])
    archived = archive_rows(cur, c.col.table, predicate, {}, run_id, "orphan")
    statement = "remove_quarantined" if c.not_null else "detach_quarantined"
    done = _run(cur, statement, table=c.table, column=c.column).rowcount
    if archived != done:
        raise CountMismatchError(f"{c.col.table}: {done} rows quarantined but {archived} archived")
    _run(cur, "record_quarantine", args)
    return (done if c.not_null else 0), archived
