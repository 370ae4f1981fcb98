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
