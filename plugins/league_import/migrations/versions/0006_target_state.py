"""The pipeline's state on an app's database, and the changes made to a target.

- etl.state_<entity>: on a target whose tables the app defines (league_import.target), one row
  per row of that table that the pipeline wrote or adopted: the values it was written with (a
  row another process changed since is no longer the pipeline's), its keys, and the fields the
  app's table has no column for (a match's series). Empty on CONTRACT section 4's own schema,
  where the keys are columns and every row is the pipeline's.
- etl.target_changes: every change `league-import target apply` made to the target, with who
  made it, when, and from which mapping.
- the stage keeps what the files spell (a match's team names as written, the record a team was
  first read from), for the target's own columns and for errors.
- etl.backup_teams holds the teams as the pipeline reads them (the same columns on any target),
  not a copy of the target's own table.

Revision ID: 0006_target_state
Revises: 0005_review_links
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0006_target_state"
down_revision = "0005_review_links"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE etl.state_clubs (
    id       bigint PRIMARY KEY,
    name     text,
    name_key text NOT NULL
);
CREATE INDEX state_clubs_key ON etl.state_clubs (name_key);

CREATE TABLE etl.state_series (
    id         bigint NOT NULL,
    league_id  bigint NOT NULL,
    name       text,
    series_key text NOT NULL,
    PRIMARY KEY (id, league_id)
);
CREATE INDEX state_series_key ON etl.state_series (league_id, series_key);

CREATE TABLE etl.state_teams (
    id         bigint PRIMARY KEY,
    league_id  bigint,
    series_id  bigint,
    team_name  text,
    team_key   text NOT NULL,
    sub_team   text NOT NULL DEFAULT ''
);
CREATE INDEX state_teams_key ON etl.state_teams (league_id, series_id, team_key);

CREATE TABLE etl.state_schedule (
    id         bigint PRIMARY KEY,
    league_id  bigint,
    match_date date,
    series_id  bigint
);

CREATE TABLE etl.state_series_stats (
    id        bigint PRIMARY KEY,
    league_id bigint
);

CREATE TABLE etl.target_changes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change         text NOT NULL,
    statement      text NOT NULL,
    mapping        text NOT NULL,
    mapping_sha256 text NOT NULL,
    applied_by     text NOT NULL,
    applied_at     timestamptz NOT NULL DEFAULT now()
);

-- What the files spell, for the target's own columns (a match's team names as written) and for
-- errors naming the record a team was first read from.
ALTER TABLE etl.stage_teams ADD COLUMN seen_in text;
ALTER TABLE etl.stage_schedule ADD COLUMN series_label text, ADD COLUMN home_name text, ADD COLUMN away_name text;
ALTER TABLE etl.stage_stats ADD COLUMN series_label text, ADD COLUMN team_name text;

CREATE TABLE etl.backup_teams_v2 (
    run_id    text NOT NULL,
    id        bigint NOT NULL,
    league_id bigint,
    club_id   bigint,
    series_id bigint,
    team_name text,
    team_key  text,
    sub_team  text,
    is_active boolean
);
"""

# Backups made on a target the pipeline owns keep their rows (an app's teams were never backed up
# before this revision).
COPY_BACKUPS = r"""
INSERT INTO etl.backup_teams_v2 (run_id, id, league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
SELECT run_id, id, league_id, club_id, series_id, team_name, team_key, sub_team, is_active FROM etl.backup_teams;
"""

SWAP = r"""
DROP TABLE etl.backup_teams;
ALTER TABLE etl.backup_teams_v2 RENAME TO backup_teams;
CREATE INDEX backup_teams_run_id ON etl.backup_teams (run_id);
"""


def upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(UPGRADE)
    if op.get_context().config.attributes.get("owns_tables", True):  # its backups are copies of its own teams
        bind.exec_driver_sql(COPY_BACKUPS)
    bind.exec_driver_sql(SWAP)


def downgrade() -> None:
    raise NotImplementedError("restore the database from a backup to go back")
