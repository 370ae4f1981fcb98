-- restore_mapping (league_import.repair): every user-owned row whose team id does not exist, or
-- whose team id was re-used by another process for another team, is decided by the first
-- strategy that is certain, in this order, or quarantined:
--   key_map        the natural key its team had (the key map; for a re-used id, the meaning at
--                  the last good backup) now belongs to a live team, or its team was merged
--   restored_team  that team is known but gone: it is put back, inactive (under its own id when free)
--   content        the row's text names a series, and exactly one of the author's clubs' teams plays in it
--   user_context   no series named, and the author belongs to exactly one active team (in the row's league)
--   quarantine     anything else: listed in etl.quarantine, original archived, never guessed
-- Deciding is set-based over the session's temp table repair_orphans; the decisions are then
-- written in short batches (league_import.repair), each one transaction.
-- Templates: {table}, {column}, {row_id}, {quarantine_id}, {row_pk}, {author}, {text}, {league},
-- {match}, {mapped_key}, {order}, {predicate}, {group}, {columns}, {values} are composed with psycopg.sql.

-- name: create_orphans
DROP TABLE IF EXISTS repair_orphans, repair_mentions, row_moves, reuse_targets;
CREATE TEMP TABLE repair_orphans (
    n             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name    text NOT NULL,
    column_name   text NOT NULL,
    row_ref       tid NOT NULL,
    row_pk        bigint,
    row_id        text NOT NULL,
    quarantine_id text NOT NULL,
    old_team_id   bigint NOT NULL,
    reused        boolean NOT NULL DEFAULT false,
    old_epoch     integer,
    author_id     bigint,
    league_id     bigint,
    body          text,
    new_team_id   bigint,
    strategy      text,
    reason        text,
    candidates    jsonb,
    grp           text,
    batch         integer,
    applied       boolean NOT NULL DEFAULT false
);
CREATE TEMP TABLE row_moves (n bigint, row_ref tid, new_team_id bigint);
CREATE TEMP TABLE reuse_targets (
    team_id bigint PRIMARY KEY, prev_epoch integer, evidence_run text, reused_at timestamptz
);

-- name: add_reuse_target
INSERT INTO reuse_targets
SELECT %(team_id)s, %(prev_epoch)s, %(evidence_run)s,
       (SELECT k.first_seen_at FROM etl.team_key_map k WHERE k.team_id = %(team_id)s AND k.epoch = %(prev_epoch)s + 1);

-- name: collect_orphans
-- Rows whose team id exists nowhere.
INSERT INTO repair_orphans (table_name, column_name, row_ref, row_pk, row_id, quarantine_id, old_team_id,
                            author_id, league_id, body, grp)
SELECT %(table_name)s, %(column_name)s, t.ctid, {row_pk}, {row_id}, {quarantine_id}, t.{column},
       {author}, {league}, {text}, {group}
FROM {table} t
WHERE t.{column} IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM public.teams x WHERE x.id = t.{column});

-- name: collect_misplaced
-- Rows on a re-used id: those the last good backup shows on that id keep the meaning the id had
-- then (old_epoch); any other row on it has no such evidence and is decided by its content. A
-- row a repair moved onto the id since the re-use (a run killed midway) is already in place.
INSERT INTO repair_orphans (table_name, column_name, row_ref, row_pk, row_id, quarantine_id, old_team_id,
                            reused, old_epoch, author_id, league_id, body, grp)
SELECT %(table_name)s, %(column_name)s, t.ctid, {row_pk}, {row_id}, {quarantine_id}, t.{column},
       true, CASE WHEN b.row_id IS NOT NULL THEN u.prev_epoch END, {author}, {league}, {text}, {group}
FROM {table} t
JOIN reuse_targets u ON u.team_id = t.{column}
LEFT JOIN etl.backup_refs b
       ON b.run_id = u.evidence_run AND b.table_name = %(table_name)s AND b.column_name = %(column_name)s
      AND b.row_id = {row_id} AND b.team_id = t.{column}
WHERE NOT EXISTS (
    SELECT 1 FROM etl.repairs r
    WHERE r.table_name = %(table_name)s AND r.column_name = %(column_name)s AND r.row_id = {row_id}
      AND r.new_team_id = t.{column} AND r.decided_at >= u.reused_at
);

-- name: analyze_orphans
-- A temp table has no statistics: without them the planner takes 100,000 orphans for a few
-- hundred and joins them to the key map by nested loop (7 s instead of 0.15 s).
ANALYZE repair_orphans;

-- name: undecided
SELECT count(*) FROM repair_orphans WHERE strategy IS NULL;

-- name: decide_by_key_map
-- The meaning of the old id (for a re-used id: the one at the backup) names a live team, or the
-- id was merged into a survivor.
UPDATE repair_orphans o
SET new_team_id = coalesce(k.merged_into, t.id), strategy = 'key_map'
FROM etl.team_key_map k
LEFT JOIN public.leagues l ON l.code = k.league_code
LEFT JOIN public.series s ON s.league_id = l.id AND s.series_key = k.series_key
LEFT JOIN public.teams t ON t.league_id = l.id AND t.series_id = s.id AND t.team_key = k.team_key
WHERE o.strategy IS NULL
  AND k.team_id = o.old_team_id
  AND k.epoch = CASE WHEN o.reused THEN o.old_epoch
                     ELSE (SELECT max(m.epoch) FROM etl.team_key_map m WHERE m.team_id = o.old_team_id) END
  AND (k.merged_into IS NOT NULL AND EXISTS (SELECT 1 FROM public.teams x WHERE x.id = k.merged_into)
       OR t.id IS NOT NULL AND t.id <> o.old_team_id);

-- name: restore_known_teams
-- One team per natural key is put back, inactive: under the id the key map knows (the lowest of
-- its old ids) when that id is free, else (a re-used id) under a new id. Other old ids of the
-- same team then resolve through the key map to it.
CREATE TEMP TABLE repair_restore ON COMMIT DROP AS
SELECT DISTINCT ON (k.league_code, k.series_key, k.team_key)
       k.*, EXISTS (SELECT 1 FROM public.teams x WHERE x.id = k.team_id) AS id_taken
FROM repair_orphans o
JOIN etl.team_key_map k ON k.team_id = o.old_team_id
 AND k.epoch = CASE WHEN o.reused THEN o.old_epoch
                    ELSE (SELECT max(m.epoch) FROM etl.team_key_map m WHERE m.team_id = o.old_team_id) END
WHERE o.strategy IS NULL AND k.merged_into IS NULL
ORDER BY k.league_code, k.series_key, k.team_key, id_taken, k.team_id;
INSERT INTO public.leagues (code)
SELECT DISTINCT league_code FROM repair_restore r
WHERE NOT EXISTS (SELECT 1 FROM public.leagues l WHERE l.code = r.league_code);
INSERT INTO public.clubs (name, name_key)
SELECT min(club_name), club_key FROM repair_restore r
WHERE NOT EXISTS (SELECT 1 FROM public.clubs c WHERE c.name_key = r.club_key)
GROUP BY club_key;
INSERT INTO public.series (league_id, name, series_key)
SELECT l.id, min(r.series_name), r.series_key
FROM repair_restore r JOIN public.leagues l ON l.code = r.league_code
WHERE NOT EXISTS (SELECT 1 FROM public.series s WHERE s.league_id = l.id AND s.series_key = r.series_key)
GROUP BY l.id, r.series_key;
INSERT INTO public.teams (id, league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
OVERRIDING SYSTEM VALUE
SELECT r.team_id, l.id, c.id, s.id, r.team_name, r.team_key, r.sub_team, false
FROM repair_restore r
JOIN public.leagues l ON l.code = r.league_code
JOIN public.clubs c ON c.name_key = r.club_key
JOIN public.series s ON s.league_id = l.id AND s.series_key = r.series_key
WHERE NOT r.id_taken;
INSERT INTO public.teams (league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
SELECT l.id, c.id, s.id, r.team_name, r.team_key, r.sub_team, false
FROM repair_restore r
JOIN public.leagues l ON l.code = r.league_code
JOIN public.clubs c ON c.name_key = r.club_key
JOIN public.series s ON s.league_id = l.id AND s.series_key = r.series_key
WHERE r.id_taken;
UPDATE repair_orphans o
SET new_team_id = o.old_team_id, strategy = 'restored_team'
FROM repair_restore r
WHERE r.team_id = o.old_team_id AND NOT r.id_taken AND NOT o.reused AND o.strategy IS NULL;

-- name: advance_team_ids
-- A restored id was issued before; keep the identity sequence past it all the same.
SELECT setval(seq, top)
FROM (SELECT pg_get_serial_sequence('public.teams', 'id') AS seq, (SELECT max(id) FROM public.teams) AS top) x
WHERE seq IS NOT NULL AND top > coalesce(pg_sequence_last_value(seq::regclass), 0);

-- name: mention_inputs
-- Undecided rows with text, and what their league's series are called.
SELECT n, body, league_id FROM repair_orphans WHERE strategy IS NULL AND body IS NOT NULL;

-- name: series_names
SELECT s.league_id, s.series_key, s.name FROM public.series s;

-- name: create_mentions
CREATE TEMP TABLE repair_mentions (n bigint, series_key text) ON COMMIT DROP;

-- name: author_memberships
-- The authors' memberships as they will be once this run's decisions are written: a membership
-- on a re-used id, or an orphaned one, counts on the team decided for it, and not at all while
-- undecided (the id it sits on may name another team now).
DROP TABLE IF EXISTS author_memberships;
CREATE TEMP TABLE author_memberships ON COMMIT DROP AS
SELECT DISTINCT m.user_id, coalesce(o.new_team_id, m.team_id) AS team_id
FROM public.team_memberships m
LEFT JOIN repair_orphans o
       ON o.table_name = 'team_memberships' AND o.column_name = 'team_id'
      AND o.row_pk = m.user_id AND o.old_team_id = m.team_id
WHERE o.n IS NULL OR o.strategy IN ('key_map', 'restored_team');
ANALYZE author_memberships;

-- name: decide_by_content
-- Candidates: active teams in a named series, of a club and league the author plays for.
WITH author_clubs AS (
    SELECT DISTINCT m.user_id, t.club_id, t.league_id
    FROM author_memberships m
    JOIN public.teams t ON t.id = m.team_id
), candidates AS (
    SELECT o.n, count(DISTINCT t.id) AS k, min(t.id) AS team_id,
           jsonb_agg(DISTINCT t.id) AS seen
    FROM repair_orphans o
    JOIN repair_mentions r ON r.n = o.n
    JOIN public.series s ON s.series_key = r.series_key
    JOIN public.teams t ON t.series_id = s.id AND t.is_active
    JOIN author_clubs a ON a.user_id = o.author_id AND a.club_id = t.club_id AND a.league_id = t.league_id
    WHERE o.strategy IS NULL AND (o.league_id IS NULL OR t.league_id = o.league_id)
    GROUP BY o.n
), mentioned AS (
    SELECT n, jsonb_agg(DISTINCT series_key ORDER BY series_key) AS series FROM repair_mentions GROUP BY n
)
UPDATE repair_orphans o
SET new_team_id = CASE WHEN c.k = 1 THEN c.team_id END,
    strategy = CASE WHEN c.k = 1 THEN 'content' ELSE 'quarantine' END,
    reason = CASE
        WHEN c.k = 1 THEN NULL
        WHEN c.k > 1 THEN 'the series named fits ' || c.k || ' of the author''s teams'
        ELSE 'the series named fits none of the author''s teams'
    END,
    candidates = jsonb_build_object('series', m.series, 'teams', coalesce(c.seen, '[]'::jsonb))
FROM mentioned m
LEFT JOIN candidates c ON c.n = m.n
WHERE m.n = o.n AND o.strategy IS NULL;

-- name: decide_by_user_context
WITH author_teams AS (
    SELECT o.n, count(DISTINCT t.id) AS k, min(t.id) AS team_id, jsonb_agg(DISTINCT t.id) AS seen
    FROM repair_orphans o
    JOIN author_memberships m ON m.user_id = o.author_id
    JOIN public.teams t ON t.id = m.team_id AND t.is_active
    WHERE o.strategy IS NULL AND (o.league_id IS NULL OR t.league_id = o.league_id)
    GROUP BY o.n
)
UPDATE repair_orphans o
SET new_team_id = CASE WHEN a.k = 1 THEN a.team_id END,
    strategy = CASE WHEN a.k = 1 THEN 'user_context' END,
    reason = CASE WHEN a.k > 1 THEN 'the author belongs to ' || a.k || ' active teams' END,
    candidates = jsonb_build_object('teams', a.seen)
FROM author_teams a
WHERE a.n = o.n AND o.strategy IS NULL;

-- name: quarantine_rest
UPDATE repair_orphans
SET strategy = 'quarantine',
    reason = coalesce(reason, CASE
        WHEN reused AND old_epoch IS NULL
            THEN 'on a team id another process re-used, written after the last good backup'
        WHEN author_id IS NULL THEN 'old team id unknown to the key map, and the row has no author to decide by'
        ELSE 'old team id unknown to the key map, and the author belongs to no active team'
    END),
    candidates = coalesce(candidates, '{}'::jsonb)
WHERE strategy IS NULL;

-- name: no_op_decisions
-- A row decided back onto the id it is on (its own team restored under it) needs no write.
UPDATE repair_orphans SET applied = true
WHERE strategy <> 'quarantine' AND new_team_id = old_team_id;

-- name: decision_counts
-- How many rows each strategy took, per team column.
SELECT table_name, column_name, strategy, count(*)
FROM repair_orphans
GROUP BY table_name, column_name, strategy;

-- name: assign_batches
-- Batches of about %(size)s rows of one column, by their order of collection. Rows of one group
-- (the same natural key but for the team: one user's memberships, one practice slot) share a
-- batch: on re-used ids they may trade places, which one batch does without a false duplicate.
WITH numbered AS (
    SELECT n, grp, row_number() OVER (ORDER BY n) AS rn
    FROM repair_orphans
    WHERE table_name = %(table_name)s AND column_name = %(column_name)s AND NOT applied
      AND strategy = ANY (%(strategies)s)
), grouped AS (
    SELECT n, (min(rn) OVER (PARTITION BY coalesce(grp, n::text)) - 1) / %(size)s AS batch FROM numbered
)
UPDATE repair_orphans o SET batch = g.batch FROM grouped g WHERE o.n = g.n
RETURNING o.batch;

-- name: clear_batch
TRUNCATE row_moves;

-- name: batch_rows
-- The batch's rows as they are now: still on the team id they were collected on.
INSERT INTO row_moves (n, row_ref, new_team_id)
SELECT o.n, t.ctid, o.new_team_id
FROM repair_orphans o
JOIN {table} t ON {match}
WHERE o.batch = %(batch)s AND o.table_name = %(table_name)s AND o.column_name = %(column_name)s
  AND NOT o.applied AND o.strategy = ANY (%(strategies)s) AND t.{column} = o.old_team_id;

-- name: move_collisions
-- Rows that would repeat their table's natural key once moved: one row per key stays, chosen by
-- the dedup rule ({order}: the primary membership, else the lowest id), then a row that does not
-- move; the others are archived as duplicates and removed.
CREATE TEMP TABLE IF NOT EXISTS move_collisions (ref tid) ON COMMIT DROP;
TRUNCATE move_collisions;
INSERT INTO move_collisions
SELECT ref FROM (
    SELECT r.ctid AS ref,
           row_number() OVER (PARTITION BY {mapped_key} ORDER BY {order}, m.row_ref IS NOT NULL, r.ctid) AS rn
    FROM {table} r
    LEFT JOIN row_moves m ON m.row_ref = r.ctid
    WHERE r.ctid IN (SELECT row_ref FROM row_moves)
       OR r.{column} IN (SELECT new_team_id FROM row_moves)
) ranked
WHERE rn > 1;

-- name: collided
t.ctid IN (SELECT ref FROM move_collisions)

-- name: delete_collided
WITH gone AS (DELETE FROM {table} t WHERE t.ctid IN (SELECT ref FROM move_collisions) RETURNING t.ctid)
DELETE FROM row_moves m USING gone g WHERE m.row_ref = g.ctid RETURNING m.n;

-- name: swapping_rows
-- Rows of the batch whose new key another row of the batch still holds (it moves away, as on
-- re-used ids): an UPDATE checks a unique key row by row, so these are taken out and put back
-- once the others moved, in the same transaction. Their copies wait in move_swaps (ids and every
-- value kept, only the team changes). Only tables whose key holds the team come here
-- (memberships, practice times): no row of another table points at theirs.
DROP TABLE IF EXISTS move_swaps;
CREATE TEMP TABLE move_swaps ON COMMIT DROP AS
SELECT m.new_team_id AS repair_team_id, m.n AS repair_n, t.*
FROM {table} t
JOIN row_moves m ON m.row_ref = t.ctid
JOIN repair_orphans o ON o.n = m.n
WHERE EXISTS (SELECT 1 FROM row_moves m2 JOIN repair_orphans o2 ON o2.n = m2.n
              WHERE m2.n <> m.n AND o2.grp = o.grp AND o2.old_team_id = m.new_team_id);
DELETE FROM {table} t USING row_moves m WHERE t.ctid = m.row_ref AND m.n IN (SELECT repair_n FROM move_swaps);
DELETE FROM row_moves WHERE n IN (SELECT repair_n FROM move_swaps);

-- name: swapped_rows_back
INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE
SELECT {values} FROM move_swaps t;
UPDATE repair_orphans o SET applied = true FROM move_swaps s WHERE o.n = s.repair_n;

-- name: move_rows
WITH moved AS (
    UPDATE {table} t SET {column} = m.new_team_id
    FROM row_moves m
    WHERE t.ctid = m.row_ref
    RETURNING m.n
)
UPDATE repair_orphans o SET applied = true FROM moved WHERE o.n = moved.n;

-- name: mark_applied
UPDATE repair_orphans SET applied = true WHERE n = ANY (%(ns)s);

-- name: quarantined_predicate
t.ctid IN (SELECT row_ref FROM row_moves)

-- name: detach_quarantined
WITH detached AS (
    UPDATE {table} t SET {column} = NULL
    FROM row_moves m WHERE t.ctid = m.row_ref
    RETURNING m.n
)
UPDATE repair_orphans o SET applied = true FROM detached d WHERE o.n = d.n;

-- name: remove_quarantined
WITH removed AS (
    DELETE FROM {table} t USING row_moves m WHERE t.ctid = m.row_ref RETURNING m.n
)
UPDATE repair_orphans o SET applied = true FROM removed r WHERE o.n = r.n;

-- name: record_quarantine
-- Keyed by the row's real identity (its id, or its whole key): any number of rows of one user
-- can wait, and an entry still waiting is never overwritten.
INSERT INTO etl.quarantine (table_name, column_name, row_id, old_team_id, reason, candidates, run_id)
SELECT o.table_name, o.column_name, o.quarantine_id, o.old_team_id, o.reason, o.candidates, %(run_id)s
FROM repair_orphans o
WHERE o.batch = %(batch)s AND o.table_name = %(table_name)s AND o.column_name = %(column_name)s
  AND o.strategy = 'quarantine' AND o.applied
ON CONFLICT (table_name, column_name, row_id) WHERE resolved_at IS NULL DO NOTHING;

-- name: record_decisions
INSERT INTO etl.repairs (run_id, table_name, column_name, row_id, old_team_id, new_team_id, strategy)
SELECT %(run_id)s, table_name, column_name, row_id, old_team_id, new_team_id, strategy
FROM repair_orphans o
WHERE o.batch = %(batch)s AND o.table_name = %(table_name)s AND o.column_name = %(column_name)s
  AND o.applied AND o.strategy = ANY (%(strategies)s);

-- name: record_unmoved
-- Decisions that needed no write (a team restored under the row's own id): recorded in the
-- transaction that restores the team, so a run killed later cannot lose them.
INSERT INTO etl.repairs (run_id, table_name, column_name, row_id, old_team_id, new_team_id, strategy)
SELECT %(run_id)s, table_name, column_name, row_id, old_team_id, new_team_id, strategy
FROM repair_orphans
WHERE strategy <> 'quarantine' AND new_team_id = old_team_id;

-- name: unapplied
-- Rows the batches could not write (the app changed them meanwhile): the next run sees them again.
SELECT table_name, count(*) FROM repair_orphans WHERE NOT applied GROUP BY table_name;

-- name: settled_reuses
-- Re-used ids all of whose collected rows were written.
SELECT u.team_id FROM reuse_targets u
WHERE NOT EXISTS (SELECT 1 FROM repair_orphans o WHERE o.reused AND o.old_team_id = u.team_id AND NOT o.applied);

-- name: sample_decisions
SELECT table_name, row_id, old_team_id, new_team_id, strategy, reason, candidates
FROM repair_orphans
ORDER BY strategy, table_name, n
LIMIT %(limit)s;

-- name: drop_work
DROP TABLE IF EXISTS repair_orphans, row_moves, reuse_targets;
