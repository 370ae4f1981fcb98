-- Deduplication on a natural key, one transaction per table (league_import.dedup).
-- Templates: {table}, {key} (column list), {ref} (id, or ctid for tables without one) and
-- {order} are identifiers composed with psycopg.sql; values are bound parameters.
-- GROUP BY and DISTINCT ON treat NULLs as equal, matching UNIQUE NULLS NOT DISTINCT.

-- name: deadlock_timeout_ms
SELECT (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000)::integer;

-- name: lock_exclusive
-- A table this one points at, or that points at it: readers go on, writers wait for the commit
-- (so no row of it is locked by another transaction while the step works).
LOCK TABLE {table} IN EXCLUSIVE MODE;

-- name: lock_table
-- The table itself, for the whole step, in the mode its last statements need (TRUNCATE, ADD
-- CONSTRAINT): taken at once, never raised from a weaker one (a raise is how deadlocks start).
LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;

-- name: keep_lowest
-- One survivor per key, the lowest id (ctid where there is none): a hash aggregate, one pass.
CREATE TEMP TABLE dedup_keep ON COMMIT DROP AS
SELECT min({ref}) AS keep_ref, count(*) AS copies, {key}
FROM {table}
GROUP BY {key};

-- name: keep_ordered
-- One survivor per key, first in a stated order (then physical order).
CREATE TEMP TABLE dedup_keep ON COMMIT DROP AS
SELECT DISTINCT ON ({key}) {ref} AS keep_ref, count(*) OVER (PARTITION BY {key}) AS copies, {key}
FROM {table}
ORDER BY {key}, {order}, ctid;

-- name: keep_summary
SELECT count(*), coalesce(sum(copies), 0)::bigint FROM dedup_keep;

-- name: sample_keys
-- {key_json}: the key's columns, personal ones as a digest (never an email in a report).
SELECT copies, {key_json} AS key
FROM dedup_keep k
WHERE copies > 1
ORDER BY copies DESC, keep_ref
LIMIT %(limit)s;

-- name: not_kept
-- The predicate for rows to remove (alias t).
NOT EXISTS (SELECT 1 FROM dedup_keep k WHERE k.keep_ref = t.{ref})

-- name: keep_list
SELECT array_agg(keep_ref::text) FROM dedup_keep;

-- name: not_in_keep_list
-- The same predicate when few rows survive: a hashed array test in the scan, no join, so the
-- scanned rows are copied as they are (the truncate-and-reload plan).
NOT (t.{ref} = ANY (%(keep)s::{ref_type}[]))

-- name: map_duplicates
-- For a referenced table: each removed id that a row points at, and the surviving id of its key
-- (a removed id nothing points at needs no mapping: most of an incident's millions).
CREATE TEMP TABLE IF NOT EXISTS id_map (dup_id bigint PRIMARY KEY, keep_id bigint NOT NULL) ON COMMIT DROP;
TRUNCATE id_map;
INSERT INTO id_map (dup_id, keep_id)
SELECT t.id, k.keep_ref
FROM {table} t
JOIN dedup_keep k ON ({key_match})
WHERE t.id <> k.keep_ref AND t.id IN ({referenced});

-- name: save_survivors
CREATE TEMP TABLE dedup_survivors ON COMMIT DROP AS
SELECT t.* FROM {table} t JOIN dedup_keep k ON k.keep_ref = t.{ref};

-- name: set_lock_wait
SELECT set_config('lock_timeout', %(wait)s, true);

-- name: truncate_reload
-- Only for tables nothing references: cheaper than deleting most of a large table.
TRUNCATE {table};
INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM dedup_survivors;

-- name: analyze
ANALYZE {table};

-- name: count_rows
SELECT count(*) FROM {table};

-- name: survivor_orphans
-- Survivors whose reference points at no row: put back after a TRUNCATE, the foreign key would
-- refuse them (their repair comes later, in restore_mapping), so the table is not truncated.
SELECT count(*) FROM dedup_survivors s
WHERE s.{column} IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.{target_column} = s.{column});

-- name: delete_not_kept
DELETE FROM {table} t
WHERE {predicate};

-- name: create_index
-- A pointing column's passing index: dropped again before the step commits (dedup's doc).
CREATE INDEX {index} ON {table} ({column});

-- name: drop_index
DROP INDEX {index};
