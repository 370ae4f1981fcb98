"""What every benchmark in bench/ shares: a server, and a scratch database on it dropped at the end.

Imported by the scripts next to it (`python bench/bench_x.py` puts bench/ first on sys.path).
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import resource
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def with_database(uri: str, dbname: str) -> str:
    return urlunsplit(urlsplit(uri)._replace(path=f"/{dbname}"))


def server_uri() -> tuple[str, str]:
    """AIRFLOW_CONN_LEAGUE_DB when set, else a private embedded server removed at exit."""
    if os.environ.get("AIRFLOW_CONN_LEAGUE_DB"):
        return os.environ["AIRFLOW_CONN_LEAGUE_DB"], "AIRFLOW_CONN_LEAGUE_DB"
    from league_import.embedded import ensure_server

    # Short path: the Unix socket lives here (107-byte limit). Registered first so it runs after
    # pgserver's own exit hook has stopped the server and deleted its data folder.
    folder = Path(tempfile.mkdtemp(prefix="libench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return ensure_server(folder / "data", delete_on_exit=True), "embedded (pgserver)"


@contextmanager
def scratch_database(uri: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A new database `<prefix>_<random>` on the server: yields (its URI, the server version), then drops it."""
    dbname = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(uri, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        version = admin.execute("SHOW server_version").fetchone()[0]
    try:
        yield with_database(uri, dbname), version
    finally:
        with psycopg.connect(uri, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


# Small helpers for new benchmarks (bench_repair.py); the older scripts keep their own copies.


def timed(work: Callable[[], object]) -> tuple[float, object]:
    """Wall-clock seconds of `work()`, and its result."""
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def expect(ok: bool, message: str) -> None:
    """A wrong row count means the timing measured the wrong work: stop rather than report it."""
    if not ok:
        raise RuntimeError(f"benchmark check failed: {message}")


def peak_rss_mib() -> float:
    """Peak resident memory of this process (the server's processes are not counted)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def positive(text: str) -> int:
    """argparse type: an integer >= 1, '_' and ',' allowed as separators."""
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def template_pattern(template: str) -> re.Pattern:
    """A statement template of include/sql as a regex: its text literally, any {placeholder} as anything."""
    parts = re.split(r"(\{\{|\}\}|\{\w*\})", template)
    pattern = "".join(
        "{" if p == "{{" else "}" if p == "}}" else ".*?" if p.startswith("{") else re.escape(p) for p in parts
    )
    return re.compile(pattern, re.DOTALL)
