"""What the database has, read from PostgreSQL's catalogs: the one module that reads them.

The declarations of what it should have are in league_import.catalog; constraints, dedup,
archive, references and health compare the two through the functions here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from psycopg import Cursor, sql

from league_import.sql import run

_run = partial(run, "pgcatalog")


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    target: str
    target_column: str
    name: str
    validated: bool


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool


@dataclass(frozen=True)
class ColumnDefinition:
    name: str
    identity: bool
    generated: bool
    has_default: bool
    not_null: bool
    sequence: str | None  # the identity or serial sequence, by name in the table's schema


def qualified(cur: Cursor, schema: str, table: str) -> str:
    """A quoted schema.table, for the statements that take a regclass as text."""
    return sql.Identifier(schema, table).as_string(cur)


def foreign_keys(cur: Cursor) -> dict[tuple[str, str], ForeignKey]:
    """Single-column foreign keys of the tables in public, by (table, column)."""
    return {(r[0], r[1]): ForeignKey(*r) for r in _run(cur, "foreign_keys").fetchall()}


def references_to(cur: Cursor, target: str) -> list[ForeignKey]:
    """The foreign keys in public that point at public.<target>."""
    return [fk for fk in foreign_keys(cur).values() if fk.target == target]


def unique_keys(cur: Cursor) -> set[tuple[str, frozenset[str]]]:
    """(table, columns) of every valid, non-partial unique index in public."""
    return {(t, frozenset(cols)) for t, cols in _run(cur, "unique_indexes").fetchall()}


def has_unique(cur: Cursor, table: str, columns) -> bool:
    """Whether a valid, non-partial unique index covers exactly these columns, whatever its name."""
    params = {"table": qualified(cur, "public", table), "columns": sorted(columns)}
    return _run(cur, "unique_index_on", params).fetchone()[0]


def table_columns(cur: Cursor) -> dict[str, dict[str, bool]]:
    """Every table in public: column name -> NOT NULL, in column order."""
    out: dict[str, dict[str, bool]] = {}
    for table, column, not_null in _run(cur, "table_columns").fetchall():
        out.setdefault(table, {})[column] = not_null
    return out


def columns(cur: Cursor, table: str, schema: str = "public") -> list[Column]:
    """One table's columns, in order."""
    return [Column(*r) for r in _run(cur, "columns", {"table": qualified(cur, schema, table)}).fetchall()]


def table_exists(cur: Cursor, table: str, schema: str = "public") -> bool:
    return _run(cur, "table_exists", {"table": qualified(cur, schema, table)}).fetchone()[0]


def unique_index_enforces(cur: Cursor, table: str, columns, *, nullable: bool) -> bool:
    """Whether a unique index enforces exactly these columns immediately (not deferred), with
    NULLs equal, or with none of the columns nullable (`nullable` False)."""
    params = {"table": qualified(cur, "public", table), "columns": sorted(columns), "nullable": nullable}
    return _run(cur, "unique_index_enforces", params).fetchone()[0]


def index_leads_with(cur: Cursor, table: str, column: str) -> bool:
    """Whether a valid, non-partial btree index of public.<table> has `column` first."""
    params = {"table": qualified(cur, "public", table), "column": column}
    return _run(cur, "index_leads_with", params).fetchone()[0]


def sequence_of(cur: Cursor, table: str, column: str = "id", schema: str = "public") -> str | None:
    """The sequence behind an identity or serial column, or None."""
    return _run(cur, "sequence_of", {"table": f"{schema}.{table}", "column": column}).fetchone()[0]


def foreign_key_definitions(cur: Cursor, tables: list[str]) -> list[tuple[str, str, str]]:
    """(table, constraint, definition) of the valid foreign keys of these tables in public."""
    return [tuple(r) for r in _run(cur, "foreign_key_definitions", {"tables": tables}).fetchall()]


def advisory_lock_holder(cur: Cursor, key: int) -> tuple | None:
    """(pid, application name, backend start) of the session holding an advisory lock, or None."""
    return _run(cur, "advisory_lock_holder", {"key": key}).fetchone()


def column_definitions(cur: Cursor, table: str) -> list[ColumnDefinition]:
    """public.<table>'s columns in order, with identity, generated, default, NOT NULL and sequence."""
    params = {"table": qualified(cur, "public", table)}
    return [ColumnDefinition(*r) for r in _run(cur, "table_definition_columns", params).fetchall()]


def referenced_tables(cur: Cursor, table: str) -> list[tuple[str, str]]:
    """(schema, name) of the other tables public.<table>'s foreign keys point at, sorted."""
    return [tuple(r) for r in _run(cur, "referenced_tables", {"table": qualified(cur, "public", table)}).fetchall()]


@dataclass(frozen=True)
class ColumnFact:
    name: str
    type: str
    not_null: bool
    defaulted: bool  # a value comes without being given: a default, an identity, a generated expression


@dataclass(frozen=True)
class TableConstraint:
    name: str
    kind: str  # p, u, x, c
    columns: tuple[str, ...]
    definition: str


def column_facts(cur: Cursor, table: str, schema: str = "public") -> list[ColumnFact]:
    """One table's columns in order, with their type, NOT NULL and whether they have a default."""
    return [ColumnFact(*r) for r in _run(cur, "column_facts", {"table": qualified(cur, schema, table)}).fetchall()]


def table_constraints(cur: Cursor, table: str, schema: str = "public") -> list[TableConstraint]:
    """A table's keys, exclusions and checks, with their columns in key order."""
    found = _run(cur, "table_constraints", {"table": qualified(cur, schema, table)}).fetchall()
    return [TableConstraint(name, kind, tuple(columns), definition) for name, kind, columns, definition in found]


def triggers(cur: Cursor, table: str, schema: str = "public") -> dict[str, bool]:
    """The triggers on a table made by its owner (not those behind foreign keys): name -> enabled."""
    return dict(_run(cur, "triggers", {"table": qualified(cur, schema, table)}).fetchall())


def schema_exists(cur: Cursor, schema: str) -> bool:
    return _run(cur, "schema_exists", {"schema": schema}).fetchone()[0]
