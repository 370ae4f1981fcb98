"""Test helpers: league folders built from the bundled season, and database snapshots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "include" / "demo_data"
LEAGUE = "APTA_CHICAGO"
DATA_TABLES = ("leagues", "clubs", "series", "teams", "schedule", "series_stats")


def copy_demo(dest: Path) -> Path:
    """A writable copy of the bundled season; returns the source_dir."""
    shutil.copytree(DEMO_DATA / LEAGUE, dest / LEAGUE)
    return dest


def read(source_dir: Path, name: str) -> list[dict]:
    return json.loads((source_dir / LEAGUE / name).read_text())


def write(source_dir: Path, name: str, records) -> None:
    (source_dir / LEAGUE / name).write_text(json.dumps(records))


def snapshot(conn) -> dict[str, str]:
    """A content hash per data table (with row ids), to prove a failed run changed nothing."""
    out = {}
    for table in DATA_TABLES:
        exists = conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()[0]
        if exists is None:
            out[table] = "absent"
            continue
        query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), '')) FROM {} t")
        out[table] = conn.execute(query.format(sql.Identifier(table))).fetchone()
    conn.rollback()
    return out


def team_ids(conn) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        "SELECT s.series_key, t.team_key, t.id FROM teams t JOIN series s ON s.id = t.series_id"
    ).fetchall()
    conn.rollback()
    return {(s, k): i for s, k, i in rows}
