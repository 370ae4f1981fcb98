"""Health checks: is last night's data sound? Each check has a figure, a threshold and a status.

Read-only: the same checks run as the DAG's last task and as `make health` against any database.
Only `record` writes (etl.health_checks, so trends can be queried).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial

from psycopg import Connection, Cursor, sql

from league_import.catalog import ETL_TABLES, NATURAL_KEYS, REFERENCES, USER_TABLES, Reference
from league_import.constraints import duplicates, foreign_keys, has_unique, orphans
from league_import.references import team_columns
from league_import.sql import run, statements

DEFAULT_THRESHOLDS = {
    "growth_warn": 2.0,  # rows now / rows after the last successful run
    "growth_error": 10.0,  # a table growing 100x (the 3.47 M-row backup loop) is far past this
    "drop_warn": 0.10,  # share of an ETL-owned table's rows gone since the last successful run
    "drop_error": 0.50,
    "min_baseline": 100,  # tables smaller than this never alarm on growth or drop (+3 rows on 2)
    "quarantine_warn": 1,  # unresolved quarantined rows waiting for a person
}


class HealthCheckError(RuntimeError):
    """Checks at error level: the run fails, with its report kept."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Check:
    check: str  # orphans | duplicates | rows | row_balance | constraint | quarantine
    subject: str  # table.column, table, or constraint name
    figure: float
    threshold: str
    status: str = "ok"  # ok | warn | error
    detail: str = ""
    sample: list = field(default_factory=list)


_run = partial(run, "health")


def thresholds(overrides: dict | None = None) -> dict:
    """Defaults with the configured overrides; unknown names are refused, not ignored."""
    unknown = set(overrides or {}) - set(DEFAULT_THRESHOLDS)
    if unknown:
        raise ValueError(
            f"unknown health thresholds: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULT_THRESHOLDS)})"
        )
    return {**DEFAULT_THRESHOLDS, **(overrides or {})}


def run_checks(conn: Connection, run_id: str | None = None, limits: dict | None = None) -> list[Check]:
    """Every check, against the database as it is. `run_id` names the run whose backup to compare."""
    limits = thresholds(limits)
    with conn.transaction(), conn.cursor() as cur:
        counts = {
            table: _run(cur, "count_rows", table=sql.Identifier("public", table)).fetchone()[0]
            for table in (*ETL_TABLES, *USER_TABLES)
        }
        checks = [
            *_orphans(cur),
            *_duplicates(cur),
            *_constraints(cur),
            *_rows(cur, run_id, limits, counts),
            *_row_balance(cur, run_id, counts),
            _quarantine(cur, limits),
        ]
    return checks


def _orphans(cur: Cursor) -> list[Check]:
    """Every team reference, ETL-owned and user-owned (declared or found by foreign key). A valid
    foreign key is not trusted blindly: the old ETL switched the triggers off."""
    refs = [r for r in REFERENCES if r.to_teams and r.table in ETL_TABLES]
    refs += [Reference(c.table, c.column, "teams") for c in team_columns(cur)]
    out = []
    for ref in refs:
        count, sample = orphans(cur, ref)
        detail = f"{count} rows point at no team" if count else ""
        out.append(
            Check("orphans", f"{ref.table}.{ref.column}", count, "0", "error" if count else "ok", detail, list(sample))
        )
    return out


def _duplicates(cur: Cursor) -> list[Check]:
    """A valid unique index makes duplicates impossible; only unenforced keys are scanned."""
    out = []
    for key in NATURAL_KEYS:
        if has_unique(cur, key.table, key.columns):
            out.append(Check("duplicates", key.table, 0, "0", detail="enforced by a unique key"))
            continue
        repeated, extra, worst = duplicates(cur, key)
        out.append(
            Check(
                "duplicates",
                key.table,
                extra,
                "0",
                "error" if extra else "ok",
                f"{extra} extra rows over {repeated} keys, no unique key" if extra else "no unique key",
                worst,
            )
        )
    return out


def _constraints(cur: Cursor) -> list[Check]:
    out = []
    for key in NATURAL_KEYS:
        ok = has_unique(cur, key.table, key.columns)
        out.append(
            Check(
                "constraint",
                key.name,
                0 if ok else 1,
                "present",
                "ok" if ok else "error",
                "" if ok else f"no unique key on {key.table} ({', '.join(key.columns)})",
            )
        )
    fks = {key: (target, valid) for key, (target, _, valid) in foreign_keys(cur).items()}
    for ref in REFERENCES:
        found = fks.get((ref.table, ref.column))
        state = "missing" if not found or found[0] != ref.target else ("valid" if found[1] else "not valid")
        out.append(
            Check(
                "constraint",
                ref.name,
                0 if state == "valid" else 1,
                "present and valid",
                "ok" if state == "valid" else "error",
                "" if state == "valid" else state,
            )
        )
    return out


def _rows(cur: Cursor, run_id: str | None, limits: dict, counts: dict[str, int]) -> list[Check]:
    """Row counts against the last successful run: growth and drop, with a minimum baseline."""
    previous = {subject: float(n) for subject, n in _run(cur, "previous_counts", {"run_id": run_id}).fetchall()}
    out = []
    for table in (*ETL_TABLES, *USER_TABLES):
        now = counts[table]
        check = Check(
            "rows",
            table,
            now,
            f"growth < {limits['growth_warn']}x/{limits['growth_error']}x"
            + (f", drop < {limits['drop_warn']:.0%}/{limits['drop_error']:.0%}" if table in ETL_TABLES else ""),
        )
        before = previous.get(table)
        if before is not None and before >= limits["min_baseline"]:
            ratio = now / before
            lost = 1 - ratio
            check.detail = f"{int(before)} rows after the last successful run ({ratio:.2f}x)"
            if ratio >= limits["growth_error"]:
                check.status = "error"
            elif ratio >= limits["growth_warn"]:
                check.status = "warn"
            elif table in ETL_TABLES and lost > limits["drop_error"]:
                check.status = "error"
            elif table in ETL_TABLES and lost > limits["drop_warn"]:
                check.status = "warn"
        out.append(check)
    return out


def _row_balance(cur: Cursor, run_id: str | None, counts: dict[str, int]) -> list[Check]:
    """User-owned rows: live + archived since the backup = count at the backup. Fewer means a row
    was removed without its archived copy; more is the app writing during the run."""
    out = []
    for table, count, taken_at, backup_run in _run(cur, "backup_counts", {"run_id": run_id}).fetchall():
        if table not in USER_TABLES:
            continue
        live = counts[table]
        archived = 0
        if _run(cur, "table_exists", {"table": f"etl_archive.{table}"}).fetchone()[0]:
            archived = _run(
                cur,
                "archived_since",
                {"run_id": backup_run, "since": taken_at},
                archive=sql.Identifier("etl_archive", table),
            ).fetchone()[0]
        missing = count - live - archived
        out.append(
            Check(
                "row_balance",
                table,
                missing,
                "0 rows lost",
                "error" if missing > 0 else "ok",
                f"backup {count}, live {live}, archived {archived}"
                + (f": {missing} rows removed without an archived copy" if missing > 0 else ""),
            )
        )
    return out


def _quarantine(cur: Cursor, limits: dict) -> Check:
    waiting, sample = _run(cur, "quarantine_waiting").fetchone()
    status = "warn" if waiting >= limits["quarantine_warn"] else "ok"
    detail = f"{waiting} rows wait for a person (python -m league_import.cli release)" if waiting else ""
    return Check("quarantine", "etl.quarantine", waiting, f"< {limits['quarantine_warn']}", status, detail, sample)


def record(conn: Connection, run_id: str, checks: list[Check]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            statements("health")["record_checks"],
            [
                {
                    "run_id": run_id,
                    "check_name": c.check,
                    "subject": c.subject,
                    "figure": c.figure,
                    "threshold": c.threshold,
                    "status": c.status,
                    "detail": c.detail,
                }
                for c in checks
            ],
        )


def report(checks: list[Check]) -> dict:
    """The health part of etl.runs.report: status counts, the checks not ok, every figure."""
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "error")}
    return {
        "status": "error" if counts["error"] else "warn" if counts["warn"] else "ok",
        "counts": counts,
        "problems": [asdict(c) for c in checks if c.status != "ok"],
        "figures": {f"{c.check}:{c.subject}": c.figure for c in checks},
    }


def failure_message(checks: list[Check]) -> str:
    errors = [c for c in checks if c.status == "error"]
    return f"{len(errors)} health checks failed:\n" + "\n".join(
        f"- {c.check} {c.subject}: {c.figure:g} (threshold {c.threshold}) {c.detail}".rstrip() for c in errors
    )


def format_table(checks: list[Check]) -> str:
    """Every check on one line each, for `make health` and the task log."""
    width = max(len(f"{c.check} {c.subject}") for c in checks)
    lines = [f"{'check':<{width}}  {'figure':>10}  status  detail"]
    for c in checks:
        lines.append(f"{c.check + ' ' + c.subject:<{width}}  {c.figure:>10g}  {c.status:<6}  {c.detail}")
    return "\n".join(lines)
