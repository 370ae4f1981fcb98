"""Named SQL statements from include/sql/, so the SQL stays readable on its own.

Every statement may read the target's entities as {leagues}, {clubs}, {series}, {teams},
{schedule} and {series_stats}: the relations of league_import.target, in CONTRACT section 4's
names whatever the target's tables are called.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from psycopg import Cursor, sql

SQL_DIR = Path(os.environ.get("LEAGUE_IMPORT_SQL_DIR", Path(__file__).resolve().parents[2] / "include" / "sql"))
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def script(family: str) -> str:
    """A whole file, for scripts run as one (the schema)."""
    return (SQL_DIR / f"{family}.sql").read_text(encoding="utf-8")


@cache
def statements(family: str) -> dict[str, str]:
    """The `-- name: x` blocks of include/sql/<family>.sql, by name."""
    parts = _NAME.split(script(family))
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2])}


def compose(family: str, statement: str, **parts: sql.Composable) -> sql.Composed:
    """A named statement with its `parts` (identifiers and fragments, any names, `name`
    included) and the current target's relations composed in with psycopg.sql."""
    from league_import.target import current

    return sql.SQL(statements(family)[statement]).format(**{**current().parts, **parts})


def run(family: str, cur: Cursor, statement: str, params: dict | None = None, /, **parts: sql.Composable) -> Cursor:
    """Run a named statement (see compose)."""
    return cur.execute(compose(family, statement, **parts), params)
