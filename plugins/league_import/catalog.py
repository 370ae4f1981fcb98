"""The constraints the pipeline relies on, declared once.

validate_constraints checks and adds them, deduplicate enforces the natural keys, the health
check reports on them, and orphan repair finds team references through them (a declared
reference counts even where the database has no foreign key, as the old system's polls had none).

The keys and references among the data tables are declared here, for a target whose tables the
pipeline owns (CONTRACT section 4); those of the user tables come from the target's mapping
(league_import.target), as do the app's tables on an app's database. The functions below answer
for the current target.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NaturalKey:
    """One row per key. NULLs compare equal, as in UNIQUE NULLS NOT DISTINCT (PostgreSQL 15+):
    two practice sessions differing only by a NULL location are the same session."""

    table: str
    columns: tuple[str, ...]
    # Which duplicate survives: the lowest id, or these (column, direction) terms, then ctid.
    keep_order: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.table}_natural_key"


@dataclass(frozen=True)
class Reference:
    """A foreign key. References to teams are repaired by restore_mapping, so they are added
    NOT VALID before the repair (no new orphans can be written) and validated after it."""

    table: str
    column: str
    target: str
    target_column: str = "id"

    @property
    def name(self) -> str:
        return f"{self.table}_{self.column}_fkey"

    @property
    def to_teams(self) -> bool:
        return self.target == "teams"


@dataclass(frozen=True)
class TeamColumn:
    """A column holding a team id in a table restore_mapping repairs, and what it may read to
    decide a row: `author` names the user who wrote it (content and user-context strategies
    narrow to that user's clubs and teams); `text` is read for series references; `league`
    narrows the candidate league. A membership has no author: its user is the row's subject, and
    attaching it to another of the user's teams would invent a membership. `owned_by` names the
    entity whose rows the pipeline writes in the same table (an app's schedule): those are the
    upsert's, and only the others are repaired."""

    table: str
    column: str = "team_id"
    author: str | None = None
    text: str | None = None
    league: str | None = None
    owned_by: str | None = None


ETL_TABLES = ("leagues", "clubs", "series", "teams", "schedule", "series_stats")

# The data tables' natural keys, in dependency order: a referenced table is deduplicated before
# the tables that point at it, so references re-pointed to a survivor are deduplicated in their
# own table afterwards. The user tables' keys follow (the mapping's).
ETL_KEYS: tuple[NaturalKey, ...] = (
    NaturalKey("leagues", ("code",)),
    NaturalKey("clubs", ("name_key",)),
    NaturalKey("series", ("league_id", "series_key")),
    NaturalKey("teams", ("league_id", "series_id", "team_key")),
    NaturalKey("schedule", ("league_id", "series_id", "match_date", "home_team_id", "away_team_id")),
    NaturalKey("series_stats", ("league_id", "series_id", "team_id")),
)

ETL_REFERENCES: tuple[Reference, ...] = (
    Reference("series", "league_id", "leagues"),
    Reference("teams", "league_id", "leagues"),
    Reference("teams", "club_id", "clubs"),
    Reference("teams", "series_id", "series"),
    Reference("schedule", "league_id", "leagues"),
    Reference("schedule", "series_id", "series"),
    Reference("schedule", "home_team_id", "teams"),
    Reference("schedule", "away_team_id", "teams"),
    Reference("series_stats", "league_id", "leagues"),
    Reference("series_stats", "series_id", "series"),
    Reference("series_stats", "team_id", "teams"),
)


def natural_keys() -> tuple[NaturalKey, ...]:
    from league_import.target import current

    return current().natural_keys()


def references() -> tuple[Reference, ...]:
    from league_import.target import current

    return current().references()


def natural_key(table: str) -> NaturalKey | None:
    return next((k for k in natural_keys() if k.table == table), None)


def is_personal(table: str, column: str) -> bool:
    from league_import.target import current

    return current().is_personal(table, column)
