-- etl_archive.<table>: every row the pipeline removed, with all its columns, run_id and reason.
-- Templates: {table} and {archive} are identifiers composed by league_import.archive.

-- name: live_columns
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;

-- name: create_archive
CREATE SCHEMA IF NOT EXISTS etl_archive;
CREATE TABLE IF NOT EXISTS {archive} (LIKE {table});

-- name: archive_rows
-- The predicate selects the rows to copy (alias t); ids and values are kept as they were.
INSERT INTO {archive} ({columns}, run_id, reason)
SELECT {t_columns}, %(run_id)s, %(reason)s
FROM {table} AS t
WHERE {predicate};
