"""Connections to the target database, from an Airflow connection or a URI."""

from __future__ import annotations

from urllib.parse import quote

import psycopg

# A task whose process dies (kill -9, a lost Celery worker) leaves its backend running; PostgreSQL
# notices the closed client within this interval even mid-query, ends the backend and frees the
# task lock and every row lock it held (PostgreSQL 14+). The retry waits at most this long.
CLIENT_CHECK = "5s"


def guard_session(conn: psycopg.Connection) -> psycopg.Connection:
    """Ask the server to check for a dead client while a query runs (freeing its locks)."""
    with conn.transaction():
        conn.execute(f"SET client_connection_check_interval = '{CLIENT_CHECK}'")
    return conn


def connect(uri: str) -> psycopg.Connection:
    return guard_session(
        psycopg.connect(
            uri, autocommit=False, keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3
        )
    )


def socket_uri(socket_dir: str, user: str = "postgres", dbname: str = "postgres") -> str:
    """A URI Airflow accepts for a server on a Unix socket: the folder percent-encoded as host."""
    return f"postgresql://{user}@{quote(str(socket_dir), safe='')}/{dbname}"
