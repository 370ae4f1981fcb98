"""Named SQL statements from include/sql/, so the SQL stays readable on its own."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

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
