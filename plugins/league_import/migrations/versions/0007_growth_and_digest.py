"""Growth a person answers, and personal values digested with a key of this installation's own.

- etl.growth_alarms: each growth warning or error of a health check, asked of a person; "expected"
  makes that night's count the table's baseline (who and when recorded), "not expected" keeps it.
- etl.digest_key and etl.personal_digest(text): a report names a personal value (an email in a
  duplicated key) only by HMAC-SHA256 under a random key made here, never stored elsewhere; an
  unsalted md5 could be reversed from a list of candidate addresses. The pads (the key XOR
  0x36 and 0x5c) are stored, so that SQL computes the HMAC with sha256() alone (no extension).
  Reports written before this revision lose their md5 digests.

Revision ID: 0007_growth_and_digest
Revises: 0006_target_state
Create Date: 2026-12-07
"""

from __future__ import annotations

import secrets

from alembic import op

revision = "0007_growth_and_digest"
down_revision = "0006_target_state"
branch_labels = None
depends_on = None

BLOCK = 64  # SHA-256's block size: an HMAC key is padded to it

UPGRADE = r"""
CREATE TABLE etl.growth_alarms (
    id         bigserial PRIMARY KEY,
    run_id     text NOT NULL,
    subject    text NOT NULL,
    status     text NOT NULL CHECK (status IN ('warn', 'error')),
    row_count  bigint NOT NULL,
    baseline   double precision NOT NULL,
    written    bigint NOT NULL DEFAULT 0,
    ratio      double precision NOT NULL,
    answer     text CHECK (answer IN ('expected', 'not expected', 'superseded')),
    decided_by text,
    decided_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, subject)
);
CREATE INDEX growth_alarms_open ON etl.growth_alarms (subject) WHERE answer IS NULL;

CREATE TABLE etl.digest_key (
    id         integer PRIMARY KEY CHECK (id = 1),
    inner_pad  bytea NOT NULL,
    outer_pad  bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION etl.personal_digest(value text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT 'hmac:' || left(encode(sha256(k.outer_pad || sha256(k.inner_pad || convert_to(value, 'UTF8'))), 'hex'), 16)
    FROM etl.digest_key k WHERE k.id = 1
$$;

UPDATE etl.runs SET report = regexp_replace(report::text, '"md5:[0-9a-f]+"', '"(digest removed)"', 'g')::jsonb
WHERE position('"md5:' IN report::text) > 0;
"""


def upgrade() -> None:
    key = secrets.token_bytes(BLOCK)
    bind = op.get_bind()
    bind.exec_driver_sql(UPGRADE)
    bind.exec_driver_sql(
        "INSERT INTO etl.digest_key (id, inner_pad, outer_pad) VALUES (1, %(inner)s, %(outer)s)",
        {"inner": bytes(b ^ 0x36 for b in key), "outer": bytes(b ^ 0x5C for b in key)},
    )


def downgrade() -> None:
    raise NotImplementedError("restore the database from a backup to go back")
