"""The constraints the pipeline relies on (CONTRACT section 4), declared once.

validate_constraints checks and adds them, deduplicate enforces the natural keys, the health
check reports on them, and orphan repair finds team references through them (a declared
reference counts even where the database has no foreign key, as the old system's polls had none).
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


USER_TABLES = ("users", "team_memberships", "polls", "captain_messages", "practice_times")
ETL_TABLES = ("leagues", "clubs", "series", "teams", "schedule", "series_stats")
# Columns that name or reach a person: never written to a report or a log (samples show a digest).
PERSONAL_COLUMNS = {"users": ("email", "first_name", "last_name")}


@dataclass(frozen=True)
class TeamColumn:
    """A user-owned column holding a team id, and what restore_mapping may read to repair it.

    `author` names the user who wrote the row (content and user-context strategies narrow to
    that user's clubs and teams); `text` is read for series references; `league` narrows the
    candidate league. A membership has no author: its user is the row's subject, and attaching
    it to another of the user's teams would invent a membership.
    """

    table: str
    column: str = "team_id"
    author: str | None = None
    text: str | None = None
    league: str | None = None


TEAM_COLUMNS: tuple[TeamColumn, ...] = (
    TeamColumn("team_memberships"),
    TeamColumn("polls", author="created_by", text="question"),
    TeamColumn("captain_messages", author="captain_user_id", text="message"),
    TeamColumn("practice_times", league="league_id"),
)

# In dependency order: a referenced table is deduplicated before the tables that point at it,
# so references re-pointed to a survivor are deduplicated in their own table afterwards.
NATURAL_KEYS: tuple[NaturalKey, ...] = (
    NaturalKey("leagues", ("code",)),
    NaturalKey("clubs", ("name_key",)),
    NaturalKey("series", ("league_id", "series_key")),
    NaturalKey("teams", ("league_id", "series_id", "team_key")),
    NaturalKey("users", ("email",)),
    NaturalKey("schedule", ("league_id", "series_id", "match_date", "home_team_id", "away_team_id")),
    NaturalKey("series_stats", ("league_id", "series_id", "team_id")),
    NaturalKey("team_memberships", ("user_id", "team_id"), keep_order=(("is_primary", "DESC"),)),
    NaturalKey("practice_times", ("team_id", "day_of_week", "start_time", "end_time", "location")),
)

REFERENCES: tuple[Reference, ...] = (
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
    Reference("team_memberships", "user_id", "users"),
    Reference("team_memberships", "team_id", "teams"),
    Reference("polls", "team_id", "teams"),
    Reference("polls", "created_by", "users"),
    Reference("captain_messages", "team_id", "teams"),
    Reference("captain_messages", "captain_user_id", "users"),
    Reference("practice_times", "team_id", "teams"),
    Reference("practice_times", "league_id", "leagues"),
)


def natural_key(table: str) -> NaturalKey | None:
    return next((k for k in NATURAL_KEYS if k.table == table), None)


def is_personal(table: str, column: str) -> bool:
    return column in PERSONAL_COLUMNS.get(table, ())
