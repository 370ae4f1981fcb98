"""What the pipeline would change on a target, read by a person first: `league-import target check`
prints it, `league-import target apply` makes it.

check is read-only. It reports the mapping against the live catalog (league_import.target); what
the pipeline would add to the target (its own schemas etl and etl_archive, the constraint changes
the mapping chooses, the keys and foreign keys the mapping declares on user tables); every
conflict between the target and the files (an app constraint the real data violates, a column
too short or NOT NULL for what the files hold), with the resolution the mapping chooses where it
chooses one; and what adoption will match and what it will not. It exits non-zero while a
problem or an unresolved conflict remains.

apply makes the printed changes in one transaction and records each in etl.target_changes (a key
whose duplicates must go first archives them, as deduplicate does); run twice, it changes
nothing. validate_constraints refuses to run on a target with changes not applied, naming the
command, and refuses files that conflict with the target's constraints, naming constraint, file
and record (data_conflicts).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from league_import import pgcatalog
from league_import.errors import ConfigError
from league_import.identity import TeamNameError, fold, parse_team
from league_import.target import ENTITIES, SCHEMA, Target, active

PIPELINE_SCHEMAS = ("etl", "etl_archive")
_LENGTH = re.compile(r"^(?:character varying|character)\((\d+)\)$")


@dataclass
class Change:
    """One change to the target: what it does in words, and its statements."""

    what: str
    statements: list[sql.Composable] = field(default_factory=list)
    kind: str = "constraint"  # schema | constraint | key | reference


@dataclass
class Plan:
    target: Target
    problems: list[str] = field(default_factory=list)  # the mapping against the database
    changes: list[Change] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # unresolved: the pipeline cannot run
    resolved: list[str] = field(default_factory=list)  # conflicts the changes resolve
    adoption: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.conflicts

    def pending(self) -> list[str]:
        return [c.what for c in self.changes]


def make_plan(conn: psycopg.Connection, target: Target, leagues=None) -> Plan:
    """The plan for this target, and, given the sources (read and checked by
    league_import.sources), the conflicts with them and what adoption will match. Read-only."""
    plan = Plan(target)
    with conn.transaction(), conn.cursor() as cur:
        if target.owns_tables and not pgcatalog.schema_exists(cur, "etl"):
            plan.changes = _schema_changes(cur, target)
            return plan
        plan.problems = target.verify(cur)
        if plan.problems:
            return plan
        plan.changes = _schema_changes(cur, target) + _constraint_changes(cur, target) + _declared(cur, target)
        if leagues is not None:
            seen = target if pgcatalog.table_exists(cur, "state_teams", "etl") else target.before_apply()
            with active(seen):
                facts = TargetFacts.read(cur, seen)
                unresolved, resolved = data_conflicts(leagues, facts)
                plan.conflicts += unresolved
                plan.resolved += resolved
                plan.adoption = adoption_report(cur, seen, leagues, facts)
    return plan


def _schema_changes(cur: psycopg.Cursor, target: Target) -> list[Change]:
    from league_import.schema import head

    missing = [s for s in PIPELINE_SCHEMAS if not pgcatalog.schema_exists(cur, s)]
    if not missing:
        return []
    if target.owns_tables:
        return [
            Change(
                f"create CONTRACT section 4's tables and the schemas {' and '.join(missing)} "
                "(the first run does it too)",
                kind="schema",
            )
        ]
    return [
        Change(
            f"create the pipeline's own schemas {' and '.join(missing)} (migrations up to {head()}): its keys, "
            "run history, stage, backups, archive and decisions; no table of the app's is touched",
            kind="schema",
        )
    ]


def _constraint_changes(cur: psycopg.Cursor, target: Target) -> list[Change]:
    """The app constraints the mapping resolves (replaced or dropped), where not done yet."""
    out = []
    for entity in ENTITIES:
        m = target.entity(entity)
        table = target.table(entity)
        found = {k.name: k for k in pgcatalog.table_constraints(cur, m.table, SCHEMA)}
        for name, resolution in m.constraints.items():
            existing = found.get(name)
            if existing is None:
                continue
            if resolution.drop:
                statement = sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, sql.Identifier(name))
                out.append(Change(f"drop {name} {existing.definition} of {SCHEMA}.{m.table}", [statement]))
                continue
            wanted = tuple(resolution.replace_with)
            if existing.columns == wanted and existing.kind == "u":
                continue
            statement = sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}, ADD CONSTRAINT {} UNIQUE ({})").format(
                table, sql.Identifier(name), sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, wanted))
            )
            out.append(
                Change(
                    f"replace {name} {existing.definition} of {SCHEMA}.{m.table} with UNIQUE ({', '.join(wanted)})",
                    [statement],
                )
            )
    return out


def _declared(cur: psycopg.Cursor, target: Target) -> list[Change]:
    """The keys and foreign keys the mapping declares on user tables, where missing. On a target
    the pipeline owns, validate_constraints adds them itself (its own tables)."""
    if target.owns_tables:
        return []
    from league_import.constraints import duplicates

    out = []
    for key in target.natural_keys():
        if pgcatalog.has_unique(cur, key.table, key.columns):
            continue
        _, extra, _ = duplicates(cur, key, sample=False)  # counted only: the etl schema may not exist yet
        archive = f" (archiving {extra} duplicate rows first, in etl_archive.{key.table})" if extra else ""
        out.append(
            Change(
                f"add {key.name} UNIQUE NULLS NOT DISTINCT ({', '.join(key.columns)}) to {key.table}{archive}",
                kind="key",
            )
        )
    fks = pgcatalog.foreign_keys(cur)
    for ref in target.references():
        existing = fks.get((ref.table, ref.column))
        if existing and existing.target == ref.target:
            continue
        out.append(
            Change(
                f"add {ref.name} FOREIGN KEY ({ref.column}) REFERENCES {ref.target} "
                "(NOT VALID when rows point nowhere)",
                kind="reference",
            )
        )
    return out


def ready(conn: psycopg.Connection, target: Target) -> TargetFacts | None:
    """Before a run reads its files: on an app's database, the mapping fits the database and
    every change of the plan is applied (else ConfigError naming the command); returns what the
    files are checked against. None on a target the pipeline owns (its own design)."""
    if target.owns_tables:
        return None
    plan = make_plan(conn, target)
    if plan.problems:
        raise ConfigError(f"target {target.path}: the mapping does not fit the database:\n" + "\n".join(plan.problems))
    if plan.changes:
        raise ConfigError(
            f"target {target.path}: changes not applied yet: {'; '.join(plan.pending())}. Read "
            "`league-import target check`, then run `league-import target apply`"
        )
    with conn.transaction(), conn.cursor() as cur:
        return TargetFacts.read(cur, target)


def apply(conn: psycopg.Connection, target: Target, *, by: str) -> list[str]:
    """Make every change of the plan in one transaction, recorded in etl.target_changes; returns
    what was done (nothing, when it was all done before)."""
    from league_import.constraints import add_reference
    from league_import.dedup import deduplicate
    from league_import.schema import migrate

    plan = make_plan(conn, target)
    if plan.problems:
        raise ConfigError(f"target {target.path}: the mapping does not fit the database:\n" + "\n".join(plan.problems))
    if not plan.changes:
        return []
    run_id = f"target-apply:{by}"
    with conn.transaction(), conn.cursor() as cur:
        if any(c.kind == "schema" for c in plan.changes):
            migrate(conn, owns_tables=target.owns_tables)
        for change in plan.changes:
            for statement in change.statements:
                cur.execute(statement)
        for key in target.natural_keys():  # duplicates archived first, then the key (deduplicate)
            if not pgcatalog.has_unique(cur, key.table, key.columns):
                deduplicate(conn, key, run_id, add_key=True)
        for ref in target.references():
            add_reference(conn, cur, ref)
        for change in plan.changes:
            text = "; ".join(s.as_string(cur) for s in change.statements) or change.kind
            cur.execute(
                "INSERT INTO etl.target_changes (change, statement, mapping, mapping_sha256, applied_by) "
                "VALUES (%s, %s, %s, %s, %s)",
                (change.what, text, str(target.path), target.sha256, by),
            )
    return [c.what for c in plan.changes]


# --- The data against the target ---------------------------------------------------------------


@dataclass
class TargetFacts:
    """What of the target the files are checked against: its unique keys, its text columns'
    lengths and its NOT NULL columns, per entity; the existing teams with their keys."""

    target: Target
    uniques: dict[str, list[pgcatalog.TableConstraint]]
    lengths: dict[str, dict[str, int]]
    not_null: dict[str, set[str]]
    teams: list[dict]

    @classmethod
    def read(cls, cur: psycopg.Cursor, target: Target) -> TargetFacts:
        uniques, lengths, not_null = {}, {}, {}
        for entity in ENTITIES:
            table = target.table_name(entity)
            uniques[entity] = [k for k in pgcatalog.table_constraints(cur, table, SCHEMA) if k.kind in ("u", "p")]
            facts = pgcatalog.column_facts(cur, table, SCHEMA)
            lengths[entity] = {c.name: int(m.group(1)) for c in facts if (m := _LENGTH.match(c.type))}
            not_null[entity] = {c.name for c in facts if c.not_null}
        return cls(target, uniques, lengths, not_null, _existing_teams(cur, target))


def _existing_teams(cur: psycopg.Cursor, target: Target) -> list[dict]:
    """Every team of the target with its keys: the pipeline's own as it keeps them, the others'
    as their stored names give them (none where the rules cannot read a name)."""
    from league_import.sql import compose

    rows = cur.execute(compose("targetplan", "existing_teams")).fetchall()
    out = []
    for team_id, league, club_name, series_name, team_name, owned, team_key, series_key, is_active in rows:
        key, series = team_key, series_key
        if not owned:
            try:
                ident = parse_team(team_name or "", series_name or "")
                key, series = ident.team_key, ident.series_key
            except TeamNameError:
                key, series = None, None
        out.append(
            {
                "id": team_id,
                "league": league,
                "club_key": fold(club_name or ""),
                "series_key": series,
                "team_key": key,
                "team_name": team_name,
                "owned": owned,
                "active": is_active,
            }
        )
    return out


def _team_values(team, league: str) -> dict[str, object]:
    """A staged team's fields as the target's columns compare them (ids by the keys behind them)."""
    return {
        "league_id": league,
        "club_id": team.club_key,
        "series_id": team.series_key,
        "team_name": team.team_name,
        "is_active": True,
        "team_key": team.team_key,
        "sub_team": team.sub_team,
    }


def data_conflicts(leagues, facts: TargetFacts) -> tuple[list[str], list[str]]:
    """Conflicts between tonight's files and the target's constraints: (unresolved, resolved by a
    change the mapping chooses). Each names the constraint, the file and the record."""
    target = facts.target
    unresolved: list[str] = []
    resolved: list[str] = []
    teams_map = target.entity("teams")
    source_of = {column: source for column, source in teams_map.columns.items()}
    for constraint in facts.uniques["teams"]:
        fields = [source_of.get(c) for c in constraint.columns]
        if None in fields or "id" in fields:
            continue  # a column the pipeline does not fill, or the id: no two rows of the files can meet on it
        resolution = teams_map.constraints.get(constraint.name)
        if resolution is not None and tuple(resolution.replace_with or ()) == constraint.columns:
            resolution = None  # already replaced: this is the new constraint, which the files must keep
        out = resolved if resolution is not None else unresolved
        how = ""
        if resolution is not None:
            done = "drops it" if resolution.drop else f"replaces it with UNIQUE ({', '.join(resolution.replace_with)})"
            how = f"; `league-import target apply` {done}"
        for league in leagues:
            out += _team_collisions(league, constraint, fields, facts, how)
    for entity, what in (("teams", "team"),):
        for column, limit in facts.lengths[entity].items():
            source = target.entity(entity).columns.get(column)
            for league in leagues:
                for team in league.teams:
                    value = {"team_name": team.team_name}.get(source)
                    if isinstance(value, str) and len(value) > limit:
                        unresolved.append(
                            f"{team.seen_in}: {what} {value!r} is {len(value)} characters, more than "
                            f"{SCHEMA}.{target.table_name(entity)}.{column} (varchar({limit})) holds"
                        )
    unresolved += _schedule_nulls(leagues, facts)
    return unresolved, resolved


def _team_collisions(league, constraint, fields: list[str], facts: TargetFacts, how: str) -> list[str]:
    """Teams of the files that would share the constraint's columns with another team of the
    files, or with an existing team of the target that is another team."""
    table = f"{SCHEMA}.{facts.target.table_name('teams')}"
    label = f"constraint {constraint.name} {constraint.definition} of {table}"
    out = []
    seen: dict[tuple, object] = {}
    for team in league.teams:
        values = _team_values(team, league.code)
        key = tuple(values.get(f) for f in fields)
        other = seen.setdefault(key, team)
        if other is not team:
            out.append(
                f"{label} refuses team {team.team_name!r} of series {team.series_label!r} ({team.seen_in}): the same "
                f"{', '.join(constraint.columns)} as team {other.team_name!r} ({other.seen_in}){how}"
            )
    existing = defaultdict(list)
    for row in facts.teams:
        if row["league"] == league.code:
            values = {
                "league_id": row["league"],
                "club_id": row["club_key"],
                "series_id": row["series_key"],
                "team_name": row["team_name"],
                "is_active": row["active"],
            }
            existing[tuple(values.get(f) for f in fields)].append(row)
    for team in league.teams:
        key = tuple(_team_values(team, league.code).get(f) for f in fields)
        for row in existing.get(key, ()):
            if (row["series_key"], row["team_key"]) != (team.series_key, team.team_key):
                out.append(
                    f"{label} refuses team {team.team_name!r} of series {team.series_label!r} ({team.seen_in}): the "
                    f"target's team {row['id']} {row['team_name']!r} has the same {', '.join(constraint.columns)}{how}"
                )
    return out


def _schedule_nulls(leagues, facts: TargetFacts) -> list[str]:
    """Matches whose empty fields (a BYE's missing team, an empty time) go to a NOT NULL column."""
    target = facts.target
    m = target.entity("schedule")
    nullable_sources = {"home_team_id": 3, "away_team_id": 4, "match_time": 2}
    out = []
    for column, source in m.columns.items():
        if column not in facts.not_null["schedule"] or source not in nullable_sources:
            continue
        for league in leagues:
            empty = [row for row in league.schedule if row[nullable_sources[source]] is None]
            if empty:
                example = empty[0]
                out.append(
                    f"{league.code}/schedules.json: {len(empty)} matches have no {source} (e.g. {example[1]}, "
                    f"{example[7]!r} v {example[8]!r}), but {SCHEMA}.{m.table}.{column} is NOT NULL"
                )
    return out


# --- What adoption will match --------------------------------------------------------------------


def adoption_report(cur: psycopg.Cursor, target: Target, leagues, facts: TargetFacts) -> dict:
    """What the first run will adopt and what it will not: teams by their key (the lowest id of a
    key), and the teams of the files' leagues that no file names (left as they are)."""
    if target.owns_tables:
        return {}
    staged = {(lg.code, t.series_key, t.team_key): t for lg in leagues for t in lg.teams}
    codes = {lg.code for lg in leagues}
    by_key = defaultdict(list)
    for row in facts.teams:
        if row["league"] in codes and row["team_key"] is not None:
            by_key[(row["league"], row["series_key"], row["team_key"])].append(row)
    adopted, already, duplicates, unnamed, unreadable = [], 0, [], [], 0
    for key, rows in by_key.items():
        rows.sort(key=lambda r: r["id"])
        if key in staged:
            owned = [r for r in rows if r["owned"]]
            if owned:
                already += 1
                duplicates += [r for r in rows if not r["owned"]]
                continue
            adopted.append((rows[0], staged[key]))
            duplicates += rows[1:]
        else:
            unnamed += [r for r in rows if not r["owned"]]
    unreadable = sum(1 for r in facts.teams if r["league"] in codes and r["team_key"] is None)
    created = [t for k, t in staged.items() if k not in by_key]
    ids = {
        key: min(r["id"] for r in rows if r["owned"] or not any(x["owned"] for x in rows))
        for key, rows in by_key.items()
    }
    matches, standings = _rows_adopted(cur, target, leagues, ids)
    return {
        "teams_adopted": len(adopted),
        "teams_already_the_pipelines": already,
        "teams_created": len(created),
        "teams_left_as_they_are": len(unnamed),
        "teams_same_key_as_a_lower_id": len(duplicates),
        "teams_unreadable": unreadable,
        "sample_adopted": [
            {"id": row["id"], "stored_as": row["team_name"], "files_spell": team.team_name}
            for row, team in adopted[:10]
        ],
        "sample_created": [{"series": t.series_label, "team": t.team_name, "seen_in": t.seen_in} for t in created[:10]],
        "sample_left_as_they_are": [{"id": r["id"], "team": r["team_name"]} for r in unnamed[:10]],
        **matches,
        **standings,
    }


def _norm(text) -> str:
    return " ".join(str(text or "").split()).lower()


def _rows_adopted(cur: psycopg.Cursor, target: Target, leagues, ids: dict) -> tuple[dict, dict]:
    """Existing matches and standings rows the first run adopts (their teams' ids, the natural
    key, the adopt_if_equal texts), and those it leaves to the app (its practices among them)."""
    from league_import.sql import compose

    codes = [lg.code for lg in leagues]
    rows = cur.execute(compose("targetplan", "existing_matches"), {"codes": codes}).fetchall()
    by_key = defaultdict(list)
    for row_id, code, day, home, away, home_text, away_text in rows:
        by_key[(code, day, home, away)].append((row_id, _norm(home_text), _norm(away_text)))
    compared = target.entity("schedule").adopt_if_equal
    adopted = set()
    for league in leagues:
        for key, day, _at, home, away, _loc, _label, home_name, away_name in league.schedule:
            home_id, away_id = ids.get((league.code, key, home)), ids.get((league.code, key, away))
            if (home and home_id is None) or (away and away_id is None):
                continue  # a match of a team the run creates: nothing to adopt
            texts = {"home_team": _norm(home_name), "away_team": _norm(away_name)}
            for row_id, home_text, away_text in sorted(by_key.get((league.code, day, home_id, away_id), ())):
                stored = {"home_team": home_text, "away_team": away_text}
                if row_id not in adopted and all(stored[c] == texts[c] for c in compared if c in texts):
                    adopted.add(row_id)
                    break
    standings = cur.execute(compose("targetplan", "existing_standings"), {"codes": codes}).fetchall()
    team_ids = {
        (lg.code, i) for lg in leagues for key, team_key, *_ in lg.stats if (i := ids.get((lg.code, key, team_key)))
    }
    kept = {team for _, code, team in standings if (code, team) in team_ids}
    return (
        {"matches_adopted": len(adopted), "matches_left_to_the_app": len(rows) - len(adopted)},
        {"standings_adopted": len(kept), "standings_left_to_the_app": len(standings) - len(kept)},
    )


def describe(plan: Plan) -> str:
    """The plan in words, as `target check` prints it."""
    lines = [f"target: {plan.target.path} (owner: {plan.target.mapping.owner})"]
    if plan.problems:
        lines += ["", "The mapping does not fit the database:", *(f"- {p}" for p in plan.problems)]
        return "\n".join(lines)
    lines += ["", "Changes `league-import target apply` makes, in one transaction:"]
    lines += [f"- {c.what}" for c in plan.changes] or ["- none: everything is applied"]
    if plan.resolved:
        lines += ["", "Conflicts between the files and the target that those changes resolve:"]
        lines += [f"- {c}" for c in plan.resolved]
    if plan.conflicts:
        lines += ["", "Conflicts no change resolves (the pipeline refuses to run until they are fixed):"]
        lines += [f"- {c}" for c in plan.conflicts]
    if plan.adoption:
        a = plan.adoption
        lines += [
            "",
            "Adoption: existing rows of the app's database that are the files' own become the pipeline's:",
            f"- teams adopted (their ids kept): {a['teams_adopted']}",
            f"- teams already the pipeline's: {a['teams_already_the_pipelines']}",
            f"- teams of the files the target lacks (created): {a['teams_created']}",
            f"- teams of these leagues no file names (left as they are): {a['teams_left_as_they_are']}",
            f"- teams with the key of a lower id (left as they are): {a['teams_same_key_as_a_lower_id']}",
            f"- teams whose stored names the identity rules cannot read (left as they are): {a['teams_unreadable']}",
        ]
        lines += [f"  e.g. created: {s['team']} ({s['series']}; {s['seen_in']})" for s in a["sample_created"][:5]]
        lines += [f"  e.g. left as it is: team {s['id']} {s['team']!r}" for s in a["sample_left_as_they_are"][:5]]
        lines += [
            f"- matches adopted: {a['matches_adopted']}; the app's rows of schedule left to it (its practices "
            f"among them): {a['matches_left_to_the_app']}",
            f"- standings rows adopted: {a['standings_adopted']}; left to the app: {a['standings_left_to_the_app']}",
        ]
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)
