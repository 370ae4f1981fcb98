"""Create the target schema idempotently (CONTRACT section 4 and 5)."""

from __future__ import annotations

import psycopg

from league_import.sql import script

# One lock id for every schema change, so two runs never race on CREATE ... IF NOT EXISTS.
SCHEMA_LOCK = 7_412_001


def ensure_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(script("schema"))
