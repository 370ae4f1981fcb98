"""Named SQL statements from include/sql/, so the SQL stays readable on its own."""

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


def run(family: str, cur: Cursor, statement: str, params: dict | None = None, /, **parts: sql.Composable) -> Cursor:
    """Run a named statement; identifier `parts` (any names, `name` included) are composed with
    psycopg.sql. A statement run without parts is sent as written (the repair's regexes hold
    literal braces)."""
    text = statements(family)[statement]
    return cur.execute(sql.SQL(text).format(**parts) if parts else text, params)
