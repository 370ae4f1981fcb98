"""Connections to the target database, from an Airflow connection or a URI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg

CONN_ID = "league_db"


def connect(uri: str) -> psycopg.Connection:
    return psycopg.connect(uri, autocommit=False)


def socket_uri(socket_dir: str, user: str = "postgres", dbname: str = "postgres") -> str:
    """A URI Airflow accepts for a server on a Unix socket: the folder percent-encoded as host."""
    return f"postgresql://{user}@{quote(str(socket_dir), safe='')}/{dbname}"


@contextmanager
def transaction(conn: psycopg.Connection, *, rollback: bool = False) -> Iterator[psycopg.Cursor]:
    """One unit of work: committed, or rolled back on error or when `rollback` (dry runs)."""
    with conn.cursor() as cur:
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        if rollback:
            conn.rollback()
        else:
            conn.commit()
