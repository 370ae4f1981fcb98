"""Read once: the parsed rows of a run, staged in the database; and what each run read.

validate_constraints parses and checks the files once and stages their rows here, in one
partition per run (UNLOGGED: scratch, rebuilt by a retry); later tasks load from the stage,
never from the files, and the partitions are dropped when the run ends. etl.source_files keeps,
per run, what was read (size, modification time, content hash, the schedule's date range) for
the freshness checks.

Revision ID: 0003_stage_and_sources
Revises: 0002_team_history
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003_stage_and_sources"
down_revision = "0002_team_history"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE etl.stage_teams (
    run_id       text NOT NULL,
    league_code  text NOT NULL,
    series_key   text NOT NULL,
    series_label text NOT NULL,
    club         text NOT NULL,
    club_key     text NOT NULL,
    team_key     text NOT NULL,
    sub_team     text NOT NULL,
    team_name    text NOT NULL,
    in_stats     boolean NOT NULL,
    in_schedule  boolean NOT NULL
) PARTITION BY LIST (run_id);

CREATE TABLE etl.stage_schedule (
    run_id      text NOT NULL,
    league_code text NOT NULL,
    series_key  text NOT NULL,
    match_date  date NOT NULL,
    match_time  time,
    home_key    text,
    away_key    text,
    location    text
) PARTITION BY LIST (run_id);

CREATE TABLE etl.stage_stats (
    run_id       text NOT NULL,
    league_code  text NOT NULL,
    series_key   text NOT NULL,
    team_key     text NOT NULL,
    points       integer NOT NULL,
    matches_won  integer NOT NULL,
    matches_lost integer NOT NULL,
    matches_tied integer NOT NULL,
    lines_won    integer NOT NULL,
    lines_lost   integer NOT NULL,
    lines_for    integer NOT NULL,
    lines_ret    integer NOT NULL,
    sets_won     integer NOT NULL,
    sets_lost    integer NOT NULL,
    games_won    integer NOT NULL,
    games_lost   integer NOT NULL
) PARTITION BY LIST (run_id);

-- The runs that have a stage, and the suffix of its partitions' names.
CREATE TABLE etl.stages (
    run_id     text PRIMARY KEY,
    suffix     text NOT NULL UNIQUE,
    leagues    text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE etl.source_files (
    run_id      text NOT NULL,
    league_code text NOT NULL,
    file_name   text NOT NULL,
    path        text NOT NULL,
    size_bytes  bigint NOT NULL,
    modified_at timestamptz NOT NULL,
    sha256      text NOT NULL,
    records     integer NOT NULL,
    first_date  date,
    last_date   date,
    read_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, league_code, file_name)
);
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)


def downgrade() -> None:
    op.get_bind().exec_driver_sql(
        "DROP TABLE etl.stage_teams, etl.stage_schedule, etl.stage_stats, etl.stages, etl.source_files"
    )
