"""What every benchmark in bench/ shares: a server, a scratch database on it dropped at the end, the
flow of main() from the server line to the --json file, and the small helpers for timing and checking.

Imported by the scripts next to it (`python bench/bench_x.py` puts bench/ first on sys.path).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# Server settings that move the figures, kept with each result.
SETTINGS = (
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "max_wal_size",
    "wal_level",
    "synchronous_commit",
    "max_parallel_workers_per_gather",
)


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


def clone_database(uri: str, template: str, name: str) -> str:
    """A copy of database `template` (nobody connected to it) as `name`, file by file; returns its URI.

    Every measurement of a step starts from a byte-identical copy of the same prepared state.
    """
    with psycopg.connect(uri, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return with_database(uri, name)


def drop_database(uri: str, name: str) -> None:
    with psycopg.connect(uri, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_name(uri: str) -> str:
    return urlsplit(uri).path.lstrip("/")


class BenchDatabase:
    """The scratch database a benchmark works in: one autocommit connection for set-up and checks,
    a fresh connection for each timed step."""

    def __init__(self, uri: str):
        self.uri = uri
        self.admin = psycopg.connect(uri, autocommit=True)
        self.can_checkpoint = True

    def close(self) -> None:
        self.admin.close()

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.uri, autocommit=False)

    def quiesce(self) -> None:
        """Flush dirty pages first, so a checkpoint owed to earlier work does not land in a timing."""
        if not self.can_checkpoint:
            return
        try:
            self.admin.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            self.can_checkpoint = False


B = TypeVar("B", bound=BenchDatabase)
R = TypeVar("R")


def run(
    args: argparse.Namespace,
    prefix: str,
    *,
    make_bench: Callable[[str], B],
    measure: Callable[[B], R],
    print_table: Callable[[R], None],
    profile: Callable[[B], dict],
    print_profile: Callable[[dict], None],
    targets: Callable[[R, float], dict | list[dict]],
    each: bool = False,
    extra_json: Callable[[B], dict] = lambda bench: {},
    versions: dict[str, str] | None = None,
) -> int:
    """main() of a benchmark after its arguments (--repeat, --profile, --json): one flow, so all report alike.

    In a scratch database `<prefix>_<random>`: the server line, `measure`, and `profile` with --profile.
    Then the table, the profile, peak RSS, a PASS/MISS line per target (`targets` gets the result and
    the peak in MiB) and the total time; last the --json file. A result or targets that are a list go
    under the plural key ("results", "targets"); `extra_json` adds keys after the result, `versions`
    library versions under "machine". `each`: the median is per size ("median of N run(s) each").
    """
    # A terminated run still drops its database and stops its embedded server (finally, atexit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started, load_before = time.perf_counter(), os.getloadavg()
    uri, source = server_uri()
    with scratch_database(uri, prefix) as (db_uri, version):
        with psycopg.connect(db_uri, autocommit=True) as conn:
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SETTINGS}
        bench = make_bench(db_uri)
        try:
            median_of = f"{args.repeat} run(s)" + (" each" if each else "")
            print(f"server: PostgreSQL {version}, {source}; {os.cpu_count()} cores; median of {median_of}")
            result = measure(bench)
            breakdown = profile(bench) if args.profile else None
        finally:
            bench.close()

    peak = peak_rss_mib()
    print()
    print_table(result)
    print()
    if breakdown:
        print_profile(breakdown)
        print()
    print(f"peak RSS of the benchmark process: {peak:.0f} MiB")
    if not bench.can_checkpoint:
        print("note: no CHECKPOINT privilege, timings may include checkpoints owed to earlier runs")
    machine = {"cores": os.cpu_count(), "python": platform.python_version(), "psycopg": psycopg.__version__}
    document = {
        "server": {"version": version, "source": source, "settings": settings},
        "machine": {**machine, **(versions or {})},
        "repeat": args.repeat,
        "results" if isinstance(result, list) else "result": result,
        **extra_json(bench),
        "peak_rss_mib": peak,
        "profile": breakdown,
    }
    return finish(args, targets(result, peak), document, started, load_before)


def finish(
    args: argparse.Namespace, checks: dict | list[dict], document: dict, started: float, load_before: tuple
) -> int:
    """The end every benchmark shares: a PASS/MISS (or REPORTED) line per target, the total time
    and load, and the --json file (`document` with the targets, times and load added)."""
    for check in checks if isinstance(checks, list) else [checks]:
        print(f"{check['status']:4}  {check['target']}" + (f": {check['value']}" if "value" in check else ""))
    elapsed, load_after = time.perf_counter() - started, os.getloadavg()
    print(
        f"total {elapsed:.0f}s; load average (1 min) {load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end"
    )
    if args.json:
        document = {
            **document,
            "targets" if isinstance(checks, list) else "target": checks,
            "elapsed_s": elapsed,
            "load_average": {"start": load_before, "end": load_after},
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


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


def _families() -> list[tuple[str, re.Pattern]]:
    from league_import.sql import SQL_DIR, statements

    # repair before dedup and history: they share statement texts, the first family that matches names it.
    order = ["repair", "upsert", "stage", "dedup", "history"]
    families = order + sorted(p.stem for p in SQL_DIR.glob("*.sql") if p.stem not in order)
    return [(f"{f}.{name}", template_pattern(text)) for f in families for name, text in statements(f).items()]


_PATTERNS: list[tuple[str, re.Pattern]] | None = None
EXTRA_NAMES: list[tuple[str, re.Pattern]] = []  # a benchmark's own statements (its floor), checked first


def statement_name(text: str) -> str:
    """A statement's name in include/sql/<family>.sql, as `family.name`, else its first words."""
    global _PATTERNS
    if _PATTERNS is None:
        _PATTERNS = _families()
    text = text.strip()
    if text.startswith("COPY "):
        return "COPY " + text.split()[1].split("__")[0].strip('"').replace('"."', ".")
    if text.startswith('ALTER TABLE "etl_archive".') and "ADD COLUMN IF NOT EXISTS" in text:
        return "archive: ensure_archive's ADD COLUMN IF NOT EXISTS"  # composed in league_import.archive
    for name, pattern in (*EXTRA_NAMES, *_PATTERNS):
        if pattern.fullmatch(text):
            return name
    return "unnamed: " + " ".join(text.split()[:3])


class StatementTimer(psycopg.Cursor):
    """Times every execute and COPY of the step under test without copying its steps, so they cannot drift.

    The cursor factory StatementProfile.record puts on a connection; its figures go to `profile`.
    A COPY is timed from its start to its end, the rows' conversion in Python included.
    """

    profile: StatementProfile | None = None

    def execute(self, query, params=None, **kwargs):
        before = self.profile.wal_position()
        start = time.perf_counter()
        try:
            return super().execute(query, params, **kwargs)
        finally:
            spent = time.perf_counter() - start
            text = query if isinstance(query, str) else query.as_string(self)
            self.profile.add(text, spent, self.profile.wal_position() - before)

    @contextmanager
    def copy(self, statement, params=None, **kwargs):
        before = self.profile.wal_position()
        start = time.perf_counter()
        try:
            with super().copy(statement, params, **kwargs) as copy:
                yield copy
        finally:
            spent = time.perf_counter() - start
            text = statement if isinstance(statement, str) else statement.as_string(self)
            self.profile.add(text, spent, self.profile.wal_position() - before)


class StatementProfile:
    """--profile: seconds, executions and WAL bytes per statement of each run `record` times.

    `name_of` names a statement by its text (as in include/sql/*.sql); `rest` is the label of the time
    spent outside statements; `count_calls` adds each statement's executions to the runs ("calls").
    """

    def __init__(self, uri: str, name_of: Callable[[str], str], rest: str, *, count_calls: bool = False):
        self.uri, self.name_of, self.rest, self.count_calls = uri, name_of, rest, count_calls
        self.runs: dict[str, dict] = {}
        self.spent: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.wal: dict[str, int] = defaultdict(int)
        self.probe: psycopg.Connection | None = None  # a second connection reading the WAL position

    def __enter__(self) -> StatementProfile:
        probe = psycopg.connect(self.uri, autocommit=True)
        try:
            probe.execute("SELECT pg_current_wal_insert_lsn()")
            self.probe = probe
        except psycopg.Error:  # WAL figures are left out rather than failing the run
            probe.close()
        StatementTimer.profile = self
        return self

    def __exit__(self, *exc) -> None:
        StatementTimer.profile = None
        if self.probe is not None:
            self.probe.close()
            self.probe = None

    def wal_position(self) -> int:
        if self.probe is None:
            return 0
        return int(self.probe.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()[0])

    def add(self, text: str, seconds: float, wal_bytes: int) -> None:
        name = self.name_of(text)
        self.spent[name] += seconds
        self.calls[name] += 1
        self.wal[name] += wal_bytes

    def record(self, name: str, conn: psycopg.Connection, work: Callable[[], object]) -> object:
        """`work()` with every statement on `conn` timed, its figures in runs[name]; returns its result."""
        self.spent.clear()
        self.calls.clear()
        self.wal.clear()
        conn.cursor_factory = StatementTimer
        total, result = timed(work)
        self.runs[name] = {
            **self.spent,
            self.rest: total - sum(self.spent.values()),
            "total": total,
            **({"calls": dict(self.calls)} if self.count_calls else {}),
            "wal_mib": {k: v / 2**20 for k, v in self.wal.items()},
        }
        return result


def print_statement_profile(subject: str, runs: dict[str, dict], rest: str) -> None:
    """The runs of a StatementProfile side by side, a row per statement; under 1 ms in every run left out."""
    not_steps = ("total", "calls", "wal_mib", rest)
    steps = [s for s in dict.fromkeys(k for r in runs.values() for k in r) if s not in not_steps]
    steps = [s for s in steps if max(r.get(s, 0.0) for r in runs.values()) >= 0.001] + [rest, "total"]
    with_wal = any(r["wal_mib"] for r in runs.values())
    calls = {s: max(r.get("calls", {}).get(s, 0) for r in runs.values()) for s in steps}
    label = {s: s + (f" (x{calls[s]})" if calls[s] > 1 else "") for s in steps}
    width = max(map(len, label.values()))
    print(f"profile at {subject} (one run each, seconds" + (", WAL MiB)" if with_wal else ")"))
    print(f"{'step':<{width}}  " + "  ".join(f"{name:>9}" + ("  WAL MiB" if with_wal else "") for name in runs))
    for step in steps:
        cells = []
        for r in runs.values():
            cells.append(f"{r[step]:>9.3f}" if step in r else f"{'-':>9}")
            if with_wal:
                wal = sum(r["wal_mib"].values()) if step == "total" else r["wal_mib"].get(step)
                cells.append(f"{wal:>9.1f}" if wal is not None else f"{'-':>9}")
        print(f"{label[step]:<{width}}  " + "  ".join(cells))
