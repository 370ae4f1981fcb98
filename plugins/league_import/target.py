"""The target database: where the pipeline's entities live, the one module that knows it.

A target is a mapping file (TOML, documented in README.md): for each entity of CONTRACT section 4
(leagues, clubs, series, teams, schedule, series_stats), the table and, for each of its columns,
what fills it: one of the entity's fields, a field of the scraper's record ("matches.won"), or the
time of the write. The default is section 4's own schema (include/targets/contract.toml), which
the pipeline creates and owns; an app's database has a file of its own
(include/targets/league_app.toml for the league app).

On a target the pipeline owns (`owner = "pipeline"`) every row of the data tables is its own and
its keys are columns. On an app's database (`owner = "app"`) the pipeline adds no column to the
app's tables: its keys, the fields the app lacks, and which rows it wrote or adopted live in
etl.state_<entity>, each row with the values it was written with (a row another process changed
since, or an id another process re-used, is no longer the pipeline's).

Every step asks this module instead of naming tables:
- relation(entity): the entity's rows in section 4's names, with the pipeline's keys and `owned`
  (read by every statement as {leagues}, {teams}, ...);
- insert, update, delete, adopt: writes by id, filling the app's own columns from the record and
  keeping the pipeline's state beside them, in the caller's transaction;
- the user data it repairs (user_data) and the constraints it declares.
The plan a person reads before the pipeline changes an app's tables is league_import.targetplan.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from psycopg import Cursor, sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from league_import.catalog import ETL_KEYS, ETL_REFERENCES, NaturalKey, Reference, TeamColumn
from league_import.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TARGETS_DIR = Path(os.environ.get("LEAGUE_IMPORT_TARGETS_DIR", REPO / "include" / "targets"))
DEFAULT_MAPPING = TARGETS_DIR / "contract.toml"
TARGET_VARIABLE = "league_import_target"
TARGET_ENV = "LEAGUE_IMPORT_TARGET"
SCHEMA = "public"  # the schema of the target's tables
STATE_SCHEMA = "etl"

ENTITIES = ("leagues", "clubs", "series", "teams", "schedule", "series_stats")

# What a column can hold: a kind of value, checked against the column's type.
_KINDS = {
    "id": ("smallint", "integer", "bigint", "numeric"),
    "int": ("smallint", "integer", "bigint", "numeric", "real", "double precision"),
    "text": ("text", "character varying", "character", "citext", "name"),
    "bool": ("boolean",),
    "date": ("date", "timestamp without time zone", "timestamp with time zone"),
    "time": ("time without time zone", "time with time zone", "text", "character varying"),
    "timestamp": ("timestamp without time zone", "timestamp with time zone", "date"),
}
_SQL_TYPES = {"id": "bigint", "int": "integer", "text": "text", "bool": "boolean", "date": "date", "time": "time"}


@dataclass(frozen=True)
class FieldDef:
    """A field of an entity. `state`: the pipeline's own (a key), kept in etl unless the table has
    a column for it; `record`: a value of the source record the pipeline writes but never reads
    back (a team's name as the file spells it in a match)."""

    name: str
    kind: str
    state: bool = False
    record: bool = False


def _f(spec: str) -> FieldDef:
    name, kind, *flags = spec.split(":")
    return FieldDef(name, kind, "state" in flags, "record" in flags)


_STATS = ("points", "matches_won", "matches_lost", "matches_tied", "lines_won", "lines_lost", "lines_for")
_STATS += ("lines_ret", "sets_won", "sets_lost", "games_won", "games_lost")

FIELDS: dict[str, tuple[FieldDef, ...]] = {
    "leagues": tuple(map(_f, ("id:id", "code:text"))),
    "clubs": tuple(map(_f, ("id:id", "name:text", "name_key:text:state"))),
    "series": tuple(map(_f, ("id:id", "league_id:id", "name:text", "series_key:text:state", "league:text:record"))),
    "teams": tuple(
        map(
            _f,
            (
                "id:id",
                "league_id:id",
                "club_id:id",
                "series_id:id",
                "team_name:text",
                "is_active:bool",
                "team_key:text:state",
                "sub_team:text:state",
                "league:text:record",
                "series:text:record",
                "club:text:record",
            ),
        )
    ),
    "schedule": tuple(
        map(
            _f,
            (
                "id:id",
                "league_id:id",
                "series_id:id",
                "match_date:date",
                "match_time:time",
                "home_team_id:id",
                "away_team_id:id",
                "location:text",
                "home_team:text:record",
                "away_team:text:record",
                "series:text:record",
                "league:text:record",
            ),
        )
    ),
    "series_stats": tuple(
        map(
            _f,
            (
                "id:id",
                "league_id:id",
                "series_id:id",
                "team_id:id",
                *(f"{n}:int" for n in _STATS),
                "team:text:record",
                "series:text:record",
                "league:text:record",
            ),
        )
    ),
}
# The scraper's own names for fields (CONTRACT section 3), accepted in a mapping.
ALIASES = {
    **{n.replace("_", ".", 1): n for n in _STATS if n != "points"},
    "date": "match_date",
    "time": "match_time",
    "League": "league",
}
TIME_INSERTED = "time inserted"  # the time the row was inserted; never changed after
TIME_WRITTEN = "time written"  # the time the row was inserted or last updated
TIME_SOURCES = (TIME_INSERTED, TIME_WRITTEN)
# The values an app row keeps while it is the pipeline's: another process changing one of them
# (or re-using the id for another row) makes the row the app's again.
FINGERPRINT = {
    "clubs": ("name",),
    "series": ("league_id", "name"),
    "teams": ("league_id", "series_id", "team_name"),
    "schedule": ("league_id", "match_date"),
    "series_stats": ("league_id",),
}
# Fields the app's table may lack: the pipeline keeps them in etl.
LACKABLE = {"schedule": ("series_id",), "series_stats": ("series_id",)}


# --- The mapping file --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeagueLink(_Strict):
    """Series tied to leagues by a link table (older app states) instead of a column."""

    table: str
    series: str = "series_id"
    league: str = "league_id"


class Resolution(_Strict):
    """What target apply does about an app constraint the real data violates."""

    replace_with: list[str] | None = None
    drop: bool = False

    @model_validator(mode="after")
    def _one(self) -> Resolution:
        if (self.replace_with is None) == (not self.drop):
            raise ValueError("give either replace_with = [columns] or drop = true")
        return self


class EntityMap(_Strict):
    table: str
    columns: dict[str, str]
    lacks: list[str] = []
    triggers: list[str] = []
    adopt_if_equal: list[str] = []
    league_link: LeagueLink | None = None
    constraints: dict[str, Resolution] = {}

    @field_validator("columns")
    @classmethod
    def _sources(cls, columns: dict[str, str]) -> dict[str, str]:
        return {column: ALIASES.get(source, source) for column, source in columns.items()}


class TeamColumnDecl(_Strict):
    column: str = "team_id"
    author: str | None = None
    text: str | None = None
    league: str | None = None


class Memberships(_Strict):
    table: str
    user: str = "user_id"
    team: str = "team_id"
    primary: str | None = None


class KeyDecl(_Strict):
    columns: list[str]
    keep_first: list[str] = []  # "column [ASC|DESC]": which duplicate stays (then the lowest id)

    @field_validator("keep_first")
    @classmethod
    def _order(cls, terms: list[str]) -> list[str]:
        for term in terms:
            parts = term.split()
            if len(parts) not in (1, 2) or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
                raise ValueError(f"{term!r}: expected 'column', 'column ASC' or 'column DESC'")
        return terms


class ReferenceDecl(_Strict):
    column: str
    target: str


class UserData(_Strict):
    tables: list[str] = []
    memberships: Memberships | None = None
    personal: dict[str, list[str]] = {}
    team_columns: dict[str, TeamColumnDecl] = {}
    keys: dict[str, KeyDecl] = {}
    references: dict[str, list[ReferenceDecl]] = {}


class Mapping(_Strict):
    owner: Literal["pipeline", "app"]
    leagues: EntityMap
    clubs: EntityMap
    series: EntityMap
    teams: EntityMap
    schedule: EntityMap
    series_stats: EntityMap
    user_data: UserData = Field(default_factory=UserData)

    @model_validator(mode="after")
    def _fields(self) -> Mapping:
        problems = []
        for entity in ENTITIES:
            problems += _entity_problems(self, entity)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _entity_problems(mapping: Mapping, entity: str) -> list[str]:
    """What is wrong with one entity's section, each naming its key."""
    m: EntityMap = getattr(mapping, entity)
    fields = {f.name: f for f in FIELDS[entity]}
    out = []
    for column, source in m.columns.items():
        if source not in fields and source not in TIME_SOURCES:
            known = ", ".join([*fields, *TIME_SOURCES])
            out.append(f"[{entity}.columns] {column}: {source!r} is not a field of {entity} (fields: {known})")
    mapped = set(m.columns.values())
    if m.columns.get("id") != "id":
        out.append(f"[{entity}.columns] id: the table's id column must be mapped from 'id'")
    for name in m.lacks:
        if name not in LACKABLE.get(entity, ()):
            out.append(
                f"[{entity}] lacks: {name!r} cannot be lacking (only {', '.join(LACKABLE.get(entity, ())) or 'none'})"
            )
        elif name in mapped:
            out.append(f"[{entity}] lacks: {name!r} is also mapped to a column")
    if mapping.owner == "app" and m.lacks and entity not in ("schedule", "series_stats"):
        out.append(f"[{entity}] lacks: not allowed here")
    linked = entity == "series" and m.league_link is not None
    for f in fields.values():
        if f.state or f.record or f.name in mapped or f.name in m.lacks or (linked and f.name == "league_id"):
            continue
        out.append(f"[{entity}.columns]: no column is filled from {f.name!r} (map it, or list it under lacks)")
    if mapping.owner == "pipeline":
        missing = [f.name for f in fields.values() if f.state and f.name not in mapped]
        if missing or m.lacks:
            out.append(
                f"[{entity}]: a target the pipeline owns keeps every field in its tables "
                f"({', '.join(missing or m.lacks)})"
            )
    if m.league_link is not None and entity != "series":
        out.append(f"[{entity}] league_link: only series can be tied to leagues by a link table")
    for column in m.adopt_if_equal:
        if column not in m.columns:
            out.append(f"[{entity}] adopt_if_equal: {column!r} is not a mapped column")
    return out


def _explain(path: Path, exc: ValidationError) -> ConfigError:
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"])
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        message = message.removeprefix("Value error, ")
        problems.append(f"[{key}] {message}" if key else message)
    return ConfigError(f"target mapping {path}: " + "\n".join(problems))


# --- A loaded target ---------------------------------------------------------------------------


class Target:
    """A validated mapping: how each entity is read and written on this target."""

    def __init__(self, path: Path, mapping: Mapping, text: bytes, *, has_state: bool = True) -> None:
        self.path = path
        self.mapping = mapping
        self.text = text
        self.sha256 = hashlib.sha256(text).hexdigest()
        self.has_state = has_state

    def before_apply(self) -> Target:
        """This target as `target check` reads it before the pipeline's schema exists there: no
        row is the pipeline's yet."""
        return Target(self.path, self.mapping, self.text, has_state=False)

    def __repr__(self) -> str:
        return f"Target({self.path})"

    @property
    def owns_tables(self) -> bool:
        """Whether the pipeline created the data tables itself (CONTRACT section 4)."""
        return self.mapping.owner == "pipeline"

    def entity(self, entity: str) -> EntityMap:
        return getattr(self.mapping, entity)

    def table_name(self, entity: str) -> str:
        return self.entity(entity).table

    def table(self, entity: str) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.table_name(entity))

    def entity_of(self, table: str) -> str | None:
        """The entity whose rows live in this table of the target, if any."""
        return next((e for e in ENTITIES if self.table_name(e) == table), None)

    def column(self, entity: str, field: str) -> str | None:
        """The app column that holds a field (the first one filled from it), or None."""
        return next((c for c, s in self.entity(entity).columns.items() if s == field), None)

    def state(self, entity: str) -> sql.Identifier:
        return sql.Identifier(STATE_SCHEMA, f"state_{entity}")

    def kept(self, entity: str) -> tuple[str, ...]:
        """What etl.state_<entity> holds besides the id: the fingerprint, and the fields the
        app's table has no column for (keys, lacking fields)."""
        fields = FIELDS[entity]
        own = [
            f.name
            for f in fields
            if (f.state or f.name in self.entity(entity).lacks) and not self.column(entity, f.name)
        ]
        return tuple(dict.fromkeys([*FINGERPRINT.get(entity, ()), *own]))

    def tracked(self, entity: str) -> bool:
        """Whether the pipeline records which rows of this entity are its own (an app's table)."""
        return not self.owns_tables and entity in FINGERPRINT

    # --- against the database ---------------------------------------------------------------

    def verify(self, cur: Cursor) -> list[str]:
        """What the live database contradicts in the mapping, each naming its key (empty: none).
        Read-only; the first task and `target check` refuse a mapping with any."""
        from league_import import pgcatalog

        problems: list[str] = []
        for entity in ENTITIES:
            problems += self._verify_entity(cur, entity)
        u = self.mapping.user_data
        wanted: list[tuple[str, str, list[str]]] = []
        if u.memberships:
            wanted.append(("user_data.memberships", u.memberships.table, [u.memberships.user, u.memberships.team]))
        for table, d in u.team_columns.items():
            wanted.append(
                (f"user_data.team_columns.{table}", table, [c for c in (d.column, d.author, d.text, d.league) if c])
            )
        for table, k in u.keys.items():
            wanted.append((f"user_data.keys.{table}", table, [*k.columns, *(_order(t)[0] for t in k.keep_first)]))
        for table, refs in u.references.items():
            wanted.append((f"user_data.references.{table}", table, [r.column for r in refs]))
        for key, table, columns in wanted:
            if not pgcatalog.table_exists(cur, table, SCHEMA):
                problems.append(f"[{key}] table {SCHEMA}.{table} does not exist")
                continue
            have = {c.name for c in pgcatalog.column_facts(cur, table, SCHEMA)}
            problems += [f"[{key}] {SCHEMA}.{table} has no column {c}" for c in columns if c not in have]
        return problems

    def _verify_entity(self, cur: Cursor, entity: str) -> list[str]:
        from league_import import pgcatalog

        m = self.entity(entity)
        name = f"{SCHEMA}.{m.table}"
        if not pgcatalog.table_exists(cur, m.table, SCHEMA):
            return [f"[{entity}] table: {name} does not exist"]
        facts = {c.name: c for c in pgcatalog.column_facts(cur, m.table, SCHEMA)}
        kinds = {f.name: f.kind for f in FIELDS[entity]}
        out = []
        for column, source in m.columns.items():
            fact = facts.get(column)
            if fact is None:
                out.append(f"[{entity}.columns] {column}: {name} has no column {column}")
                continue
            kind = "timestamp" if source in TIME_SOURCES else kinds[source]
            if not fact.type.startswith(_KINDS[kind]):
                out.append(
                    f"[{entity}.columns] {column}: {name}.{column} is {fact.type}, "
                    f"which cannot hold {source!r} ({kind})"
                )
        required = [c for c in facts.values() if c.not_null and not c.defaulted and c.name not in m.columns]
        for c in required:
            out.append(f"[{entity}.columns]: {name}.{c.name} is NOT NULL without a default; map it from a field")
        if "id" in m.columns.values() and m.columns.get("id") in facts:
            if pgcatalog.sequence_of(cur, m.table, m.columns["id"], SCHEMA) is None:
                out.append(
                    f"[{entity}.columns] id: {name}.{m.columns['id']} has no sequence, so no new id can be drawn"
                )
        found = pgcatalog.triggers(cur, m.table, SCHEMA)
        for trigger in sorted(set(found) - set(m.triggers)):
            out.append(
                f"[{entity}] triggers: {name} has trigger {trigger}, which the mapping does not list (list it when "
                "it only keeps columns the pipeline does not write, such as updated_at)"
            )
        for trigger in sorted(set(m.triggers) - set(found)):
            out.append(f"[{entity}] triggers: {name} has no trigger {trigger}")
        if m.league_link is not None:
            link = m.league_link
            if not pgcatalog.table_exists(cur, link.table, SCHEMA):
                out.append(f"[{entity}.league_link] table: {SCHEMA}.{link.table} does not exist")
            else:
                have = {c.name for c in pgcatalog.column_facts(cur, link.table, SCHEMA)}
                for key, column in (("series", link.series), ("league", link.league)):
                    if column not in have:
                        out.append(f"[{entity}.league_link] {key}: {SCHEMA}.{link.table} has no column {column}")
        for constraint, resolution in m.constraints.items():
            missing = [c for c in resolution.replace_with or () if c not in facts]
            if missing:
                out.append(
                    f"[{entity}.constraints.{constraint}] replace_with: {name} has no column {', '.join(missing)}"
                )
        return out

    # --- reading --------------------------------------------------------------------------------

    def relation(self, entity: str) -> sql.Composable:
        """The entity's rows as a subquery: every field by its section 4 name (NULL where neither
        the table nor the pipeline keeps it), `owned` (whether the row is the pipeline's), and
        `inserted_at` (the insert time, where the table keeps one). The planner flattens it: a
        read costs what a read of the table itself costs."""
        m = self.entity(entity)
        t = sql.Identifier("t")
        select = []
        for f in FIELDS[entity]:
            column = self.column(entity, f.name)
            if column is not None:
                value = sql.Identifier("t", column)
            elif entity == "series" and f.name == "league_id" and m.league_link is not None:
                value = sql.Identifier("l", m.league_link.league)
            elif self.tracked(entity) and self.has_state and f.name in self.kept(entity):
                value = sql.Identifier("s", f.name)
            else:
                value = sql.SQL("NULL::{}").format(sql.SQL(_SQL_TYPES[f.kind]))
            select.append(sql.SQL("{} AS {}").format(value, sql.Identifier(f.name)))
        inserted = next((c for c, s in m.columns.items() if s == TIME_INSERTED), None)
        inserted_at = sql.Identifier("t", inserted) if inserted else sql.SQL("NULL::timestamptz")
        select.append(sql.SQL("{} AS inserted_at").format(inserted_at))
        joins = []
        if entity == "series" and m.league_link is not None:
            joins.append(
                sql.SQL("JOIN {} l ON l.{} = t.{}").format(
                    sql.Identifier(SCHEMA, m.league_link.table),
                    sql.Identifier(m.league_link.series),
                    sql.Identifier(self.column(entity, "id")),
                )
            )
        if self.tracked(entity) and not self.has_state:
            select.append(sql.SQL("false AS owned"))
        elif self.tracked(entity):
            same = [sql.SQL("s.id = t.{}").format(sql.Identifier(self.column(entity, "id")))]
            for name in FINGERPRINT[entity]:
                value = self._value(entity, name)
                same.append(sql.SQL("s.{} IS NOT DISTINCT FROM {}").format(sql.Identifier(name), value))
            joins.append(sql.SQL("LEFT JOIN {} s ON {}").format(self.state(entity), sql.SQL(" AND ").join(same)))
            select.append(sql.SQL("s.id IS NOT NULL AS owned"))
        else:
            select.append(sql.SQL("true AS owned"))
        return sql.SQL("(SELECT {} FROM {} {} {})").format(
            sql.SQL(", ").join(select), self.table(entity), t, sql.SQL(" ").join(joins)
        )

    def _value(self, entity: str, field: str) -> sql.Composable:
        """A field's value in the app row (alias t; l for a series' league link)."""
        m = self.entity(entity)
        if entity == "series" and field == "league_id" and m.league_link is not None:
            return sql.Identifier("l", m.league_link.league)
        return sql.Identifier("t", self.column(entity, field))

    @cached_property
    def parts(self) -> dict[str, sql.Composable]:
        """For the named statements: the relations {leagues}, {clubs}, {series}, {teams},
        {schedule}, {series_stats}; and the tables themselves as {teams_table}, ... (to lock
        rows), with their id columns as {teams_id}, ..."""
        parts = {entity: self.relation(entity) for entity in ENTITIES}
        parts |= {f"{entity}_table": self.table(entity) for entity in ENTITIES}
        parts |= {f"{entity}_id": sql.Identifier(self.column(entity, "id")) for entity in ENTITIES}
        return parts | self._memberships()

    def _memberships(self) -> dict[str, sql.Composable]:
        """{memberships}: who plays for which team (user_id, team_id, and the row's ref), with the
        table and team column it is read from; empty where the mapping names none."""
        m = self.mapping.user_data.memberships
        if m is None:
            return {
                "memberships": sql.SQL(
                    "(SELECT NULL::tid AS ref, NULL::bigint AS user_id, NULL::bigint AS team_id LIMIT 0)"
                ),
                "memberships_table": sql.Literal(None),
                "memberships_column": sql.Literal(None),
            }
        relation = sql.SQL("(SELECT m.ctid AS ref, m.{} AS user_id, m.{} AS team_id FROM {} m)").format(
            sql.Identifier(m.user), sql.Identifier(m.team), sql.Identifier(SCHEMA, m.table)
        )
        return {
            "memberships": relation,
            "memberships_table": sql.Literal(m.table),
            "memberships_column": sql.Literal(m.team),
        }

    def differs(self, entity: str, stored: str, new: str, fields: tuple[str, ...]) -> sql.Composable:
        """`(stored.f, ...) IS DISTINCT FROM (new.f, ...)` over `fields` and the record fields the
        target keeps (a team's name as a match spells it): what makes a stored row changed."""
        kept = [f.name for f in FIELDS[entity] if f.record and self.column(entity, f.name)]
        names = list(dict.fromkeys([*fields, *kept]))
        return sql.SQL("({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.Identifier(stored, n) for n in names),
            sql.SQL(", ").join(sql.Identifier(new, n) for n in names),
        )

    def adopt_match(self, entity: str, stored: str, new: str) -> sql.Composable:
        """The columns an existing row must also agree on to be adopted (adopt_if_equal), compared
        with spacing and case set aside."""
        terms = [sql.SQL("true")]
        for column in self.entity(entity).adopt_if_equal:
            field = self.entity(entity).columns[column]
            norm = "lower(regexp_replace(btrim(coalesce({}::text, '')), '\\s+', ' ', 'g'))"
            terms.append(
                sql.SQL("{} = {}").format(
                    sql.SQL(norm).format(sql.Identifier(stored, field)),
                    sql.SQL(norm).format(sql.Identifier(new, field)),
                )
            )
        return sql.SQL(" AND ").join(terms)

    # --- writing --------------------------------------------------------------------------------

    def _source(self, source: str, alias: str = "r") -> sql.Composable:
        if source in TIME_SOURCES:
            return sql.SQL("now()")
        return sql.Identifier(alias, source)

    def next_id(self, cur: Cursor, entity: str) -> sql.Composable:
        """A new id for a row of the entity: the next value of its id column's sequence."""
        from league_import.pgcatalog import sequence_of

        column = self.column(entity, "id")
        sequence = sequence_of(cur, self.table_name(entity), column, SCHEMA)
        if sequence is None:
            raise ConfigError(
                f"target {self.path}: [{entity}.columns] id: {self.table_name(entity)}.{column} has no sequence "
                "or identity, so the pipeline cannot issue ids for new rows"
            )
        return sql.SQL("nextval({}::regclass)").format(sql.Literal(sequence))

    def insert(self, cur: Cursor, entity: str, rows: sql.Composable, params: dict | None = None) -> int:
        """Insert the rows of the query `rows` (the entity's fields as columns, ids included),
        filling every mapped column, and record them as the pipeline's, in one statement (an id
        drawn in `rows` is drawn once). Returns the rows inserted."""
        m = self.entity(entity)
        columns = list(m.columns)
        app = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} r").format(
            self.table(entity),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(self._source(m.columns[c]) for c in columns),
            sql.SQL("r") if self._beside(entity) else sql.SQL("({})").format(rows),
        )
        if not self._beside(entity):
            return cur.execute(app, params).rowcount
        ctes = [sql.SQL("r AS MATERIALIZED ({})").format(rows), sql.SQL("a AS ({} RETURNING 1)").format(app)]
        if entity == "series" and m.league_link is not None:
            # Series tied to leagues by a link table are shared: a league's new series whose name a
            # series row has already is linked to that row, not written twice.
            link = m.league_link
            name, ident = sql.Identifier(self.column("series", "name")), sql.Identifier(self.column("series", "id"))
            ctes[0] = sql.SQL(
                "r AS MATERIALIZED (SELECT coalesce(x.{}, n.id) AS id, x.{} IS NOT NULL AS shared, n.league_id, "
                "n.league, n.name, n.series_key FROM ({}) n LEFT JOIN {} x ON x.{} = n.name)"
            ).format(ident, ident, rows, self.table("series"), name)
            app = sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM r WHERE NOT r.shared").format(
                self.table(entity),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(self._source(m.columns[c]) for c in columns),
            )
            ctes[1] = sql.SQL("a AS ({} RETURNING 1)").format(app)
            ctes.append(
                sql.SQL("l AS (INSERT INTO {} ({}, {}) SELECT r.id, r.league_id FROM r)").format(
                    sql.Identifier(SCHEMA, link.table), sql.Identifier(link.series), sql.Identifier(link.league)
                )
            )
        if self.tracked(entity):
            ctes.append(sql.SQL("s AS ({})").format(self._record_state(entity, sql.SQL("r"))))
        statement = sql.SQL("WITH {} SELECT count(*) FROM a").format(sql.SQL(", ").join(ctes))
        return cur.execute(statement, params).fetchone()[0]

    def _beside(self, entity: str) -> bool:
        """Whether an insert writes more than the entity's table (its state, a league link)."""
        return self.tracked(entity) or (entity == "series" and self.entity(entity).league_link is not None)

    def _record_state(self, entity: str, rows: sql.Composable) -> sql.Composable:
        kept = self.kept(entity)
        conflict = "(id, league_id)" if entity == "series" else "(id)"
        return sql.SQL(
            "INSERT INTO {state} ({names}) SELECT {values} FROM {rows} r ON CONFLICT "
            + conflict
            + " DO UPDATE SET {set}"
        ).format(
            state=self.state(entity),
            names=sql.SQL(", ").join(map(sql.Identifier, ("id", *kept))),
            values=sql.SQL(", ").join(sql.Identifier("r", n) for n in ("id", *kept)),
            rows=rows,
            set=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in kept),
        )

    def adopt(self, cur: Cursor, entity: str, rows: sql.Composable, params: dict | None = None) -> int:
        """Record rows of the target as the pipeline's (the query `rows` gives their id and every
        field etl.state_<entity> keeps, as the row holds them now). A no-op where every row is
        the pipeline's."""
        if not self.tracked(entity):
            return 0
        return cur.execute(self._record_state(entity, sql.SQL("({})").format(rows)), params).rowcount

    def update(
        self, cur: Cursor, entity: str, rows: sql.Composable, fields: tuple[str, ...], params: dict | None = None
    ) -> int:
        """Set `fields` of the rows the query `rows` names by id (with those fields; a series'
        league_id too), in the columns filled from them, the columns of the time of the
        write, and the pipeline's state. Returns the rows updated."""
        m = self.entity(entity)
        changed = [c for c, s in m.columns.items() if s in fields and s != "id"]
        count = 0
        if changed:
            stamped = [c for c, s in m.columns.items() if s == TIME_WRITTEN]
            sets = [sql.SQL("{} = {}").format(sql.Identifier(c), self._source(m.columns[c])) for c in changed + stamped]
            statement = sql.SQL("UPDATE {} t SET {} FROM ({}) r WHERE t.{} = r.id").format(
                self.table(entity), sql.SQL(", ").join(sets), rows, sql.Identifier(self.column(entity, "id"))
            )
            count = cur.execute(statement, params).rowcount
        kept = [f for f in self.kept(entity) if f in fields]
        if self.tracked(entity) and kept:
            same = sql.SQL("s.id = r.id AND s.league_id = r.league_id" if entity == "series" else "s.id = r.id")
            state = sql.SQL("UPDATE {} s SET {} FROM ({}) r WHERE {}").format(
                self.state(entity),
                sql.SQL(", ").join(sql.SQL("{0} = r.{0}").format(sql.Identifier(f)) for f in kept),
                rows,
                same,
            )
            done = cur.execute(state, params).rowcount
            count = count or done
        return count

    def delete(self, cur: Cursor, entity: str, ids: sql.Composable, run_id: str, reason: str, params=None) -> int:
        """Archive and remove the rows whose ids the query `ids` gives; their state goes with
        them. Returns the rows removed; the archived copies must match."""
        from league_import.archive import archive_rows
        from league_import.errors import CountMismatchError

        params = params or {}
        ids = sql.SQL("({})").format(ids)
        predicate = sql.SQL("t.{} IN {}").format(sql.Identifier(self.column(entity, "id")), ids)
        m = self.entity(entity)
        if entity == "series" and m.league_link is not None:
            link = m.league_link
            link_predicate = sql.SQL("t.{} IN {}").format(sql.Identifier(link.series), ids)
            archive_rows(cur, link.table, link_predicate, params, run_id, reason)
            cur.execute(
                sql.SQL("DELETE FROM {} t WHERE {}").format(sql.Identifier(SCHEMA, link.table), link_predicate), params
            )
        archived = archive_rows(cur, self.table_name(entity), predicate, params, run_id, reason)
        removed = cur.execute(
            sql.SQL("DELETE FROM {} t WHERE {}").format(self.table(entity), predicate), params
        ).rowcount
        if archived != removed:
            raise CountMismatchError(f"{self.table_name(entity)}: {removed} rows removed but {archived} archived")
        if self.tracked(entity):
            cur.execute(sql.SQL("DELETE FROM {} WHERE id IN {}").format(self.state(entity), ids), params)
        return removed

    def forget(self, cur: Cursor, entity: str, ids: sql.Composable, params: dict | None = None) -> int:
        """The rows whose ids the query `ids` gives are no longer the pipeline's (they stay, as the
        app's rows). Returns how many were."""
        if not self.tracked(entity):
            return 0
        statement = sql.SQL("DELETE FROM {} WHERE id IN ({})").format(self.state(entity), ids)
        return cur.execute(statement, params).rowcount

    def forget_stale(self, cur: Cursor) -> dict[str, int]:
        """Drop the pipeline's state of rows that are gone or no longer what it wrote (changed by
        another process, or an id re-used): those rows are not the pipeline's any more."""
        out = {}
        for entity in ENTITIES:
            if not self.tracked(entity):
                continue
            rel = self.relation(entity)
            key = sql.SQL("(x.id, x.league_id) = (s.id, s.league_id)") if entity == "series" else sql.SQL("x.id = s.id")
            statement = sql.SQL(
                "DELETE FROM {state} s WHERE NOT EXISTS (SELECT 1 FROM {rel} x WHERE {key} AND x.owned)"
            ).format(state=self.state(entity), rel=rel, key=key)
            out[entity] = cur.execute(statement).rowcount
        return out

    # --- the user data --------------------------------------------------------------------------

    @property
    def user_tables(self) -> tuple[str, ...]:
        """Tables of user data named by the mapping (tables with a foreign key to teams are found)."""
        u = self.mapping.user_data
        named = [*u.tables, *u.team_columns, *u.keys, *(u.memberships.table,) * bool(u.memberships)]
        return tuple(dict.fromkeys(named))

    @property
    def etl_tables(self) -> tuple[str, ...]:
        return tuple(self.table_name(e) for e in ENTITIES)

    def declared_team_columns(self) -> list[TeamColumn]:
        return [
            TeamColumn(table, d.column, d.author, d.text, d.league)
            for table, d in self.mapping.user_data.team_columns.items()
        ]

    def is_personal(self, table: str, column: str) -> bool:
        return column in self.mapping.user_data.personal.get(table, ())

    def natural_keys(self) -> tuple[NaturalKey, ...]:
        """The keys deduplicate keeps unique, in dependency order: on a target the pipeline owns,
        its data tables' keys (league_import.catalog), then the user tables' keys of the mapping."""
        user = tuple(
            NaturalKey(table, tuple(k.columns), tuple(_order(term) for term in k.keep_first))
            for table, k in self.mapping.user_data.keys.items()
        )
        return (ETL_KEYS if self.owns_tables else ()) + user

    def natural_key(self, table: str) -> NaturalKey | None:
        return next((k for k in self.natural_keys() if k.table == table), None)

    def references(self) -> tuple[Reference, ...]:
        """The foreign keys the pipeline relies on: its own tables' (where it owns them), then
        the user tables' of the mapping."""
        user = tuple(
            Reference(table, r.column, r.target)
            for table, refs in self.mapping.user_data.references.items()
            for r in refs
        )
        return (ETL_REFERENCES if self.owns_tables else ()) + user


def _order(term: str) -> tuple[str, str]:
    parts = term.split()
    return parts[0], (parts[1].upper() if len(parts) > 1 else "ASC")


# --- Which target ------------------------------------------------------------------------------

_active: ContextVar[Target | None] = ContextVar("league_import_target", default=None)
_loaded: dict[tuple[str, float], Target] = {}


def load(path: str | Path) -> Target:
    """A mapping file, parsed and checked as a whole: one error naming every wrong key."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"target mapping {path}: cannot be read ({exc.strerror})") from None
    key = (str(path.resolve()), path.stat().st_mtime)
    if key in _loaded:
        return _loaded[key]
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"target mapping {path}: not TOML ({exc})") from None
    try:
        mapping = Mapping(**raw)
    except ValidationError as exc:
        raise _explain(path, exc) from None
    target = _loaded[key] = Target(path, mapping, text)
    return target


def configured(variable: str | None = None) -> Target:
    """The target of this process: the Airflow Variable league_import_target (when given), else
    LEAGUE_IMPORT_TARGET, else CONTRACT section 4's own schema."""
    for value in (variable, os.environ.get(TARGET_ENV)):
        if value not in (None, "", "None"):
            return load(value)
    return load(DEFAULT_MAPPING)


def current() -> Target:
    """The target the steps ask: the one made active (a task, a command), else the configured one."""
    return _active.get() or configured()


@contextmanager
def active(target: Target) -> Iterator[Target]:
    token = _active.set(target)
    try:
        yield target
    finally:
        _active.reset(token)
