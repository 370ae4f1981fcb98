"""Check the database against the declared constraints and add what is safe now.

On a database left by the old system (missing UNIQUE keys, missing or NOT VALID foreign keys,
duplicates), every missing or invalid constraint is reported with the rows that block it:
- a UNIQUE key with no duplicates is added now; with duplicates, deduplicate adds it;
- a foreign key to teams is added NOT VALID (no new orphans can be written) and validated after
  restore_mapping repairs the orphans;
- anything no later step can fix (a missing column, an orphan of another table) fails the step,
  and nothing is changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial

import psycopg
from psycopg import sql

from league_import.catalog import NaturalKey, Reference, is_personal, natural_keys, references
from league_import.errors import ConstraintError, is_transient
from league_import.pgcatalog import foreign_keys, table_columns, unique_keys
from league_import.sql import run
from league_import.words import plural, verb


@dataclass
class Finding:
    constraint: str
    table: str
    kind: str  # unique | foreign_key
    state: str  # present | added | added_not_valid | validated | missing | not_valid | failed
    blocking_rows: int = 0
    sample: list = field(default_factory=list)
    action: str = ""
    fatal: bool = False


def _ident(*parts: str) -> sql.Identifier:
    return sql.Identifier(*parts)


def _columns(names) -> sql.Composed:
    return sql.SQL(", ").join(map(_ident, names))


_run = partial(run, "constraints")


def sample_key(table: str, columns, alias: str | None = None) -> sql.Composable:
    """A key as JSON for reports: personal values (an email) only as a keyed digest
    (etl.personal_digest: HMAC under this installation's own key), never as written."""

    def value(c: str) -> sql.Composable:
        ref = sql.Identifier(alias, c) if alias else sql.Identifier(c)
        return sql.SQL("etl.personal_digest({}::text)").format(ref) if is_personal(table, c) else ref

    pairs = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(c), value(c)) for c in columns)
    return sql.SQL("jsonb_build_object({})").format(pairs)


def duplicates(cur: psycopg.Cursor, key: NaturalKey, *, sample: bool = True) -> tuple[int, int, list]:
    """(repeated keys, extra rows, worst few keys with their copies); without `sample` (a
    database the pipeline has not set up yet: no digest key) the keys are counted only."""
    key_json = sample_key(key.table, key.columns) if sample else sql.SQL("NULL::jsonb")
    return _run(
        cur, "duplicate_keys", table=_ident("public", key.table), key=_columns(key.columns), key_json=key_json
    ).fetchone()


def add_unique(cur: psycopg.Cursor, key: NaturalKey) -> None:
    """Add a natural key as UNIQUE NULLS NOT DISTINCT."""
    _run(cur, "add_unique", table=_ident("public", key.table), name=_ident(key.name), key=_columns(key.columns))


def drop_constraint(cur: psycopg.Cursor, table: str, name: str) -> None:
    _run(cur, "drop_constraint", table=_ident("public", table), name=_ident(name))


def add_as_defined(cur: psycopg.Cursor, table: str, name: str, definition: str) -> None:
    """Add a constraint back as the catalog stated it (pgcatalog: pg_get_constraintdef())."""
    _run(cur, "add_as_defined", table=_ident("public", table), name=_ident(name), definition=sql.SQL(definition))


def orphans(cur: psycopg.Cursor, ref: Reference) -> tuple[int, list]:
    """(rows pointing at nothing, the first few such references)."""
    return _run(
        cur,
        "orphans",
        table=_ident("public", ref.table),
        column=_ident(ref.column),
        target=_ident("public", ref.target),
        target_column=_ident(ref.target_column),
    ).fetchone()


def _fk_parts(ref: Reference) -> dict:
    return {
        "table": _ident("public", ref.table),
        "name": _ident(ref.name),
        "column": _ident(ref.column),
        "target": _ident("public", ref.target),
        "target_column": _ident(ref.target_column),
    }


def _attempt(conn: psycopg.Connection, finding: Finding, action) -> None:
    """Run one DDL change in a savepoint: a failure is reported as fatal, not half-applied; a
    lock timeout or a deadlock is not a failure of the constraint and is raised to be retried."""
    try:
        with conn.transaction():
            action()
    except psycopg.Error as exc:
        if is_transient(exc):
            raise
        finding.state, finding.fatal = "failed", True
        finding.action = f"could not add: {exc.diag.message_primary or exc}"


def check_constraints(conn: psycopg.Connection, *, apply: bool = True) -> list[Finding]:
    """Report every declared constraint; add the safe ones unless `apply` is false (dry run).

    On an app's database nothing is added here: the keys the mapping declares are added by
    `league-import target apply` (league_import.targetplan), which validate_constraints checks
    first; a run on a database without them never gets this far."""
    from league_import.target import current

    apply = apply and current().owns_tables
    findings: list[Finding] = []
    with conn.transaction() as tx, conn.cursor() as cur:
        uniques = unique_keys(cur)
        fks = foreign_keys(cur)
        columns = table_columns(cur)

        for key in natural_keys():
            finding = Finding(key.name, key.table, "unique", "present")
            findings.append(finding)
            missing = [c for c in key.columns if c not in columns.get(key.table, ())]
            if missing:
                finding.state, finding.fatal = "failed", True
                finding.action = f"table {key.table} lacks column(s) {', '.join(missing)}"
                continue
            if (key.table, frozenset(key.columns)) in uniques:
                continue
            repeated, extra, worst = duplicates(cur, key)
            if extra:
                finding.state, finding.blocking_rows, finding.sample = "missing", extra, worst
                finding.action = f"deduplicate removes {extra} duplicate rows ({repeated} keys) and adds it"
                continue
            finding.state = "added"
            _attempt(conn, finding, lambda k=key: add_unique(cur, k))

        for ref in references():
            findings.append(_check_reference(conn, cur, ref, fks.get((ref.table, ref.column)), columns))

        fatal = [f for f in findings if f.fatal]
        if fatal:
            raise ConstraintError(
                "constraints that no step of this pipeline can make hold; nothing was changed:\n"
                + "\n".join(f"- {f.constraint} on {f.table}: {f.action}" for f in fatal)
            )
        if not apply:
            raise psycopg.Rollback(tx)
    return findings


def _check_reference(conn, cur, ref: Reference, existing, columns) -> Finding:
    finding = Finding(ref.name, ref.table, "foreign_key", "present")
    if ref.column not in columns.get(ref.table, ()) or ref.target not in columns:
        finding.state, finding.fatal = "failed", True
        finding.action = f"{ref.table}.{ref.column} or table {ref.target} does not exist"
        return finding
    if existing and existing.target == ref.target and existing.validated:
        return finding
    count, sample = orphans(cur, ref)
    finding.blocking_rows, finding.sample = count, list(sample)
    parts = _fk_parts(ref) if not existing else {**_fk_parts(ref), "name": _ident(existing.name)}
    if existing and existing.target == ref.target:  # present but NOT VALID
        finding.state = "not_valid"
        if count == 0:
            finding.state = "validated"
            _attempt(conn, finding, lambda: _run(cur, "validate_foreign_key", **parts))
        elif ref.to_teams:
            finding.action = f"restore_mapping repairs the {count} orphans, then it is validated"
        else:
            finding.fatal = True
            finding.action = (
                f"{plural(count, 'row')} {verb(count, 'references', 'reference')} missing {ref.target} rows "
                f"(e.g. {ref.column} = {sample})"
            )
        return finding
    if count == 0:
        finding.state = "added"
        _attempt(conn, finding, lambda: _run(cur, "add_foreign_key", **parts))
    elif ref.to_teams:
        finding.state = "added_not_valid"
        finding.action = f"added NOT VALID; restore_mapping repairs the {count} orphans, then it is validated"
        _attempt(conn, finding, lambda: _run(cur, "add_foreign_key_not_valid", **parts))
    else:
        finding.state, finding.fatal = "missing", True
        finding.action = (
            f"{plural(count, 'row')} {verb(count, 'references', 'reference')} missing {ref.target} rows "
            f"(e.g. {ref.column} = {sample})"
        )
    return finding


def keys_for_dry_run(conn: psycopg.Connection) -> None:
    """On a dry run validate_constraints added nothing, but the later steps plan by the keys it
    would have added (unique indexes, foreign keys): add the safe ones inside the caller's
    transaction, which the dry run rolls back, so a dry run takes the plans a real run takes.
    (On an app's database the tasks add none.)"""
    from league_import.target import current

    if current().owns_tables:
        check_constraints(conn)


def add_reference(conn: psycopg.Connection, cur: psycopg.Cursor, ref: Reference) -> Finding:
    """Add one declared foreign key where it is missing (NOT VALID while rows point nowhere);
    raises ConstraintError where it cannot be added."""
    finding = _check_reference(conn, cur, ref, foreign_keys(cur).get((ref.table, ref.column)), table_columns(cur))
    if finding.fatal:
        raise ConstraintError(f"{ref.name} on {ref.table}: {finding.action}")
    return finding


def validate_team_references(conn: psycopg.Connection) -> list[str]:
    """After repair: validate the foreign keys to teams that were added NOT VALID."""
    validated = []
    with conn.transaction(), conn.cursor() as cur:
        fks = foreign_keys(cur)
        for ref in references():
            existing = fks.get((ref.table, ref.column))
            if ref.to_teams and existing and existing.target == "teams" and not existing.validated:
                _run(cur, "validate_foreign_key", **{**_fk_parts(ref), "name": _ident(existing.name)})
                validated.append(existing.name)
    return validated


def summarize(findings: list[Finding]) -> dict:
    """The report kept in etl.runs: counts per state, and every finding that is not plainly present."""
    states: dict[str, int] = {}
    for f in findings:
        states[f.state] = states.get(f.state, 0) + 1
    return {"states": states, "findings": [asdict(f) for f in findings if f.state != "present"]}
