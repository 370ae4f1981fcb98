-- The history of team ids (league_import.history): the key map, re-used ids, aliases, merges
-- and the moving of references from one team id to another.
-- etl.team_key_map has one row per meaning of an id: epoch 0 is the team the id was first seen
-- with; another process re-using the id for another team adds epoch 1, 2... Rows are appended,
-- their keys never rewritten (only re-expressed when the identity rules change: rekey).
-- Templates: {table}, {column}, {referencing}, {mapped_key}, {order}, {keep_ref} are composed with psycopg.sql.

-- name: live_teams
-- Every live team of the pipeline's with its natural key, for the statements below.
DROP TABLE IF EXISTS live_teams;
CREATE TEMP TABLE live_teams ON COMMIT DROP AS
SELECT t.id AS team_id, l.code AS league_code, s.series_key, s.name AS series_name,
       c.name AS club_name, c.name_key AS club_key, t.team_key, t.sub_team, t.team_name
FROM {teams} t
JOIN {leagues} l ON l.id = t.league_id
JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id
JOIN {clubs} c ON c.id = t.club_id
WHERE t.owned AND s.series_key IS NOT NULL AND c.name_key IS NOT NULL;
ANALYZE live_teams;

-- name: current_meanings
-- The latest meaning of every id the key map knows.
DROP TABLE IF EXISTS current_meanings;
CREATE TEMP TABLE current_meanings ON COMMIT DROP AS
SELECT DISTINCT ON (team_id) *
FROM etl.team_key_map
ORDER BY team_id, epoch DESC;
CREATE INDEX ON current_meanings (team_id);
ANALYZE current_meanings;

-- name: add_new_ids
-- Ids never seen before get their first meaning.
INSERT INTO etl.team_key_map
    (team_id, epoch, league_code, series_key, series_name, club_name, club_key, team_key, sub_team,
     team_name, names, first_seen_run, last_seen_run)
SELECT v.team_id, 0, v.league_code, v.series_key, v.series_name, v.club_name, v.club_key, v.team_key,
       v.sub_team, v.team_name, ARRAY[v.team_name], %(run_id)s, %(run_id)s
FROM live_teams v
WHERE NOT EXISTS (SELECT 1 FROM current_meanings k WHERE k.team_id = v.team_id);

-- name: add_spellings
-- A new spelling of the same team (same natural key) is added to its names; nothing else moves.
UPDATE etl.team_key_map k
SET names = k.names || v.team_name, team_name = v.team_name, last_seen_run = %(run_id)s, last_seen_at = now()
FROM live_teams v
JOIN current_meanings c ON c.team_id = v.team_id
WHERE k.team_id = c.team_id AND k.epoch = c.epoch
  AND (c.league_code, c.series_key, c.team_key) = (v.league_code, v.series_key, v.team_key)
  AND NOT v.team_name = ANY (k.names);

-- name: record_reused_ids
-- An id whose live team is not the team the key map holds for it was re-used by another process
-- (TRUNCATE ... RESTART IDENTITY, a sequence reset): its new meaning is appended as a new epoch,
-- with the backup that shows which rows belonged to the old one (the last successful run's).
INSERT INTO etl.team_key_map
    (team_id, epoch, league_code, series_key, series_name, club_name, club_key, team_key, sub_team,
     team_name, names, first_seen_run, last_seen_run, evidence_run)
SELECT v.team_id, c.epoch + 1, v.league_code, v.series_key, v.series_name, v.club_name, v.club_key,
       v.team_key, v.sub_team, v.team_name, ARRAY[v.team_name], %(run_id)s, %(run_id)s,
       (SELECT r.run_id FROM etl.runs r
        WHERE r.status = 'success' AND NOT r.dry_run AND r.run_id <> %(run_id)s
          AND EXISTS (SELECT 1 FROM etl.backup_counts b WHERE b.run_id = r.run_id)
        ORDER BY r.finished_at DESC LIMIT 1)
FROM live_teams v
JOIN current_meanings c ON c.team_id = v.team_id
WHERE (c.league_code, c.series_key, c.team_key) IS DISTINCT FROM (v.league_code, v.series_key, v.team_key)
  AND c.merged_into IS NULL
RETURNING team_id, epoch, evidence_run;

-- name: unsettled_reuses
-- Re-used ids whose rows have not all been put back on their teams yet (a retry finds them again).
SELECT n.team_id, n.epoch, n.evidence_run,
       o.league_code || '/' || o.series_key || '/' || o.team_key AS old_key,
       n.league_code || '/' || n.series_key || '/' || n.team_key AS new_key
FROM etl.team_key_map n
JOIN etl.team_key_map o ON o.team_id = n.team_id AND o.epoch = n.epoch - 1
WHERE n.epoch > 0 AND n.settled_run IS NULL
ORDER BY n.team_id;

-- name: settle_reuses
UPDATE etl.team_key_map SET settled_run = %(run_id)s
WHERE epoch > 0 AND settled_run IS NULL AND team_id = ANY (%(team_ids)s);

-- name: lock_pair
-- The two teams of a merge, locked.
SELECT x.{teams_id} FROM {teams_table} x WHERE x.{teams_id} IN (%(survivor)s, %(merged)s) FOR UPDATE;

-- name: merge_pair
-- The two teams of a merge (the pipeline's: another team of the target is never merged).
SELECT t.id, t.is_active, t.team_name, t.team_key, t.club_id, t.series_id, t.league_id, l.code, s.series_key, s.name
FROM {teams} t
JOIN {leagues} l ON l.id = t.league_id
JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id
WHERE t.id IN (%(survivor)s, %(merged)s) AND t.owned;

-- name: survivors_take_over
-- A survivor left inactive takes the name and club of an active merged team (its current
-- spelling) and is active again; its id and key never change.
SELECT s.id, s.league_id, m.team_name, m.club_id, true AS is_active
FROM (
    SELECT DISTINCT ON (i.keep_id) i.keep_id, x.team_name, x.club_id
    FROM id_map i JOIN {teams} x ON x.id = i.dup_id
    WHERE x.is_active
    ORDER BY i.keep_id, x.id DESC
) m
JOIN {teams} s ON s.id = m.keep_id AND NOT s.is_active

-- name: aliases_of_merged
-- The merged team's spelling now names its survivor.
INSERT INTO etl.team_aliases AS a
    (league_code, series_key, series_label, spelling, team_key, team_id, source, created_by, run_id)
SELECT l.code, s.series_key, s.name, x.team_name, x.team_key, i.keep_id, 'merge', %(by)s, %(run_id)s
FROM id_map i
JOIN {teams} x ON x.id = i.dup_id
JOIN {leagues} l ON l.id = x.league_id
JOIN {series} s ON s.id = x.series_id AND s.league_id = x.league_id
ON CONFLICT (league_code, series_key, team_key) DO UPDATE
SET team_id = EXCLUDED.team_id, source = 'merge', run_id = EXCLUDED.run_id, created_at = now();

-- name: repoint_aliases_many
UPDATE etl.team_aliases a SET team_id = i.keep_id FROM id_map i WHERE a.team_id = i.dup_id;

-- name: map_merged_many
-- A merged id maps to its survivor for good; ids merged into it earlier follow it.
UPDATE etl.team_key_map k
SET merged_into = i.keep_id, merged_run = %(run_id)s, merged_at = now()
FROM id_map i
WHERE k.team_id = i.dup_id OR k.merged_into = i.dup_id;

-- name: merged_teams
SELECT dup_id FROM id_map

-- name: id_map
CREATE TEMP TABLE IF NOT EXISTS id_map (dup_id bigint PRIMARY KEY, keep_id bigint NOT NULL) ON COMMIT DROP;
TRUNCATE id_map;

-- name: map_one
INSERT INTO id_map (dup_id, keep_id) VALUES (%(merged)s, %(survivor)s);

-- name: repoint_collisions
-- Referencing rows that would repeat their table's natural key once moved to the survivor: one
-- row per key stays, chosen by the table's dedup rule ({order}: e.g. the primary membership),
-- then a row that does not move; the others are archived and removed. Only keys a moving row
-- takes: rows that repeat a key among themselves, none of them moving, are their own table's
-- duplicates (its deduplicate's, not this move's).
CREATE TEMP TABLE IF NOT EXISTS repoint_collisions (ref tid) ON COMMIT DROP;
TRUNCATE repoint_collisions;
INSERT INTO repoint_collisions
SELECT ref FROM (
    SELECT r.ctid AS ref,
           row_number() OVER (PARTITION BY {mapped_key} ORDER BY {order}, m.dup_id IS NOT NULL, r.ctid) AS rn,
           count(m.dup_id) OVER (PARTITION BY {mapped_key}) AS moving
    FROM {referencing} r
    LEFT JOIN id_map m ON m.dup_id = r.{column}
    -- only rows that move, or already sit on a surviving id, can share a key
    WHERE r.{column} IN (SELECT dup_id FROM id_map UNION ALL SELECT keep_id FROM id_map)
) ranked
WHERE rn > 1 AND moving > 0;

-- name: collided
t.ctid IN (SELECT ref FROM repoint_collisions)

-- name: delete_collisions
DELETE FROM {referencing} WHERE ctid IN (SELECT ref FROM repoint_collisions);

-- name: repoint
UPDATE {referencing} r
SET {column} = m.keep_id
FROM id_map m
WHERE r.{column} = m.dup_id;

-- name: add_alias
-- A spelling tied to a team id by a merge or a person; the same spelling again moves it.
INSERT INTO etl.team_aliases AS a
    (league_code, series_key, series_label, spelling, team_key, team_id, source, created_by, run_id)
VALUES (%(league_code)s, %(series_key)s, %(series_label)s, %(spelling)s, %(team_key)s, %(team_id)s,
        %(source)s, %(created_by)s, %(run_id)s)
ON CONFLICT (league_code, series_key, team_key) DO UPDATE
SET team_id = EXCLUDED.team_id, spelling = EXCLUDED.spelling, series_label = EXCLUDED.series_label,
    source = EXCLUDED.source, created_by = EXCLUDED.created_by, run_id = EXCLUDED.run_id, created_at = now()
RETURNING id;

-- name: series_teams
SELECT t.id, t.team_key
FROM {teams} t
JOIN {leagues} l ON l.id = t.league_id
JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id
WHERE l.code = %(league_code)s AND s.series_key = %(series_key)s AND t.owned;

-- name: list_aliases
SELECT a.id, a.league_code, a.series_key, a.spelling, a.team_id, t.team_name, a.source, a.created_by, a.created_at
FROM etl.team_aliases a
LEFT JOIN {teams} t ON t.id = a.team_id
WHERE %(league_code)s::text IS NULL OR a.league_code = %(league_code)s
ORDER BY a.league_code, a.series_key, a.spelling;

-- name: remove_alias
DELETE FROM etl.team_aliases WHERE id = %(id)s RETURNING league_code, series_key, spelling, team_id;

-- name: has_teams
SELECT EXISTS (SELECT 1 FROM {teams} t WHERE t.owned);

-- name: key_version
SELECT value FROM etl.settings WHERE name = 'identity_key_version';

-- name: set_key_version
INSERT INTO etl.settings (name, value) VALUES ('identity_key_version', %(version)s)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now();

-- name: rekey_inputs
-- What keys are computed from: each club's name, each series' label, each team's spelling (the
-- pipeline's rows: an app's other rows hold no key of the pipeline's).
SELECT 'club', c.id, 0, c.name, NULL::text FROM {clubs} c WHERE c.owned
UNION ALL
SELECT DISTINCT 'series', s.id, 0, s.name, NULL FROM {series} s WHERE s.owned
UNION ALL
SELECT 'team', t.id, 0, t.team_name, s.name FROM {teams} t
JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id
WHERE t.owned
UNION ALL
SELECT 'key_map', k.team_id, k.epoch, k.team_name, k.series_name FROM etl.team_key_map k
UNION ALL
SELECT 'alias', a.id, 0, a.spelling, a.series_label FROM etl.team_aliases a;

-- name: create_rekeyed
CREATE TEMP TABLE rekeyed (
    kind text, id bigint, epoch integer, new_key text, new_series_key text, new_club_key text, sub_team text
) ON COMMIT DROP;

-- name: park_team_keys
-- Every team on a temporary key first: merging series and re-keying then never meet a key that
-- another team still holds (two teams may even swap keys).
SELECT t.id, '#rekey#' || t.id AS team_key FROM {teams} t WHERE t.owned AND left(t.team_key, 7) <> '#rekey#'

-- name: merge_clubs
-- Clubs whose names now give one key: the lowest id stays and its teams move to it.
CREATE TEMP TABLE club_map ON COMMIT DROP AS
SELECT dup_id, keep_id FROM (
    SELECT c.id AS dup_id, min(c.id) OVER (PARTITION BY r.new_key) AS keep_id
    FROM {clubs} c JOIN rekeyed r ON r.kind = 'club' AND r.id = c.id
    WHERE c.owned
) x
WHERE dup_id <> keep_id;

-- name: club_moves
-- Teams of a merged club, to its survivor.
SELECT t.id, m.keep_id AS club_id FROM {teams} t JOIN club_map m ON t.club_id = m.dup_id

-- name: merged_clubs
SELECT dup_id FROM club_map

-- name: parked_clubs
SELECT c.id, '#rekey#' || c.id AS name_key
FROM {clubs} c JOIN rekeyed r ON r.kind = 'club' AND r.id = c.id
WHERE c.owned AND c.name_key IS DISTINCT FROM r.new_key

-- name: rekeyed_clubs
SELECT c.id, r.new_key AS name_key
FROM {clubs} c JOIN rekeyed r ON r.kind = 'club' AND r.id = c.id
WHERE c.owned AND left(c.name_key, 7) = '#rekey#'

-- name: merge_series
-- Series of one league whose labels now give one key: the lowest id stays; teams, schedule and
-- stats move to it (a team belongs to one series, so no match or stats row can collide here).
CREATE TEMP TABLE series_map ON COMMIT DROP AS
SELECT DISTINCT dup_id, keep_id FROM (
    SELECT s.id AS dup_id, min(s.id) OVER (PARTITION BY s.league_id, r.new_key) AS keep_id
    FROM {series} s JOIN rekeyed r ON r.kind = 'series' AND r.id = s.id
    WHERE s.owned
) x
WHERE dup_id <> keep_id;

-- name: series_moves_teams
SELECT t.id, t.league_id, m.keep_id AS series_id FROM {teams} t JOIN series_map m ON t.series_id = m.dup_id

-- name: series_moves_schedule
SELECT t.id, m.keep_id AS series_id FROM {schedule} t JOIN series_map m ON t.series_id = m.dup_id

-- name: series_moves_series_stats
SELECT t.id, m.keep_id AS series_id FROM {series_stats} t JOIN series_map m ON t.series_id = m.dup_id

-- name: merged_series
SELECT dup_id FROM series_map

-- name: parked_series
SELECT DISTINCT s.id, s.league_id, '#rekey#' || s.id AS series_key
FROM {series} s JOIN rekeyed r ON r.kind = 'series' AND r.id = s.id
WHERE s.owned AND s.series_key IS DISTINCT FROM r.new_key

-- name: rekeyed_series
SELECT DISTINCT s.id, s.league_id, r.new_key AS series_key
FROM {series} s JOIN rekeyed r ON r.kind = 'series' AND r.id = s.id
WHERE s.owned AND left(s.series_key, 7) = '#rekey#'

-- name: team_collisions
-- Teams that will share (league, series, key) under the new rules: the older id survives (the
-- one user data was made against); each other one is merged into it.
WITH series_keys AS (
    SELECT DISTINCT s.id, r.new_key FROM {series} s JOIN rekeyed r ON r.kind = 'series' AND r.id = s.id
)
SELECT merged, survivor FROM (
    SELECT t.id AS merged,
           first_value(t.id) OVER (PARTITION BY t.league_id, sk.new_key, r.new_key ORDER BY t.inserted_at, t.id)
               AS survivor
    FROM {teams} t
    JOIN rekeyed r ON r.kind = 'team' AND r.id = t.id
    JOIN series_keys sk ON sk.id = t.series_id
    WHERE t.owned
) x
WHERE merged <> survivor
ORDER BY survivor, merged;

-- name: rekey_teams
SELECT t.id, t.league_id, r.new_key AS team_key, r.sub_team
FROM {teams} t JOIN rekeyed r ON r.kind = 'team' AND r.id = t.id
WHERE t.owned

-- name: rekey_key_map
UPDATE etl.team_key_map k
SET team_key = r.new_key, series_key = r.new_series_key, club_key = r.new_club_key, sub_team = r.sub_team
FROM rekeyed r
WHERE r.kind = 'key_map' AND r.id = k.team_id AND r.epoch = k.epoch
  AND (k.team_key, k.series_key, k.club_key, k.sub_team)
      IS DISTINCT FROM (r.new_key, r.new_series_key, r.new_club_key, r.sub_team);

-- name: rekey_aliases
-- An alias whose spelling now gives the same key as an older alias is no longer needed.
DELETE FROM etl.team_aliases a USING rekeyed r
WHERE r.kind = 'alias' AND r.id = a.id
  AND EXISTS (SELECT 1 FROM etl.team_aliases b JOIN rekeyed rb ON rb.kind = 'alias' AND rb.id = b.id
              WHERE b.id < a.id AND b.league_code = a.league_code
                AND (rb.new_series_key, rb.new_key) = (r.new_series_key, r.new_key));
UPDATE etl.team_aliases a SET team_key = '#rekey#' || a.id
FROM rekeyed r WHERE r.kind = 'alias' AND r.id = a.id
  AND (a.team_key, a.series_key) IS DISTINCT FROM (r.new_key, r.new_series_key);
UPDATE etl.team_aliases a SET team_key = r.new_key, series_key = r.new_series_key
FROM rekeyed r WHERE r.kind = 'alias' AND r.id = a.id AND left(a.team_key, 7) = '#rekey#';
