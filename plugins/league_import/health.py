"""Health checks: is last night's data sound? Each check has a figure, a threshold and a status.

Read-only: the same checks run as the DAG's last task and as `make health` against any database;
only `record` writes (etl.health_checks, for trends). The checks:

- orphans: every team reference (ETL- and user-owned) points at a team;
- duplicates and constraints: every natural key enforced, every foreign key present and valid;
- reconcile: each ETL-owned table holds, per league, exactly the rows the files imply (after
  BYE rows and identity); a league added tonight is no alarm, a row deleted by hand is;
- rows: the tables the sources do not determine (user-owned, etl_archive, backups, the pipeline's
  history) grow against a floor, now / max(before, min_baseline): 41 -> 3,470,114 and 0 -> 2,000
  are errors, +3 on a 2-row table is not; the history tables may not shrink; each growth warning
  or error is asked of a person, and a count answered "expected" is the table's baseline after;
- row_balance: user-owned rows, live + archived since the backup = the count at the backup;
- leagues: a user row with a league column of its own sits on a team of that league (warnings);
- quarantine and renames: decisions waiting for a person (warnings);
- freshness: per league, files older than stale_hours, or identical for more than
  unchanged_nights nights while the schedule still has future dates, or a file absent tonight
  whose table holds the league's rows (kept, not reconciled) (warnings).

The roll-up of statuses (error over warn over ok) lives here only: rollup().
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from functools import partial

from psycopg import Connection, Cursor, sql

from league_import.catalog import ETL_TABLES, Reference, natural_keys, references
from league_import.config import Thresholds
from league_import.constraints import duplicates, orphans
from league_import.pgcatalog import foreign_keys, has_unique, table_exists, unique_keys
from league_import.references import row_id, team_references, user_tables
from league_import.sources import SCHEDULE_FILE, STATS_FILE
from league_import.sql import run, statements
from league_import.target import current
from league_import.words import plural, verb

STATUSES = ("ok", "warn", "error")
# The pipeline's own tables that only ever grow: losing rows means someone deleted history.
HISTORY_TABLES = ("team_key_map", "team_aliases", "repairs", "quarantine", "rename_suspects", "decisions")
# Backups of user rows (backup_teams copies teams, which the sources determine).
BACKUP_TABLES = ("backup_refs",)
# The column naming the run that wrote a row: what a run writes itself is in its own report, so
# a table's growth leaves it out (a first repair of 100,000 rows is no alarm; a pile-up is).
WRITTEN_BY = {
    "etl.repairs": "run_id",
    "etl.quarantine": "run_id",
    "etl.rename_suspects": "run_id",
    "etl.team_aliases": "run_id",
    "etl.team_key_map": "first_seen_run",
    "etl.backup_refs": "run_id",
}
# Warnings that need a person's decision, and where to make it.
DECISIONS = {
    "quarantine": "league-import quarantine list, then league-import review decide (or the league_review DAG)",
    "renames": "league-import review list, then league-import review decide (or the league_review DAG)",
    "freshness": "check the scraper that writes the league files",
    "rows": "league-import review list, then league-import review decide growth:<id> (or the league_review DAG)",
}


@dataclass
class Check:
    # orphans | duplicates | constraint | reconcile | rows | row_balance | leagues | quarantine | renames | freshness
    check: str
    subject: str  # table.column, table, constraint name, "table league"
    figure: float
    threshold: str
    status: str = "ok"  # ok | warn | error
    detail: str = ""
    sample: list = field(default_factory=list)
    basis: dict = field(default_factory=dict)  # rows: the baseline, what this run wrote, the ratio


_run = partial(run, "health")


def rollup(checks: list[Check]) -> tuple[str, dict[str, int]]:
    """The overall status (error over warn over ok) and the count of each."""
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    return ("error" if counts["error"] else "warn" if counts["warn"] else "ok"), counts


def run_checks(
    conn: Connection, run_id: str | None = None, limits: Thresholds | None = None, implied: dict | None = None
) -> list[Check]:
    """Every check, against the database as it is. `run_id` names the run whose backup and files to
    compare with (else the latest); `implied` the rows the files imply per league (else the last
    successful run's)."""
    limits = limits or Thresholds()
    with conn.transaction(), conn.cursor() as cur:
        if implied is None:
            implied = _last_implied(cur)
        users = user_tables(cur)
        counts = _counts(cur, users)
        checks = [
            *_orphans(cur),
            *_duplicates(cur),
            *_constraints(cur),
            *_reconcile(cur, implied),
            *_rows(cur, run_id, limits, counts),
            *_row_balance(cur, run_id, counts, users),
            *_leagues_agree(cur),
            _quarantine(cur, limits),
            _renames(cur, limits),
            *_freshness(cur, run_id, limits),
        ]
    return checks


def _counts(cur: Cursor, users: list[str]) -> dict[str, int]:
    """Rows of every table the growth and balance checks look at, each counted once."""
    tables = [("public", t) for t in users]
    tables += [("etl", t) for t in (*HISTORY_TABLES, *BACKUP_TABLES)]
    tables += [("etl_archive", t) for t in dict.fromkeys((*current().etl_tables, *users))]
    out = {}
    for schema, table in tables:
        if table_exists(cur, table, schema):
            name = table if schema == "public" else f"{schema}.{table}"
            out[name] = _run(cur, "count_rows", table=sql.Identifier(schema, table)).fetchone()[0]
    return out


def _orphans(cur: Cursor) -> list[Check]:
    """Every team reference, ETL-owned and user-owned (declared or found by foreign key), in
    every row whoever wrote it. A valid foreign key is not trusted blindly: the old ETL switched
    the triggers off."""
    teams = current().table_name("teams")
    refs = [Reference(table, column, teams) for table, column in team_references(cur)]
    out = []
    for ref in refs:
        count, sample = orphans(cur, ref)
        detail = f"{plural(count, 'row')} {verb(count, 'points', 'point')} at no team" if count else ""
        out.append(
            Check("orphans", f"{ref.table}.{ref.column}", count, "0", "error" if count else "ok", detail, list(sample))
        )
    return out


def _duplicates(cur: Cursor) -> list[Check]:
    """A valid unique index makes duplicates impossible; only unenforced keys are scanned."""
    out = []
    enforced = unique_keys(cur)
    for key in natural_keys():
        if (key.table, frozenset(key.columns)) in enforced:
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
    if not current().owns_tables:  # the pipeline's own rows of an app's tables: their keys are its own
        for entity, extra in _run(cur, "owned_duplicates").fetchall():
            detail = f"{extra} of the pipeline's rows repeat a natural key" if extra else "the pipeline's rows"
            out.append(Check("duplicates", entity, extra, "0", "error" if extra else "ok", detail))
    return out


def _constraints(cur: Cursor) -> list[Check]:
    out = []
    for key in natural_keys():
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
    fks = foreign_keys(cur)
    for ref in references():
        found = fks.get((ref.table, ref.column))
        state = "missing" if not found or found.target != ref.target else ("valid" if found.validated else "not valid")
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


def _last_implied(cur: Cursor) -> dict:
    found = _run(cur, "last_implied").fetchone()
    return found[0] if found and found[0] else {}


def _reconcile(cur: Cursor, implied: dict) -> list[Check]:
    """Each ETL-owned table against what the files imply, per league: equal, or an error naming both."""
    if not implied:
        return []
    live = {}
    for code, *figures in _run(cur, "league_counts", {"codes": list(implied)}).fetchall():
        live[code] = dict(zip(("leagues", "teams", "series", "clubs", "schedule", "series_stats"), figures))
    out = []
    for code, expected in sorted(implied.items()):
        have = live.get(code, {})
        for table in ETL_TABLES:
            want = 1 if table == "leagues" else expected.get(table, 0)
            got = have.get(table, 0)
            if want is None:  # its file was absent tonight: the stored rows were kept
                out.append(_absent_file(code, table, got))
                continue
            what = "active teams" if table == "teams" else f"{table} rows"
            if table in ("series", "clubs"):
                what = f"{table} with active teams"
            out.append(
                Check(
                    "reconcile",
                    f"{table} {code}",
                    got,
                    f"= {want} (the files)",
                    "ok" if got == want else "error",
                    "" if got == want else f"league {code}: table {table} has {got} {what}, the files imply {want}",
                )
            )
    return out


def _absent_file(code: str, table: str, kept: int) -> Check:
    """A league's file absent tonight: nothing to reconcile; a warning when it had rows before."""
    file = SCHEDULE_FILE if table == "schedule" else STATS_FILE
    detail = (
        f"league {code}: {file} was absent tonight; the {plural(kept, f'stored {table} row')} "
        f"{verb(kept, 'was', 'were')} kept ({DECISIONS['freshness']})"
        if kept
        else ""
    )
    return Check("freshness", f"{table} {code}", kept, f"{file} present", "warn" if kept else "ok", detail)


def _baselines(cur: Cursor, run_id: str | None) -> dict[str, tuple[float, str | None, datetime | None]]:
    """Per table: (baseline rows, who accepted it as expected, when), None twice for a count
    after the last successful run."""
    return {s: (float(n), by, at) for s, n, by, at in _run(cur, "baselines", {"run_id": run_id}).fetchall()}


def _rows(cur: Cursor, run_id: str | None, limits: Thresholds, counts: dict[str, int]) -> list[Check]:
    """Growth against a floor for the tables the sources do not determine; history never shrinks.

    A table may grow by what this run wrote itself (its archive copies, repairs, backup, key map
    entries: its steps report them): growth is (rows now - written by this run) / max(baseline,
    min_baseline), so a clean-up is no alarm and rows piling up from elsewhere are. The baseline
    is the count after the last successful run, or a count a person answered "expected" since
    (etl.growth_alarms): an app that grew once fails one night, not every night after. An archive
    table the last successful run did not count had no rows then; any other table it did not
    count (a database upgraded since) has no baseline yet.
    """
    baselines = _baselines(cur, run_id)
    out = []
    for name, now in counts.items():
        own = 0
        column = "run_id" if name.startswith("etl_archive.") else WRITTEN_BY.get(name)
        if run_id and column:
            own = _run(
                cur,
                "written_by",
                {"run_id": run_id},
                table=sql.Identifier(*name.split(".")),
                column=sql.Identifier(column),
            ).fetchone()[0]
        # An archive table appears with its first archived row: absent at the last run means empty.
        lazy = name.startswith("etl_archive.") and bool(baselines)
        before, accepted_by, accepted_at = baselines.get(name, (0.0 if lazy else None, None, None))
        check = Check(
            "rows",
            name,
            now,
            f"growth < {limits.growth_warn:g}x/{limits.growth_error:g}x of max(baseline, {limits.min_baseline})",
        )
        if before is not None:
            ratio = (now - own) / max(before, limits.min_baseline)
            check.basis = {"baseline": before, "written": own, "ratio": round(ratio, 4)}
            when = (
                f"when {accepted_by} accepted them as expected on {accepted_at:%Y-%m-%d %H:%M}"
                if accepted_by
                else "at the last successful run"
            )
            check.detail = f"{plural(int(before), 'row')} {when}, {int(now):,} now"
            if own:
                check.detail += f", {own:,} of them written by this run (not counted)"
            check.detail += f"; growth {ratio:,.2f}x of max(baseline, {limits.min_baseline})"
            check.basis["grew"] = ratio >= limits.growth_warn
            if ratio >= limits.growth_error:
                check.status = "error"
            elif ratio >= limits.growth_warn:
                check.status = "warn"
            elif name.split(".")[-1] in HISTORY_TABLES and before and now < before:
                lost = 1 - now / before
                check.threshold += f", history drop < {limits.drop_warn:.0%}/{limits.drop_error:.0%}"
                check.detail += f"; {lost:.0%} of its rows are gone"
                check.status = "error" if lost > limits.drop_error else "warn" if lost > limits.drop_warn else "ok"
        out.append(check)
    return out


def ask_growth(conn: Connection, run_id: str, checks: list[Check]) -> list[int]:
    """Each growth warning or error becomes a question for a person (league_review, `league-import
    review`): "expected" makes tonight's count the baseline. Returns the alarms' ids; each check's
    detail says how to answer it."""
    ids = []
    with conn.transaction(), conn.cursor() as cur:
        for c in checks:
            if c.check != "rows" or not c.basis.get("grew"):
                continue
            params = {
                "run_id": run_id,
                "subject": c.subject,
                "status": c.status,
                "row_count": int(c.figure),
                "baseline": c.basis["baseline"],
                "written": c.basis["written"],
                "ratio": c.basis["ratio"],
            }
            (alarm,) = _run(cur, "raise_growth_alarm", params).fetchone()
            ids.append(alarm)
            c.detail += f"; if the app grew so on purpose: league-import review decide growth:{alarm} expected"
    return ids


def _row_balance(cur: Cursor, run_id: str | None, counts: dict[str, int], users: list[str]) -> list[Check]:
    """User-owned rows: live + archived since the backup = count at the backup. Fewer means a row
    was removed without its archived copy; more is the app writing during the run."""
    out = []
    for table, count, taken_at, backup_run in _run(cur, "backup_counts", {"run_id": run_id}).fetchall():
        if table not in users:
            continue
        live = counts[table]
        archived = 0
        if f"etl_archive.{table}" in counts:
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
                + (f": {plural(missing, 'row')} removed without an archived copy" if missing > 0 else ""),
            )
        )
    return out


def _leagues_agree(cur: Cursor) -> list[Check]:
    """A user row with a league column of its own (a practice time) sits on a team of that
    league: a decision or a repair that crossed leagues shows here (warnings: the row is the app's)."""
    out = []
    for col in current().declared_team_columns():
        if col.league is None or not table_exists(cur, col.table):
            continue
        parts = {
            "table": sql.Identifier("public", col.table),
            "column": sql.Identifier(col.column),
            "league": sql.Identifier(col.league),
            "row_id": row_id(cur, col.table, col.column),
        }
        count, sample = _run(cur, "league_mismatch", **parts).fetchone()
        detail = f"rows on a team of another league than their own {col.league}: {count}" if count else ""
        out.append(
            Check("leagues", f"{col.table}.{col.column}", count, "0", "warn" if count else "ok", detail, list(sample))
        )
    return out


def _quarantine(cur: Cursor, limits: Thresholds) -> Check:
    waiting, sample = _run(cur, "quarantine_waiting").fetchone()
    status = "warn" if waiting >= limits.quarantine_warn else "ok"
    detail = f"{plural(waiting, 'row')} {verb(waiting, 'waits', 'wait')} for a person: {DECISIONS['quarantine']}"
    detail = detail if waiting else ""
    return Check("quarantine", "etl.quarantine", waiting, f"< {limits.quarantine_warn}", status, detail, sample)


def _renames(cur: Cursor, limits: Thresholds) -> Check:
    waiting, sample = _run(cur, "renames_waiting").fetchone()
    status = "warn" if waiting >= limits.renames_warn else "ok"
    detail = f"{plural(waiting, 'suspected rename')} {verb(waiting, 'awaits', 'await')} review: {DECISIONS['renames']}"
    detail = detail if waiting else ""
    return Check("renames", "etl.rename_suspects", waiting, f"< {limits.renames_warn}", status, detail, sample)


def _freshness(cur: Cursor, run_id: str | None, limits: Thresholds) -> list[Check]:
    """Per league: how old its files are, and for how many runs in a row they were identical."""
    out = []
    today = datetime.now(UTC).date()
    for code, modified, last_date, same_runs in _run(cur, "freshness", {"run_id": run_id}).fetchall():
        age_hours = (datetime.now(UTC) - modified).total_seconds() / 3600
        season_running = isinstance(last_date, date) and last_date >= today
        problems = []
        if age_hours > limits.stale_hours:
            problems.append(f"its newest file is {age_hours:.0f} h old (more than {limits.stale_hours:g} h)")
        if same_runs > limits.unchanged_nights and season_running:
            problems.append(
                f"its files were identical for {same_runs} runs in a row while the schedule runs to {last_date}"
            )
        detail = "; ".join(problems) or f"files {age_hours:.0f} h old, schedule to {last_date}"
        out.append(
            Check(
                "freshness",
                code,
                round(age_hours, 1),
                f"< {limits.stale_hours:g} h, identical for <= {limits.unchanged_nights} runs",
                "warn" if problems else "ok",
                f"league {code}: {detail}" + (f" ({DECISIONS['freshness']})" if problems else ""),
            )
        )
    return out


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
    status, counts = rollup(checks)
    return {
        "status": status,
        "counts": counts,
        "problems": [asdict(c) for c in checks if c.status != "ok"],
        "figures": {f"{c.check}:{c.subject}": c.figure for c in checks},
    }


def decisions_needed(checks: list[Check]) -> list[Check]:
    """The warnings a person has to act on: quarantined rows, suspected renames, stale sources."""
    return [c for c in checks if c.status == "warn" and c.check in DECISIONS]


def _figure(x: float) -> str:
    """3470114 as "3,470,114" (not "3.47011e+06"), 0.2780 as "0.278"."""
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.3f}".rstrip("0").rstrip(".") if abs(x) >= 1 else f"{x:.3g}"


def failure_message(checks: list[Check]) -> str:
    errors = [c for c in checks if c.status == "error"]
    return f"{len(errors)} health checks failed:\n" + "\n".join(
        f"- {c.check} {c.subject}: {_figure(c.figure)} (threshold {c.threshold}) {c.detail}".rstrip() for c in errors
    )


def format_table(checks: list[Check]) -> str:
    """Every check on one line each, for `make health` and the task log."""
    width = max(len(f"{c.check} {c.subject}") for c in checks)
    lines = [f"{'check':<{width}}  {'figure':>10}  status  detail"]
    for c in checks:
        lines.append(f"{c.check + ' ' + c.subject:<{width}}  {_figure(c.figure):>10}  {c.status:<6}  {c.detail}")
    return "\n".join(lines)
