"""Team identity that holds: key map epochs and merges, aliases, suspected renames, decisions.

- etl.team_key_map keeps one row per meaning of an id (epoch): a re-used id gets a new epoch,
  its first meaning is never rewritten; merged ids map to their survivor (merged_into).
- etl.team_aliases: spellings tied to a team id by a merge or a person, read by the upsert.
- etl.rename_suspects: a team about to be created and one about to be deactivated that look
  alike, waiting for a person's decision.
- etl.quarantine: any number of rows of one user can wait; an entry is never overwritten while
  it waits (unique only among unresolved entries).
- etl.decisions: every decision a person made, with who and when.
- etl.settings: the identity rules' version the stored keys were made with.

Revision ID: 0002_team_history
Revises: 0001_baseline
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0002_team_history"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE etl.settings (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE etl.team_key_map
    ADD COLUMN epoch        integer NOT NULL DEFAULT 0,
    ADD COLUMN evidence_run text,
    ADD COLUMN settled_run  text,
    ADD COLUMN merged_into  bigint,
    ADD COLUMN merged_run   text,
    ADD COLUMN merged_at    timestamptz;
ALTER TABLE etl.team_key_map DROP CONSTRAINT team_key_map_pkey;
ALTER TABLE etl.team_key_map ADD PRIMARY KEY (team_id, epoch);
COMMENT ON COLUMN etl.team_key_map.epoch IS
    '0: the team the id was first seen with; 1, 2...: another team the id was re-used for';

CREATE TABLE etl.team_aliases (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    league_code  text NOT NULL,
    series_key   text NOT NULL,
    series_label text NOT NULL,
    spelling     text NOT NULL,
    team_key     text NOT NULL,
    team_id      bigint NOT NULL,
    source       text NOT NULL CHECK (source IN ('merge', 'decision', 'operator')),
    created_by   text,
    run_id       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT team_aliases_key UNIQUE (league_code, series_key, team_key)
);

CREATE TABLE etl.rename_suspects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('rename', 'split')),
    league_code text NOT NULL,
    series_key  text NOT NULL,
    old_team_id bigint NOT NULL,
    new_team_id bigint NOT NULL,
    old_name    text NOT NULL,
    new_name    text NOT NULL,
    score       numeric NOT NULL,
    user_rows   jsonb NOT NULL DEFAULT '{}'::jsonb,
    run_id      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'same', 'different', 'gone')),
    decided_by  text,
    decided_at  timestamptz,
    CONSTRAINT rename_suspects_pair UNIQUE (old_team_id, new_team_id)
);
CREATE INDEX rename_suspects_pending ON etl.rename_suspects (status) WHERE status = 'pending';

ALTER TABLE etl.quarantine DROP CONSTRAINT quarantine_table_row_key;
CREATE UNIQUE INDEX quarantine_waiting_row ON etl.quarantine (table_name, column_name, row_id)
    WHERE resolved_at IS NULL;
ALTER TABLE etl.quarantine
    ADD COLUMN resolution text,
    ADD COLUMN resolved_by text;

CREATE TABLE etl.decisions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item        text NOT NULL,
    choice      text NOT NULL,
    outcome     text NOT NULL,
    decided_by  text NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    via         text NOT NULL,
    dag_run_id  text
);
"""


# Keys stored by the first release were made by its rules (version 1): the next run re-keys. Only
# on a target the pipeline owns: an app's teams hold no keys of the pipeline's.
FIRST_RELEASE_KEYS = """
INSERT INTO etl.settings (name, value)
SELECT 'identity_key_version', '1' WHERE EXISTS (SELECT 1 FROM public.teams);
"""


def upgrade() -> None:
    op.get_bind().exec_driver_sql(UPGRADE)
    if op.get_context().config.attributes.get("owns_tables", True):
        op.get_bind().exec_driver_sql(FIRST_RELEASE_KEYS)


def downgrade() -> None:
    raise NotImplementedError("restore the database from a backup to go back to the first release")
