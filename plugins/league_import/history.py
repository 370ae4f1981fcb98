"""The history of team ids, in one place: the key map, re-used ids, aliases, merges, re-keying,
and moving every reference from one team id to another.

Repair, dedup and the upsert call this module; none of them writes the key map, an alias or a
reference to a merged team by itself.

- The key map (etl.team_key_map) keeps every id the pipeline has seen with its natural key. An
  id that another process re-used for another team gets a new epoch; its first meaning is never
  rewritten, so the rows the last backup shows on it are put back on their own team.
- merge(survivor, merged) moves every reference to the merged id to the survivor in the caller's
  transaction, settles collisions by the dedup rule (archived), archives the merged row and maps
  the merged id to the survivor for good (later orphans on it are repaired by the key map).
- Aliases tie a spelling to a team id; the upsert reads them before it creates a team.
- rekey_teams re-computes every stored key when the identity rules change (identity.KEY_VERSION),
  merging the teams whose keys now coincide.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from psycopg import Cursor, sql

from league_import.archive import archive_rows
from league_import.catalog import NaturalKey
from league_import.errors import CountMismatchError, DecisionError
from league_import.identity import KEY_VERSION, TeamNameError, fold, parse_label, parse_team
from league_import.pgcatalog import table_columns
from league_import.references import row_key, team_references
from league_import.sql import compose, run, statements
from league_import.target import current

_run = partial(run, "history")


def refresh_key_map(cur: Cursor, run_id: str) -> dict:
    """Record the ids issued since the last refresh, new spellings, and ids re-used for another
    team (a new epoch, with the backup that shows which rows were the old team's)."""
    _run(cur, "live_teams")
    _run(cur, "current_meanings")
    added = _run(cur, "add_new_ids", {"run_id": run_id}).rowcount
    spellings = _run(cur, "add_spellings", {"run_id": run_id}).rowcount
    reused = _run(cur, "record_reused_ids", {"run_id": run_id}).fetchall()
    return {"ids_added": added, "spellings_added": spellings, "reused_ids": [r[0] for r in reused]}


@dataclass(frozen=True)
class Reuse:
    team_id: int
    epoch: int
    evidence_run: str | None
    old_key: str
    new_key: str


def unsettled_reuses(cur: Cursor) -> list[Reuse]:
    """Re-used ids whose rows from before the re-use have not all been put back yet."""
    return [Reuse(*r) for r in _run(cur, "unsettled_reuses").fetchall()]


def settle_reuses(cur: Cursor, run_id: str, team_ids: list[int]) -> None:
    _run(cur, "settle_reuses", {"run_id": run_id, "team_ids": team_ids})


def keep_order(key: NaturalKey | None, *, alias: str | None = "r", has_id: bool = False) -> sql.Composable:
    """The dedup rule as an ORDER BY (the first row is kept): the key's stated order, then, with
    `has_id`, the lowest id; NULL when neither applies. Columns qualified by `alias`."""

    def name(column: str) -> sql.Identifier:
        return sql.Identifier(alias, column) if alias else sql.Identifier(column)

    terms = [
        sql.SQL("{} {}").format(name(c), sql.SQL("DESC" if d.upper() == "DESC" else "ASC"))
        for c, d in (key.keep_order if key else ())
    ]
    if has_id:
        terms.append(name("id"))
    return sql.SQL(", ").join(terms) if terms else sql.SQL("NULL")


def repoint_references(cur: Cursor, referencing: list[tuple[str, str]], run_id: str, reason: str) -> dict:
    """Move references through the temp table id_map(dup_id, keep_id).

    A referencing row that would then repeat its own table's natural key (a membership on both
    the old and the new id) is the same row twice: the dedup rule picks the one that stays (the
    primary membership, else the lowest id, else the row that does not move); the others are
    archived and removed.
    """
    moved: dict[str, int] = {}
    tables = table_columns(cur)
    for table, column in referencing:
        target = sql.Identifier("public", table)
        own_key = row_key(cur, table, column)
        if own_key and column in own_key.columns:
            mapped = sql.SQL(", ").join(
                sql.SQL("coalesce(m.keep_id, r.{})").format(sql.Identifier(c))
                if c == column
                else sql.SQL("r.{}").format(sql.Identifier(c))
                for c in own_key.columns
            )
            _run(
                cur,
                "repoint_collisions",
                referencing=target,
                column=sql.Identifier(column),
                mapped_key=mapped,
                order=keep_order(own_key, has_id="id" in tables.get(table, {})),
            )
            archived = archive_rows(cur, table, sql.SQL(statements("history")["collided"]), {}, run_id, reason)
            deleted = _run(cur, "delete_collisions", referencing=target).rowcount
            if archived != deleted:
                raise CountMismatchError(f"{table}: {deleted} colliding rows removed but {archived} archived")
            if deleted:
                moved[f"{table}: merged into an existing row"] = deleted
        moved[f"{table}.{column}"] = _run(cur, "repoint", referencing=target, column=sql.Identifier(column)).rowcount
    return moved


def merge_many(
    cur: Cursor, pairs: list[tuple[int, int]], run_id: str, *, reason: str, by: str | None = None, alias: bool = True
) -> dict:
    """Merge each (survivor, merged) pair, in the caller's transaction.

    Every reference to a merged id moves to its survivor; the merged row is archived in
    etl_archive.teams and removed; the key map maps it to the survivor for good; its spelling
    becomes an alias of the survivor (unless `alias` is false: a re-key, where the keys agree).
    """
    if not pairs:
        return {"merged": 0}
    _run(cur, "id_map")
    for survivor, merged in pairs:
        if survivor == merged:
            raise DecisionError(f"team {merged} cannot be merged into itself")
        _run(cur, "map_one", {"survivor": survivor, "merged": merged})
    target = current()
    moved = repoint_references(cur, team_references(cur), run_id, "merge")
    takes = target.update(
        cur, "teams", compose("history", "survivors_take_over"), ("team_name", "club_id", "is_active")
    )
    aliases = _run(cur, "aliases_of_merged", {"run_id": run_id, "by": by}).rowcount if alias else 0
    _run(cur, "repoint_aliases_many")
    _run(cur, "map_merged_many", {"run_id": run_id})
    removed = target.delete(cur, "teams", compose("history", "merged_teams"), run_id, reason)
    if removed != len(pairs):
        raise CountMismatchError(f"teams: {len(pairs)} merges, {removed} rows removed")
    return {"merged": removed, "survivors_renamed": takes, "aliases": aliases, "repointed": moved}


def merge(cur: Cursor, survivor: int, merged: int, run_id: str, *, reason: str, by: str | None = None) -> dict:
    """Merge one team into another of the same league and series (see merge_many)."""
    _run(cur, "lock_pair", {"survivor": survivor, "merged": merged})
    found = {r[0]: r for r in _run(cur, "merge_pair", {"survivor": survivor, "merged": merged}).fetchall()}
    for team_id in (survivor, merged):
        if team_id not in found:
            raise DecisionError(f"team {team_id} does not exist (merged or removed since)")
    if (found[survivor][7], found[survivor][5]) != (found[merged][7], found[merged][5]):
        raise DecisionError(f"teams {survivor} and {merged} are not in one league and series: not merged")
    return merge_many(cur, [(survivor, merged)], run_id, reason=reason, by=by)


def add_alias(
    cur: Cursor,
    league_code: str,
    series_label: str,
    spelling: str,
    team_id: int,
    *,
    source: str,
    by: str | None,
    run_id: str | None = None,
) -> int:
    """Tie a spelling (as written in the files, with its series label) to a team id."""
    try:
        ident = parse_team(spelling, series_label)
    except TeamNameError as exc:
        raise DecisionError(str(exc)) from None
    found = {
        i: key
        for i, key in _run(cur, "series_teams", {"league_code": league_code, "series_key": ident.series_key}).fetchall()
    }
    if team_id not in found:
        raise DecisionError(f"team {team_id} is not a team of league {league_code}, series {ident.series_key}")
    owner = next((i for i, key in found.items() if key == ident.team_key), None)
    if owner is not None:
        raise DecisionError(f"{spelling!r} is the spelling of team {owner} itself: no alias needed or allowed")
    params = {
        "league_code": league_code,
        "series_key": ident.series_key,
        "series_label": series_label,
        "spelling": spelling,
        "team_key": ident.team_key,
        "team_id": team_id,
        "source": source,
        "created_by": by,
        "run_id": run_id,
    }
    return _run(cur, "add_alias", params).fetchone()[0]


def list_aliases(cur: Cursor, league_code: str | None = None) -> list[tuple]:
    return _run(cur, "list_aliases", {"league_code": league_code}).fetchall()


def remove_alias(cur: Cursor, alias_id: int) -> tuple:
    found = _run(cur, "remove_alias", {"id": alias_id}).fetchone()
    if found is None:
        raise DecisionError(f"no alias with id {alias_id}")
    return found


def _merge_rekeyed(cur: Cursor, target, kind: str, run_id: str) -> int:
    """Clubs or series whose names now give one key: the lowest id stays. Where the pipeline owns
    the tables, the others' rows move to it and they are archived and removed; on an app's
    database they stay the app's rows (other tables of the app may point at them), and the
    pipeline's teams move to the survivor with the next load."""
    _run(cur, f"merge_{kind}")
    merged = compose("history", f"merged_{kind}")
    if not target.owns_tables:
        return target.forget(cur, kind, merged)
    if kind == "clubs":
        target.update(cur, "teams", compose("history", "club_moves"), ("club_id",))
    else:
        for entity in ("teams", "schedule", "series_stats"):
            target.update(cur, entity, compose("history", f"series_moves_{entity}"), ("series_id",))
    return target.delete(cur, kind, merged, run_id, "rekey")


def key_version(cur: Cursor) -> int | None:
    found = _run(cur, "key_version").fetchone()
    return int(found[0]) if found else None


def rekey_teams(cur: Cursor, run_id: str) -> dict:
    """Re-compute every stored key with the current identity rules, once per rules version.

    Clubs, series and teams whose keys now coincide are merged (the lowest id, or the older
    team, survives; references move; the others are archived). Names that the rules can no
    longer read keep their old key and are reported. A no-op when the keys are current.
    """
    version = key_version(cur)
    has_teams = _run(cur, "has_teams").fetchone()[0]
    if version == KEY_VERSION or (version is None and not has_teams):
        if version is None:
            _run(cur, "set_key_version", {"version": str(KEY_VERSION)})
        return {}
    rows, unreadable = [], []
    for kind, row_id, epoch, text, label in _run(cur, "rekey_inputs").fetchall():
        try:
            if kind == "club":
                rows.append((kind, row_id, epoch, fold(text), None, None, None))
            elif kind == "series":
                rows.append((kind, row_id, epoch, parse_label(text).key, None, None, None))
            else:
                ident = parse_team(text, label)
                rows.append((kind, row_id, epoch, ident.team_key, ident.series_key, ident.club_key, ident.sub_team))
        except TeamNameError as exc:
            unreadable.append(f"{kind} {row_id}: {exc}")
    if unreadable:
        raise DecisionError(
            f"identity rules version {KEY_VERSION} cannot read {len(unreadable)} stored names; nothing was "
            "re-keyed: " + "; ".join(unreadable[:10])
        )
    _run(cur, "create_rekeyed")
    with cur.copy("COPY rekeyed (kind, id, epoch, new_key, new_series_key, new_club_key, sub_team) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cur.execute("ANALYZE rekeyed")
    report: dict = {"from_version": version, "to_version": KEY_VERSION}
    pairs = [(survivor, merged) for merged, survivor in _run(cur, "team_collisions").fetchall()]
    report["teams_merged"] = [{"survivor": s, "merged": m} for s, m in pairs]
    merge_many(cur, pairs, run_id, reason="rekey", alias=False)
    target = current()
    target.update(cur, "teams", compose("history", "park_team_keys"), ("team_key",))
    for kind in ("clubs", "series"):
        report[f"{kind}_merged"] = _merge_rekeyed(cur, target, kind, run_id)
        key = "name_key" if kind == "clubs" else "series_key"
        target.update(cur, kind, compose("history", f"parked_{kind}"), (key,))
        target.update(cur, kind, compose("history", f"rekeyed_{kind}"), (key,))
    report["teams_rekeyed"] = target.update(cur, "teams", compose("history", "rekey_teams"), ("team_key", "sub_team"))
    report["key_map_rekeyed"] = _run(cur, "rekey_key_map").rowcount
    _run(cur, "rekey_aliases")
    _run(cur, "set_key_version", {"version": str(KEY_VERSION)})
    return report
