-- etl_archive.<table>: every row the pipeline removed, with all its columns, run_id and reason.
-- Templates: {table}, {archive}, {batch}, {columns}, {t_columns}, {predicate}, {run_id} and
-- {reason} are composed by league_import.archive with psycopg.sql.

-- name: any_rows
-- Whether any row matches, planned for all rows (a materialized CTE), not for the first one
-- (see league_import.archive.archive_rows); it still stops at the first match.
WITH candidates AS MATERIALIZED (SELECT 1 FROM {table} AS t WHERE {predicate})
SELECT EXISTS (SELECT 1 FROM candidates);

-- name: create_archive
-- Columns and types only: no NOT NULL, no default, so an archived row is never refused.
CREATE SCHEMA IF NOT EXISTS etl_archive;
CREATE TABLE IF NOT EXISTS {archive} AS SELECT * FROM {table} WITH NO DATA;

-- name: archive_rows
-- The predicate selects the rows to copy (alias t); ids and values are kept as they were.
INSERT INTO {archive} ({columns}, run_id, reason)
SELECT {t_columns}, %(run_id)s, %(reason)s
FROM {table} AS t
WHERE {predicate};

-- name: bulk_batch
-- A large batch as a table of its own: CREATE TABLE AS writes the rows as they are scanned
-- (SELECT *, so PostgreSQL need not rebuild them).
CREATE TABLE {batch} AS
SELECT *
FROM {table} AS t
WHERE {predicate};

-- name: bulk_batch_columns
-- run_id, reason and archived_at as defaults kept in the catalog: no row is rewritten. The
-- defaults are then dropped; the rows keep the values (PostgreSQL's stored "missing" values).
ALTER TABLE {batch}
    ADD COLUMN run_id text DEFAULT {run_id},
    ADD COLUMN reason text DEFAULT {reason},
    ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE {batch} ALTER COLUMN run_id DROP DEFAULT, ALTER COLUMN reason DROP DEFAULT;

-- name: attach_batch
-- Reading etl_archive.<table> includes the batch's rows (table inheritance).
ALTER TABLE {batch} INHERIT {archive};

-- The whole heap of a table as a batch (league_import.archive.archive_table): the table is
-- created anew beside it, the old one stripped of what the archive must not keep, renamed and
-- moved; then the new one takes the name and gets back every key, index and privilege.

-- name: create_like
-- Columns, defaults (a serial's nextval stays on its sequence), identity (a new sequence with
-- the same options), generated expressions, storage, compression and column comments.
CREATE TABLE {fresh} (LIKE {table}
    INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED INCLUDING STORAGE
    INCLUDING COMPRESSION INCLUDING COMMENTS);

-- name: drop_index
DROP INDEX {index};

-- name: alter_columns
-- {actions}: DROP IDENTITY, DROP EXPRESSION, DROP DEFAULT, DROP NOT NULL, composed per column.
ALTER TABLE {table} {actions};

-- name: disown_sequence
-- A serial's sequence stays where it is (the new table's default uses it) and changes owner.
ALTER SEQUENCE {sequence} OWNED BY NONE;

-- name: own_sequence
ALTER SEQUENCE {sequence} OWNED BY {column};

-- name: move_to_archive
-- Renamed first: etl_archive.<table> is the parent's name.
ALTER TABLE {table} RENAME TO {batch_name};
ALTER TABLE {renamed} SET SCHEMA etl_archive;

-- name: rename_table
ALTER TABLE {table} RENAME TO {name};

-- name: rename_sequence
ALTER SEQUENCE {sequence} RENAME TO {name};

-- name: sequence_state
SELECT last_value, is_called FROM {sequence};

-- name: set_sequence
-- The new identity sequence goes on from where the old one was (is_called false: that value is
-- the next one handed out, as after ALTER ... RESTART).
SELECT setval(%(sequence)s::regclass, %(last_value)s, %(is_called)s);

-- name: create_index
-- {definition}: the CREATE INDEX statement the catalog gave for the old table, naming it.
{definition};

-- name: grant
GRANT {privilege} ON {kind} {relation} TO {grantee} {option};

-- name: revoke
-- CASCADE: rights others were given through a grant option go with it.
REVOKE {privilege} ON {kind} {relation} FROM {grantee} CASCADE;

-- name: comment_table
COMMENT ON TABLE {table} IS {comment};
