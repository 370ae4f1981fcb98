"""Decisions a person makes: a quarantined row's team, whether a suspected rename is one team, and
whether a table's growth was expected.

The pipeline never guesses; this module puts each open question with its evidence (pending) and
applies an answer safely (decide), in one transaction, recorded with who decided and when in
etl.decisions. The same functions serve the CLI (`league-import review ...`) and the
league_review DAG's human-in-the-loop tasks. Evidence names users by id only: no personal data.

A quarantined row is the app's, and the app goes on living while the question waits. A decision
reads the row again under a row lock and acts only on what it finds: a row the app deleted is
never brought back (its archived copy stays), a row the app re-attached is recorded as resolved
by the app on the team it chose, a row the app changed otherwise is refused (asked again with
the row as it is now). A row goes only to a team of its own league, and to an inactive team only
when the person says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial

from psycopg import Connection, Cursor, sql
from psycopg.types.json import Jsonb

from league_import import pgcatalog
from league_import.archive import ARCHIVE_SCHEMA, archive_rows, live_columns
from league_import.catalog import TeamColumn
from league_import.display import markdown_literal, printable
from league_import.errors import DecisionError
from league_import.history import add_alias, merge
from league_import.references import row_id
from league_import.renames import pending as pending_renames
from league_import.sql import run
from league_import.target import current

LEAVE = "leave in quarantine"
TYPED = "the team id typed below"
INACTIVE = " (inactive)"  # an inactive team's option: choosing it is the confirmation
SAME, DIFFERENT = "same team", "different teams"
EXPECTED, NOT_EXPECTED = "expected", "not expected"
BY_APP = "the app"
MAX_TEAM_OPTIONS = 12

_run = partial(run, "review")


@dataclass
class Item:
    """One open question: its id ("quarantine:12", "rename:5", "growth:3"), the question, the
    evidence, the options (and the team each team option names)."""

    id: str
    kind: str
    subject: str
    evidence: dict
    options: list[str]
    option_teams: dict[str, int] = field(default_factory=dict)
    option_evidence: dict[str, str] = field(default_factory=dict)

    @property
    def takes_team_id(self) -> bool:
        """A quarantined row may go on any team of its league: the form has a field for its id."""
        return self.kind == "quarantine"

    def body(self) -> str:
        """The evidence as Markdown for the Airflow UI, each value shown as written (no markup
        of a user's or a file's own is rendered)."""
        lines = [f"- **{k.replace('_', ' ')}**: {markdown_literal(str(v))}" for k, v in self.evidence.items()]
        if self.option_evidence:
            lines += ["", "**The teams offered, and why:**", ""]
            lines += [f"- {markdown_literal(o)}: {markdown_literal(why)}" for o, why in self.option_evidence.items()]
        if self.takes_team_id:
            lines += ["", f"Another team of the row's league: choose *{TYPED}* and type its id."]
        return "\n".join(lines)

    def lines(self) -> list[str]:
        """The question for a terminal: control characters escaped."""
        out = [f"{self.id}  {printable(self.subject)}"]
        out += [f"    {k}: {printable(str(v))}" for k, v in self.evidence.items()]
        out += [f"    offered: {printable(o)}: {printable(why)}" for o, why in self.option_evidence.items()]
        options = [o for o in self.options if o != TYPED] + (["<a team id>"] if self.takes_team_id else [])
        out.append("    options: " + " | ".join(printable(o) for o in options))
        return out


@dataclass
class _Team:
    id: int
    label: str
    active: bool
    league_id: int
    league: str


def _teams(cur: Cursor, ids) -> dict[int, _Team]:
    return {r[0]: _Team(*r) for r in _run(cur, "teams_named", {"ids": sorted(set(ids))}).fetchall()}


def _declared(table: str, column: str) -> TeamColumn:
    found = next((c for c in current().declared_team_columns() if (c.table, c.column) == (table, column)), None)
    return found or TeamColumn(table, column)


@dataclass
class _Row:
    """A quarantined row: its archived copy (as quarantined) and the live rows that are it now."""

    table: str
    column: str
    col: TeamColumn
    archived: dict | None
    live: list[tuple[int | None, dict, str, str]]  # (team id, values, ctid, xmin), locked
    nullable: bool

    def value(self, name: str | None):
        if name is None:
            return None
        if self.live and name in self.live[0][1]:
            return self.live[0][1][name]
        return (self.archived or {}).get(name)


def _doc(cur: Cursor, table: str, alias: str) -> sql.Composable:
    names = [name for name, _ in live_columns(cur, table)]
    pairs = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(n), sql.Identifier(alias, n)) for n in names)
    return sql.SQL("jsonb_build_object({})").format(pairs)


def _read_row(cur: Cursor, table: str, column: str, rid: str, *, lock: bool) -> _Row:
    """The row as quarantined (its newest archived copy) and as it is now: the live row with its
    id, or for a table without one the rows equal to it in every column but the team's."""
    col = _declared(table, column)
    columns = dict(live_columns(cur, table))
    if column not in columns:
        raise DecisionError(f"{table} has no column {column} any more: nothing to decide on")
    archived = None
    if pgcatalog.table_exists(cur, table, ARCHIVE_SCHEMA):
        found = _run(
            cur,
            "archived_row",
            {"row_id": rid},
            doc=_doc(cur, table, "t"),
            archive=sql.Identifier(ARCHIVE_SCHEMA, table),
            row_id=row_id(cur, table, column, with_team=True),
        ).fetchone()
        archived = found[0] if found else None
    live = []
    if archived is not None:
        if "id" in columns:
            same = sql.SQL("t.id = r.id")
        else:
            same = sql.SQL(" AND ").join(
                sql.SQL("t.{c} IS NOT DISTINCT FROM r.{c}").format(c=sql.Identifier(n)) for n in columns if n != column
            )
        live = _run(
            cur,
            "live_rows_locked" if lock else "live_rows",
            {"doc": Jsonb(archived)},
            table=sql.Identifier("public", table),
            column=sql.Identifier(column),
            doc=_doc(cur, table, "t"),
            same=same,
        ).fetchall()
    nullable = not next(c.not_null for c in pgcatalog.columns(cur, table) if c.name == column)
    return _Row(table, column, col, archived, [tuple(r) for r in live], nullable)


def _row_league(cur: Cursor, row: _Row, old_team: int) -> tuple[int | None, str | None]:
    """The row's league: its own league column, else its old team's league in the key map."""
    own = row.value(row.col.league)
    found = _run(cur, "league_of", {"league_id": own, "team_id": old_team}).fetchone()
    return (found[0], found[1]) if found else (None, None)


def _quarantine_item(cur: Cursor, entry) -> Item:
    qid, table, column, rid, old_team, reason, candidates, run_id, created = entry
    row = _read_row(cur, table, column, rid, lock=False)
    col = row.col
    text = row.value(col.text)
    author = row.value(col.author)
    if author is None and rid.startswith("{"):  # a row named by its key: its user is its subject
        author = json.loads(rid).get("user_id")
    league_id, league = _row_league(cur, row, old_team)
    named = [int(t) for t in (candidates or {}).get("teams", [])]
    series = (candidates or {}).get("series") or []
    author_teams = [r[0] for r in _run(cur, "member_teams", {"user_id": author}).fetchall()] if author else []
    old = _run(cur, "old_team", {"team_id": old_team}).fetchone()
    same_series = []
    if not named and not author_teams and old:
        same_series = [r[0] for r in _run(cur, "series_teams", {"league": old[0], "series_key": old[1]}).fetchall()]
    teams = _teams(cur, [*named, *author_teams, *same_series])
    why: dict[int, list[str]] = {}
    for t in named:
        why.setdefault(t, []).append(f"in the series the text names ({', '.join(series)})" if series else "a candidate")
    for t in author_teams:
        why.setdefault(t, []).append("the author is a member")
    for t in same_series:
        why.setdefault(t, []).append(f"in the old team's series ({old[1]})")
    offered = [t for t in why if t in teams and (league_id is None or teams[t].league_id == league_id)]
    offered.sort(key=lambda t: (not teams[t].active, t))
    option_teams, option_evidence = {}, {}
    for t in offered[:MAX_TEAM_OPTIONS]:
        label = teams[t].label + ("" if teams[t].active else INACTIVE)
        option_teams[label] = t
        option_evidence[label] = "; ".join(why[t])
    evidence = {
        "table": f"{table}.{column}",
        "row": rid,
        "league": league or "(unknown)",
        "text": text if text is not None else "(no text)",
        "author": f"user {author}" if author else "(no author)",
        "old team": f"{old[2]} ({old[0]}, series {old[1]}, id {old_team})" if old else f"id {old_team}, unknown",
        "reason": reason,
        "now": _now(row),
        "quarantined by run": f"{run_id} at {created:%Y-%m-%d %H:%M}",
    }
    return Item(
        f"quarantine:{qid}",
        "quarantine",
        f"Which team is {table} row {rid} on?",
        evidence,
        [*option_teams, TYPED, LEAVE],
        option_teams,
        option_evidence,
    )


def _now(row: _Row) -> str:
    """What became of the row since the quarantine, as a person should know before answering."""
    if row.archived is None:
        return "no archived copy"
    if not row.live:
        return "deleted by the app since the quarantine" if row.nullable else "removed; its copy waits in the archive"
    team = row.live[0][0]
    if team is not None:
        return f"put on team {team} by the app since the quarantine"
    return "detached (no team), waiting"


def _rename_item(s: dict) -> Item:
    rows = ", ".join(f"{n} {t}" for t, n in sorted(s["user_rows"].items())) or "none"
    what = "created tonight, and one that left" if s["kind"] == "rename" else "each named in only one file"
    evidence = {
        "league": s["league_code"],
        "series": s["series_key"],
        "old spelling": f"{s['old_name']} (id {s['old_team_id']})",
        "new spelling": f"{s['new_name']} (id {s['new_team_id']})",
        "similarity": f"{float(s['score']):g} / 100",
        "user rows on the old id": rows,
        "why asked": f"two teams of one series that look alike: {what}",
    }
    subject = f"Are '{s['old_name']}' and '{s['new_name']}' one team?"
    return Item(f"rename:{s['id']}", "rename", subject, evidence, [SAME, DIFFERENT])


def _growth_item(alarm) -> Item:
    aid, run_id, subject, status, rows, baseline, written, ratio, created = alarm
    evidence = {
        "table": subject,
        "rows that night": f"{rows:,}",
        "baseline": f"{int(baseline):,} rows",
        "written by the run itself": f"{written:,}",
        "growth": f"{ratio:,.2f}x of the floor ({status})",
        "night": f"{run_id} at {created:%Y-%m-%d %H:%M}",
        "why asked": "the table grew past the health check's threshold; 'expected' makes this count "
        "its baseline, 'not expected' keeps the alarm",
    }
    return Item(f"growth:{aid}", "growth", f"Did {subject} grow as expected?", evidence, [EXPECTED, NOT_EXPECTED])


def pending(conn: Connection) -> list[Item]:
    """Every open question, oldest first: quarantined rows, suspected renames, growth alarms."""
    with conn.transaction(), conn.cursor() as cur:
        items = [_quarantine_item(cur, e) for e in _run(cur, "waiting_quarantine").fetchall()]
        items += [_rename_item(s) for s in pending_renames(cur)]
        items += [_growth_item(a) for a in _run(cur, "open_growth_alarms").fetchall()]
    return items


KINDS = ("quarantine", "rename", "growth")


def open_questions(conn: Connection) -> dict[str, int]:
    """How many questions wait, by kind; nothing on a database the pipeline never set up."""
    from league_import.schema import current as revision

    if revision(conn) is None:
        return {}
    with conn.transaction(), conn.cursor() as cur:
        counts = _run(cur, "open_questions").fetchone()
    return {kind: n for kind, n in zip(KINDS, counts) if n}


def _parse(item: str) -> tuple[str, int]:
    kind, _, number = item.partition(":")
    if kind not in KINDS or not number.isdigit():
        raise DecisionError(
            f"item {item!r}: expected quarantine:<id>, rename:<id> or growth:<id> (league-import review list)"
        )
    return kind, int(number)


def decide(
    conn: Connection,
    item: str,
    option: str,
    *,
    by: str,
    via: str,
    dag_run_id: str | None = None,
    team_id: int | None = None,
    inactive_ok: bool = False,
) -> str:
    """Apply a person's answer in one transaction; returns what was done (or why nothing was).

    A quarantined row's team is an option's team, or `team_id` with the option TYPED (the CLI
    passes the id as the option). Given the review run's id, an item that run already decided
    returns the recorded outcome and writes nothing: a retried apply task leaves the decisions
    as one clean try would.
    """
    kind, number = _parse(item)
    try:
        with conn.transaction(), conn.cursor() as cur:
            if dag_run_id is not None:
                done = _run(cur, "recorded_outcome", {"item": item, "dag_run_id": dag_run_id}).fetchone()
                if done is not None:
                    return done[0]
            if kind == "quarantine":
                outcome = _decide_quarantine(cur, number, option, by, team_id, inactive_ok)
            elif kind == "rename":
                outcome = _decide_rename(cur, number, option, by, f"decision:{item}")
            else:
                outcome = _decide_growth(cur, number, option, by)
            choice = f"{option}: {team_id}" if option == TYPED else option
            params = {"item": item, "choice": choice, "outcome": outcome, "by": by, "via": via}
            _run(cur, "record_decision", {**params, "dag_run_id": dag_run_id})
    except RowChangedError as changed:
        _ask_again(conn, changed)
        raise
    return outcome


def _chosen_team(item: Item, option: str, team_id: int | None) -> tuple[int, bool]:
    """The team an answer names, and whether the person confirmed it inactive (its option says so)."""
    if option in item.option_teams:
        return item.option_teams[option], option.endswith(INACTIVE)
    if option == TYPED:
        if team_id is None:
            raise DecisionError(f"option {TYPED!r} needs a team id")
        return int(team_id), False
    if option.isdigit():
        return int(option), False
    offered = ", ".join(o for o in item.options if o != TYPED)
    raise DecisionError(f"option {option!r} is not one of: {offered} (or a team id)")


def _decide_quarantine(
    cur: Cursor, qid: int, option: str, by: str, team_id: int | None = None, inactive_ok: bool = False
) -> str:
    entry = _run(cur, "quarantine_entry", {"id": qid}).fetchone()
    if entry is None:
        raise DecisionError(f"no quarantine entry {qid}")
    _, table, column, rid, *_, resolved_at, resolved_by, resolution, _ = entry
    if resolved_at is not None:
        when = f"{resolved_at:%Y-%m-%d %H:%M}"
        return f"already resolved by {resolved_by or 'another path'} at {when} ({resolution}): nothing done"
    if option == LEAVE:
        return f"{table} row {rid} stays in quarantine"
    item = _quarantine_item(cur, entry[:9])
    chosen, confirmed = _chosen_team(item, option, team_id)
    return _release(cur, entry, chosen, by, inactive_ok=inactive_ok or confirmed)


def _check_team(cur: Cursor, team_id: int, league_id: int | None, league: str | None, inactive_ok: bool) -> _Team:
    team = _teams(cur, [team_id]).get(team_id)
    if team is None:
        raise DecisionError(f"team {team_id} does not exist")
    if league_id is not None and team.league_id != league_id:
        raise DecisionError(
            f"team {team_id} is in league {team.league}, the row in league {league}: a row stays in its own league"
        )
    if not team.active and not inactive_ok:
        raise DecisionError(
            f"team {team_id} is inactive (its league's files no longer name it): confirm it to put the row there "
            f"(CLI --inactive; in the UI its option marked{INACTIVE}, or the box 'inactive team')"
        )
    return team


class RowChangedError(DecisionError):
    """The app changed a quarantined row since: the answer is not applied, and the row as it is
    now becomes the evidence of the next question."""

    def __init__(self, message: str, entry) -> None:
        super().__init__(message)
        self.entry = entry


def _release(cur: Cursor, entry, team_id: int, by: str, *, inactive_ok: bool = False) -> str:
    """Put a quarantined row on team_id, after reading it again under a row lock: re-attach a
    detached row, or insert a removed one again from its archived copy, unless the app has
    deleted, re-attached or changed it since."""
    qid, table, column, rid, old_team = entry[:5]
    quarantined_in = entry[12]  # the transaction that detached the row and wrote the entry
    row = _read_row(cur, table, column, rid, lock=True)
    if row.archived is None:
        raise DecisionError(f"{table} row {rid} has no archived copy in etl_archive.{table}: nothing to decide on")
    league_id, league = _row_league(cur, row, old_team)
    _check_team(cur, team_id, league_id, league, inactive_ok)
    detached = [r for r in row.live if r[0] is None]
    has_id = "id" in row.archived  # else the live rows equal to it may be other rows, not it
    if not has_id and not detached and row.nullable:
        done = (
            f"{table} row {rid}: no longer detached since the quarantine: the app deleted it or put it on a team "
            f"(a table without ids cannot tell which); not restored (etl_archive.{table} keeps its copy)"
        )
        _resolve(cur, qid, None, BY_APP, done)
        return done
    if has_id and row.live and not detached:  # on a team again: the app put it there
        team = row.live[0][0]
        how = "re-attached by the app" if row.nullable else "written again by the app"
        done = f"{table} row {rid}: {how} to team {team} since the quarantine; the answer (team {team_id}) not applied"
        _resolve(cur, qid, team, BY_APP, done)
        return done
    if detached:
        _, values, ctid, xmin = detached[0]
        changed = [k for k, v in values.items() if k != column and k in row.archived and row.archived[k] != v]
        if changed and xmin != quarantined_in:  # a later write, not the quarantine's own (triggers)
            raise RowChangedError(
                f"{table} row {rid} was changed by the app since the quarantine ({', '.join(sorted(changed))}): "
                "the answer is not applied; the row is asked again as it is now",
                entry,
            )
        table_id, column_id = sql.Identifier("public", table), sql.Identifier(column)
        _run(cur, "reattach", {"team_id": team_id, "ctid": ctid}, table=table_id, column=column_id)
        done = f"{table} row {rid}: {column} set to {team_id}"
    elif row.nullable:  # detached by the quarantine, gone now: the app deleted it
        done = (
            f"{table} row {rid}: deleted by the app since the quarantine; not restored "
            f"(etl_archive.{table} keeps its copy)"
        )
        _resolve(cur, qid, None, BY_APP, done)
        return done
    else:  # removed by the quarantine (its team column takes no NULL): inserted again
        done = _reinsert(cur, table, column, rid, team_id)
    _resolve(cur, qid, team_id, by, done)
    return done


def _resolve(cur: Cursor, qid: int, team_id: int | None, by: str, resolution: str) -> None:
    _run(cur, "resolve_quarantine", {"id": qid, "team_id": team_id, "by": by, "resolution": resolution})


def _ask_again(conn: Connection, changed: RowChangedError) -> None:
    """After a refused answer: the row as the app left it archived as the quarantined copy (in a
    transaction of its own, the refused one rolled back), so the next question shows it."""
    _, table, column, rid = changed.entry[:4]
    with conn.transaction(), conn.cursor() as cur:
        row = _read_row(cur, table, column, rid, lock=True)
        detached = [r for r in row.live if r[0] is None]
        if detached:
            predicate = sql.SQL("t.ctid = %(ctid)s::tid")
            by = f"review:quarantine:{changed.entry[0]}"
            archive_rows(cur, table, predicate, {"ctid": detached[0][2]}, by, "orphan")


def _reinsert(cur: Cursor, table: str, column: str, rid: str, team_id: int) -> str:
    names = [name for name, _ in live_columns(cur, table)]
    values = sql.SQL(", ").join(sql.Placeholder("team_id") if n == column else sql.Identifier("t", n) for n in names)
    inserted = _run(
        cur,
        "reinsert_from_archive",
        {"row_id": rid, "team_id": team_id},
        table=sql.Identifier("public", table),
        columns=sql.SQL(", ").join(map(sql.Identifier, names)),
        values=values,
        archive=sql.Identifier(ARCHIVE_SCHEMA, table),
        row_id=row_id(cur, table, column, with_team=True),
    ).rowcount
    if inserted:
        return f"{table} row {rid}: restored from etl_archive.{table} with {column} = {team_id}"
    return (
        f"{table} row {rid}: not inserted on team {team_id}: the table already holds a row with the same unique key "
        f"there (etl_archive.{table} keeps the copy)"
    )


def release(
    conn: Connection, table: str, row: str, team_id: int, column: str = "team_id", *, by: str, inactive_ok: bool = False
) -> str:
    """Put a quarantined row (named as in etl.quarantine.row_id) back on a team; one transaction."""
    try:
        with conn.transaction(), conn.cursor() as cur:
            done = _release_row(cur, table, row, team_id, column, by=by, inactive_ok=inactive_ok)
    except RowChangedError as changed:
        _ask_again(conn, changed)
        raise
    return done


def _release_row(cur: Cursor, table: str, row: str, team_id: int, column: str, *, by: str, inactive_ok: bool) -> str:
    found = _run(cur, "quarantine_by_row", {"table_name": table, "column_name": column, "row_id": row}).fetchone()
    if found is None:
        raise DecisionError(f"no unresolved quarantine entry for {table}.{column} row {row}")
    entry = _run(cur, "quarantine_entry", {"id": found[0]}).fetchone()
    done = _release(cur, entry, team_id, by, inactive_ok=inactive_ok)
    params = {"item": f"quarantine:{found[0]}", "choice": str(team_id), "outcome": done, "by": by}
    _run(cur, "record_decision", {**params, "via": "cli release", "dag_run_id": None})
    return done


def _decide_rename(cur: Cursor, sid: int, option: str, by: str, run_id: str) -> str:
    s = _run(cur, "suspect", {"id": sid}).fetchone()
    if s is None:
        raise DecisionError(f"no suspected rename {sid}")
    _, kind, league, series, old_id, new_id, old_name, new_name, _, _, status, decided_by, decided_at = s
    if status != "pending":
        who = f" by {decided_by} at {decided_at:%Y-%m-%d %H:%M}" if decided_at else ""
        return f"already decided ({status}){who}: nothing done"
    if option == DIFFERENT:
        _run(cur, "decide_suspect", {"id": sid, "status": "different", "by": by})
        return f"'{old_name}' and '{new_name}' recorded as different teams; not asked again"
    if option != SAME:
        raise DecisionError(f"option {option!r} is not one of: {SAME}, {DIFFERENT}")
    report = merge(cur, old_id, new_id, run_id, reason="rename", by=by)
    _run(cur, "decide_suspect", {"id": sid, "status": "same", "by": by})
    moved = sum(v for k, v in report["repointed"].items() if "." in k)
    return f"team {new_id} ('{new_name}') merged into {old_id} ('{old_name}'): {moved} references moved"


def _decide_growth(cur: Cursor, aid: int, option: str, by: str) -> str:
    alarm = _run(cur, "growth_alarm", {"id": aid}).fetchone()
    if alarm is None:
        raise DecisionError(f"no growth alarm {aid}")
    subject, rows, answer, decided_by, decided_at = alarm
    if answer is not None:
        who = f" by {decided_by}" if decided_by else ""
        return f"already answered ({answer}){who} at {decided_at:%Y-%m-%d %H:%M}: nothing done"
    if option not in (EXPECTED, NOT_EXPECTED):
        raise DecisionError(f"option {option!r} is not one of: {EXPECTED}, {NOT_EXPECTED}")
    _run(cur, "answer_growth", {"id": aid, "answer": option, "by": by})
    if option == EXPECTED:
        return f"{subject}: {rows:,} rows accepted as its baseline; the next nights measure growth from there"
    return f"{subject}: growth recorded as not expected; the alarm stands until the rows are mended"


def record_link(conn: Connection, item: str, dag_run_id: str, task_id: str, map_index: int, url_path: str) -> None:
    with conn.transaction(), conn.cursor() as cur:
        _run(
            cur,
            "record_link",
            {"item": item, "dag_run_id": dag_run_id, "task_id": task_id, "map_index": map_index, "url_path": url_path},
        )


def alias(conn: Connection, league: str, series_label: str, spelling: str, team_id: int, *, by: str) -> int:
    """An operator's alias: this spelling names this team from now on."""
    with conn.transaction(), conn.cursor() as cur:
        return add_alias(cur, league, series_label, spelling, team_id, source="operator", by=by)
