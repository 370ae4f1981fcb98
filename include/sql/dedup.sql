-- Deduplication on a natural key, one transaction per table (league_import.dedup).
-- Templates: {table}, {key} (column list), {ref} (id, or ctid for tables without one) and
-- {order} are identifiers composed with psycopg.sql; values are bound parameters.
-- GROUP BY and DISTINCT ON treat NULLs as equal, matching UNIQUE NULLS NOT DISTINCT.

-- name: lock_table
-- Writers wait until the table is clean and its constraint is in place; readers go on, except
-- during a truncate-and-reload, whose TRUNCATE holds an exclusive lock until the commit.
LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE;

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
SELECT copies, to_jsonb(k) - 'keep_ref' - 'copies' AS key
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
-- For a referenced table: each removed id and the surviving id of its key.
CREATE TEMP TABLE id_map ON COMMIT DROP AS
SELECT t.id AS dup_id, k.keep_ref AS keep_id
FROM {table} t
JOIN dedup_keep k ON ({key_match})
WHERE t.id <> k.keep_ref;

-- name: repoint_collisions
-- Referencing rows that would duplicate their table's natural key once moved to the survivor:
-- a row that does not move, else the first in physical order, keeps the key.
CREATE TEMP TABLE dedup_collisions ON COMMIT DROP AS
SELECT ref FROM (
    SELECT r.ctid AS ref, m.dup_id IS NOT NULL AS moves,
           row_number() OVER (PARTITION BY {mapped_key} ORDER BY m.dup_id IS NOT NULL, r.ctid) AS rn
    FROM {referencing} r
    LEFT JOIN id_map m ON m.dup_id = r.{column}
    -- only rows that move, or already sit on a surviving id, can share a key
    WHERE r.{column} IN (SELECT dup_id FROM id_map UNION ALL SELECT keep_id FROM id_map)
) ranked
WHERE moves AND rn > 1;

-- name: repoint
UPDATE {referencing} r
SET {column} = m.keep_id
FROM id_map m
WHERE r.{column} = m.dup_id;

-- name: save_survivors
CREATE TEMP TABLE dedup_survivors ON COMMIT DROP AS
SELECT t.* FROM {table} t JOIN dedup_keep k ON k.keep_ref = t.{ref};

-- name: truncate_reload
-- Only for tables nothing references: cheaper than deleting most of a large table.
TRUNCATE {table};
INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM dedup_survivors;

-- name: count_rows
SELECT count(*) FROM {table};

-- name: delete_collisions
DELETE FROM {referencing} WHERE ctid IN (SELECT ref FROM dedup_collisions);

-- name: survivor_orphans
-- Survivors whose reference points at no row: put back after a TRUNCATE, the foreign key would
-- refuse them (their repair comes later, in restore_mapping), so the table is not truncated.
SELECT count(*) FROM dedup_survivors s
WHERE s.{column} IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.{target_column} = s.{column});

-- name: delete_not_kept
DELETE FROM {table} t
WHERE {predicate};
