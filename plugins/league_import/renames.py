"""Suspected renames: never silent, never guessed.

Per league and series, a team created tonight and a team that left tonight whose club names are
close (token-set similarity, or one edit apart) and whose sub-teams agree form a suspect pair;
so do two of tonight's teams that each appear in only one of the league's two files (one team
spelled two ways across the files). The run creates and deactivates as it would anyway, and
records each pair for a person: "same team" merges the new id into the old one, "different
teams" records the pair so it is not asked again (league_import.review).
"""

from __future__ import annotations

from functools import partial

from psycopg import Cursor, sql
from psycopg.types.json import Jsonb
from rapidfuzz import fuzz, utils
from rapidfuzz.distance import Levenshtein

from league_import.identity import fold
from league_import.references import team_columns
from league_import.sql import run

_run = partial(run, "renames")

MIN_SIMILARITY = 85  # token-set ratio (0-100) from which two club names are suspected to be one


def similarity(a: str, b: str) -> float | None:
    """How alike two club names are (0-100), or None when they are not suspect."""
    score = fuzz.token_set_ratio(a, b, processor=utils.default_process)
    if score >= MIN_SIMILARITY:
        return round(score, 1)
    if Levenshtein.distance(fold(a), fold(b)) <= 1:
        return round(max(score, float(MIN_SIMILARITY)), 1)
    return None


def _pairs(rows: list[tuple], first: str, second: str) -> list[tuple[tuple, tuple, float]]:
    """(a, b, score) for every suspect pair with `a` on side `first` and `b` on side `second`."""
    groups: dict[tuple[str, str], dict[str, list[tuple]]] = {}
    for row in rows:
        side, _, league, series, *_ = row
        groups.setdefault((league, series), {}).setdefault(side, []).append(row)
    found = []
    for sides in groups.values():
        for a in sides.get(first, []):
            for b in sides.get(second, []):
                if a[6] != b[6]:  # different sub-teams are different teams
                    continue
                score = similarity(a[4], b[4])
                if score is not None:
                    found.append((a, b, score))
    return found


def detect(cur: Cursor, run_id: str) -> list[dict]:
    """Record tonight's suspect pairs (in the upsert's transaction); returns them."""
    suspects = [
        ("rename", old, new, score)
        for new, old, score in _pairs(_run(cur, "rename_candidates").fetchall(), "created", "left")
    ]
    for a, b, score in _pairs(_run(cur, "split_candidates", {"run_id": run_id}).fetchall(), "stats", "schedule"):
        old, new = sorted((a, b), key=lambda r: r[1])  # the older id would survive
        suspects.append(("split", old, new, score))
    if not suspects:
        return []
    rows = _user_rows(cur, [old[1] for _, old, _, _ in suspects])
    recorded = []
    for kind, old, new, score in suspects:
        params = {
            "kind": kind,
            "league_code": old[2],
            "series_key": old[3],
            "old_team_id": old[1],
            "new_team_id": new[1],
            "old_name": old[5],
            "new_name": new[5],
            "score": score,
            "user_rows": Jsonb(rows.get(old[1], {})),
            "run_id": run_id,
        }
        if _run(cur, "record_suspect", params).fetchone():
            recorded.append({k: v for k, v in params.items() if k != "user_rows"} | {"user_rows": rows.get(old[1], {})})
    return recorded


def _user_rows(cur: Cursor, team_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per team id, the user rows on it, by table."""
    out: dict[int, dict[str, int]] = {}
    for col in team_columns(cur):
        found = _run(
            cur,
            "user_rows",
            {"ids": team_ids},
            table=sql.Identifier("public", col.table),
            column=sql.Identifier(col.column),
        ).fetchall()
        for team_id, count in found:
            out.setdefault(team_id, {})[col.table] = count
    return out


def pending(cur: Cursor) -> list[dict]:
    """Pairs waiting for a person; pairs whose teams were merged meanwhile are closed first."""
    _run(cur, "gone")
    names = (
        "id",
        "kind",
        "league_code",
        "series_key",
        "old_team_id",
        "new_team_id",
        "old_name",
        "new_name",
        "score",
        "user_rows",
        "run_id",
        "created_at",
    )
    return [dict(zip(names, r)) for r in _run(cur, "pending").fetchall()]
