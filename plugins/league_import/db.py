"""Connections to the target database, from an Airflow connection or a URI."""

from __future__ import annotations

from urllib.parse import quote

import psycopg


def connect(uri: str) -> psycopg.Connection:
    return psycopg.connect(uri, autocommit=False)


def socket_uri(socket_dir: str, user: str = "postgres", dbname: str = "postgres") -> str:
    """A URI Airflow accepts for a server on a Unix socket: the folder percent-encoded as host."""
    return f"postgresql://{user}@{quote(str(socket_dir), safe='')}/{dbname}"
