"""Decisions a person makes: a quarantined row's team, and whether a suspected rename is one team.

The pipeline never guesses; this module puts each open question with its evidence (pending) and
applies an answer safely (decide), in one transaction, recorded with who decided and when in
etl.decisions. The same functions serve the CLI (`league-import review ...`) and the
league_review DAG's human-in-the-loop tasks. An answer to an item another path already resolved
is a no-op that says so. Evidence names users by id only: no personal data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial

from psycopg import Connection, Cursor, sql

from league_import.archive import ARCHIVE_SCHEMA, live_columns
from league_import.errors import DecisionError
from league_import.history import add_alias, merge
from league_import.pgcatalog import table_exists
from league_import.references import row_id
from league_import.renames import pending as pending_renames
from league_import.sql import run
from league_import.target import current

LEAVE = "leave in quarantine"
SAME, DIFFERENT = "same team", "different teams"

_run = partial(run, "review")


@dataclass
class Item:
    """One open question: its id ("quarantine:12", "rename:5"), the question, the evidence, the options."""

    id: str
    kind: str
    subject: str
    evidence: dict
    options: list[str]
    option_teams: dict[str, int] = field(default_factory=dict)

    def body(self) -> str:
        """The evidence as Markdown, for the Airflow UI (the subject is shown as the title)."""
        return "\n".join(f"- **{k.replace('_', ' ')}**: {v}" for k, v in self.evidence.items())


def _team_names(cur: Cursor, ids) -> dict[int, str]:
    return {i: name for i, name, _ in _run(cur, "teams_named", {"ids": sorted(set(ids))}).fetchall()}


def _column(table: str):
    return next((c for c in current().declared_team_columns() if c.table == table), None)


def _quarantine_item(cur: Cursor, entry) -> Item:
    qid, table, column, rid, old_team, reason, candidates, run_id, created = entry
    declared = _column(table)
    text = author = None
    if declared and table_exists(cur, table, ARCHIVE_SCHEMA):
        parts = {
            "text": sql.Identifier("t", declared.text) if declared.text else sql.SQL("NULL::text"),
            "author": sql.Identifier("t", declared.author) if declared.author else sql.SQL("NULL::bigint"),
            "archive": sql.Identifier(ARCHIVE_SCHEMA, table),
            "row_id": row_id(cur, table, column, with_team=True),
        }
        found = _run(cur, "archived_copy", {"row_id": rid}, **parts).fetchone()
        if found:
            text, author = found
    if author is None and rid.startswith("{"):  # a row named by its key: its user is its subject
        author = json.loads(rid).get("user_id")
    teams = [int(t) for t in (candidates or {}).get("teams", [])]
    author_teams = [r[0] for r in _run(cur, "member_teams", {"user_id": author}).fetchall()] if author else []
    names = _team_names(cur, [*teams, *author_teams])
    old = _run(cur, "old_team", {"team_id": old_team}).fetchone()
    options_teams = {names[t]: t for t in dict.fromkeys([*teams, *author_teams]) if t in names}
    evidence = {
        "table": f"{table}.{column}",
        "row": rid,
        "text": text if text is not None else "(no text)",
        "author": f"user {author}" if author else "(no author)",
        "author's teams": ", ".join(names[t] for t in author_teams if t in names) or "(none active)",
        "old team": f"{old[2]} ({old[0]}, series {old[1]}, id {old_team})" if old else f"id {old_team}, unknown",
        "reason": reason,
        "quarantined by run": f"{run_id} at {created:%Y-%m-%d %H:%M}",
    }
    return Item(
        f"quarantine:{qid}",
        "quarantine",
        f"Which team is {table} row {rid} on?",
        evidence,
        [*options_teams, LEAVE],
        options_teams,
    )


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


def pending(conn: Connection) -> list[Item]:
    """Every open question, oldest first: quarantined rows, then suspected renames."""
    with conn.transaction(), conn.cursor() as cur:
        items = [_quarantine_item(cur, e) for e in _run(cur, "waiting_quarantine").fetchall()]
        items += [_rename_item(s) for s in pending_renames(cur)]
    return items


def _parse(item: str) -> tuple[str, int]:
    kind, _, number = item.partition(":")
    if kind not in ("quarantine", "rename") or not number.isdigit():
        raise DecisionError(f"item {item!r}: expected quarantine:<id> or rename:<id> (league-import review list)")
    return kind, int(number)


def decide(
    conn: Connection,
    item: str,
    option: str,
    *,
    by: str,
    via: str,
    dag_run_id: str | None = None,
) -> str:
    """Apply a person's answer in one transaction; returns what was done (or why nothing was).

    Given the review run's id, an item that run already decided returns the recorded outcome and
    writes nothing: a retried apply task leaves the decisions as one clean try would.
    """
    kind, number = _parse(item)
    with conn.transaction(), conn.cursor() as cur:
        if dag_run_id is not None:
            done = _run(cur, "recorded_outcome", {"item": item, "dag_run_id": dag_run_id}).fetchone()
            if done is not None:
                return done[0]
        if kind == "quarantine":
            outcome = _decide_quarantine(cur, number, option, by, f"decision:{item}")
        else:
            outcome = _decide_rename(cur, number, option, by, f"decision:{item}")
        params = {"item": item, "choice": option, "outcome": outcome, "by": by, "via": via, "dag_run_id": dag_run_id}
        _run(cur, "record_decision", params)
    return outcome


def _decide_quarantine(cur: Cursor, qid: int, option: str, by: str, run_id: str) -> str:
    entry = _run(cur, "quarantine_entry", {"id": qid}).fetchone()
    if entry is None:
        raise DecisionError(f"no quarantine entry {qid}")
    _, table, column, rid, *_, resolved_at, resolved_by, resolution = entry
    if resolved_at is not None:
        when = f"{resolved_at:%Y-%m-%d %H:%M}"
        return f"already resolved by {resolved_by or 'another path'} at {when} ({resolution}): nothing done"
    if option == LEAVE:
        return f"{table} row {rid} stays in quarantine"
    item = _quarantine_item(cur, entry[:9])
    team_id = item.option_teams.get(option)
    if team_id is None:
        if option.isdigit():
            team_id = int(option)
        else:
            raise DecisionError(f"option {option!r} is not one of: {', '.join(item.options)} (or a team id)")
    return _release(cur, qid, table, column, rid, team_id, by)


def _release(cur: Cursor, qid: int, table: str, column: str, rid: str, team_id: int, by: str) -> str:
    """Re-attach a detached row, or re-insert a removed one from its archived copy, on team_id."""
    if not _run(cur, "team_exists", {"team_id": team_id}).fetchone()[0]:
        raise DecisionError(f"team {team_id} does not exist")
    target, col = sql.Identifier("public", table), sql.Identifier(column)
    params = {"row_id": rid, "team_id": team_id}
    live_id = row_id(cur, table, column, with_team=True)
    plain_id = row_id(cur, table, column)
    if (
        "id" in dict(live_columns(cur, table))
        and _run(cur, "reattach", {**params, "row_id": rid}, table=target, column=col, row_id=plain_id).rowcount == 1
    ):
        done = f"{table} row {rid}: {column} set to {team_id}"
    else:
        names = [name for name, _ in live_columns(cur, table)]
        values = sql.SQL(", ").join(
            sql.Placeholder("team_id") if n == column else sql.Identifier("t", n) for n in names
        )
        archive = sql.Identifier(ARCHIVE_SCHEMA, table)
        if not _run(cur, "archived_exists", params, archive=archive, row_id=live_id).fetchone()[0]:
            raise DecisionError(f"{table} row {rid} is neither detached nor in etl_archive.{table}")
        inserted = _run(
            cur,
            "reinsert_from_archive",
            params,
            table=target,
            columns=sql.SQL(", ").join(map(sql.Identifier, names)),
            values=values,
            archive=archive,
            row_id=live_id,
        ).rowcount
        done = (
            f"{table} row {rid}: restored from etl_archive.{table} with {column} = {team_id}"
            if inserted
            else f"{table} row {rid}: the same row already exists on team {team_id}; nothing inserted"
        )
    _run(cur, "resolve_quarantine", {"id": qid, "team_id": team_id, "by": by, "resolution": done})
    return done


def release(conn: Connection, table: str, row: str, team_id: int, column: str = "team_id", *, by: str) -> str:
    """Put a quarantined row (named as in etl.quarantine.row_id) back on a team; one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        found = _run(cur, "quarantine_by_row", {"table_name": table, "column_name": column, "row_id": row}).fetchone()
        if found is None:
            raise DecisionError(f"no unresolved quarantine entry for {table}.{column} row {row}")
        done = _release(cur, found[0], table, column, row, team_id, by)
        _run(
            cur,
            "record_decision",
            {
                "item": f"quarantine:{found[0]}",
                "choice": str(team_id),
                "outcome": done,
                "by": by,
                "via": "cli release",
                "dag_run_id": None,
            },
        )
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
