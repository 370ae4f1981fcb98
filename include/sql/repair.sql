-- restore_mapping (league_import.repair): every user-owned row whose team id does not exist, or
-- whose team id was re-used by another process for another team, is decided by the first
-- strategy that is certain, in this order, or quarantined:
--   key_map        the natural key its team had (the key map; for a re-used id, the meaning at
--                  the last good backup) now belongs to a live team, or its team was merged
--   restored_team  that team is known but gone: it is put back, inactive (under its own id when free)
--   content        the row's text names a series, and exactly one of the author's clubs' teams plays in it
--   user_context   no series named, and the author belongs to exactly one active team (in the row's league)
--   quarantine     anything else: listed in etl.quarantine, original archived, never guessed
-- The key map decides per old id, not per row: an id no team has any more, whose meaning names a
-- live team (or a merge survivor), takes every row on it to that team (repair_id_map). Such rows
-- are counted in one read per column (bulk_ids where an index leads with the team column, else
-- bulk_scan) and written one UPDATE ... FROM per batch (move_by_key_map), a batch being a run of
-- whole old ids or a range of the column's position. Every other row is decided one by one over the
-- session's temp table repair_orphans and written in batches of its own. Every batch is one
-- short transaction (league_import.repair).
-- Templates: {table}, {column}, {row_id}, {quarantine_id}, {row_pk}, {author}, {text}, {league},
-- {match}, {mapped_key}, {order}, {predicate}, {group}, {columns}, {values}, {pos}, {scope},
-- {batch}, {same_key}, {same_key_equal}, {key_has_null}, {written}, {unowned} (not a row the pipeline
-- wrote itself, for its own tables on an app's database) are composed with psycopg.sql.

-- name: settings
-- For this transaction: the sorts of a hundred thousand orphans in memory, not on disk; and no
-- nested loops: the planner takes the orphans of a table (an anti-join against teams) for one
-- row, and would compare each of them with every id of repair_id_map (2.7 million comparisons
-- at 10,000 memberships) instead of hashing the map once.
SET LOCAL work_mem = '64MB';
SET LOCAL enable_nestloop = off;

-- name: create_orphans
DROP TABLE IF EXISTS repair_orphans, repair_mentions, row_moves, reuse_targets, repair_id_map, repair_batches,
                     repair_done;
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
    grp           text
);
-- The orphans written so far (by number): a narrow table of its own, since marking them in
-- repair_orphans rewrote a wide row per orphan.
CREATE TEMP TABLE repair_done (n bigint PRIMARY KEY);
CREATE TEMP TABLE row_moves (n bigint, row_ref tid, new_team_id bigint);
CREATE TEMP TABLE reuse_targets (
    team_id bigint PRIMARY KEY, prev_epoch integer, evidence_run text, reused_at timestamptz
);

-- name: add_reuse_target
INSERT INTO reuse_targets
SELECT %(team_id)s, %(prev_epoch)s, %(evidence_run)s,
       (SELECT k.first_seen_at FROM etl.team_key_map k WHERE k.team_id = %(team_id)s AND k.epoch = %(prev_epoch)s + 1);

-- name: key_map_decisions
-- Strategy a for every id the key map knows that no team has now: the live team its latest
-- meaning names, or the survivor it was merged into (the rule of decide_by_key_map for a row
-- not on a re-used id). Decided once per id, so collect_orphans writes each orphan decided
-- instead of every orphan being updated afterwards.
CREATE TEMP TABLE repair_id_map (old_team_id bigint PRIMARY KEY, new_team_id bigint NOT NULL);
INSERT INTO repair_id_map
SELECT k.team_id, coalesce(k.merged_into, t.id)
FROM etl.team_key_map k
LEFT JOIN {leagues} l ON l.code = k.league_code
LEFT JOIN {series} s ON s.league_id = l.id AND s.series_key = k.series_key AND s.owned
LEFT JOIN {teams} t ON t.league_id = l.id AND t.series_id = s.id AND t.team_key = k.team_key AND t.owned
WHERE k.epoch = (SELECT max(m.epoch) FROM etl.team_key_map m WHERE m.team_id = k.team_id)
  AND NOT EXISTS (SELECT 1 FROM {teams_table} x WHERE x.{teams_id} = k.team_id)
  AND (k.merged_into IS NOT NULL AND EXISTS (SELECT 1 FROM {teams_table} x WHERE x.{teams_id} = k.merged_into)
       OR t.id IS NOT NULL AND t.id <> k.team_id);
ANALYZE repair_id_map;

-- name: collect_orphans
-- Rows whose team id exists nowhere, decided by the key map where repair_id_map knows the id.
-- The scope: every such row, or (a column the bulk strategy writes) only those on the ids it left.
INSERT INTO repair_orphans (table_name, column_name, row_ref, row_pk, row_id, quarantine_id, old_team_id,
                            author_id, league_id, body, grp, new_team_id, strategy)
SELECT %(table_name)s, %(column_name)s, t.ctid, {row_pk}, {row_id}, {quarantine_id}, t.{column},
       {author}, {league}, {text}, {group}, d.new_team_id, CASE WHEN d.new_team_id IS NOT NULL THEN 'key_map' END
FROM {table} t
LEFT JOIN repair_id_map d ON d.old_team_id = t.{column}
WHERE t.{column} IS NOT NULL AND {scope} AND {unowned}
  AND NOT EXISTS (SELECT 1 FROM {teams_table} x WHERE x.{teams_id} = t.{column});

-- name: bulk_scan
-- One read of a column for the bulk strategy: its rows on ids no team has, counted per id with
-- the team repair_id_map decided for the id (none: the id's rows are collected one by one), and
-- the edges of its batches: the position (the table's id, or the other column of its
-- natural key) of every %(size)s-th row that moves, in position order. Nothing is written, so the
-- scan runs in parallel where the server allows.
WITH found AS MATERIALIZED (
    SELECT t.{column} AS old_team_id, t.{pos} AS pos
    FROM {table} t
    WHERE t.{column} IS NOT NULL AND {unowned}
      AND NOT EXISTS (SELECT 1 FROM {teams_table} x WHERE x.{teams_id} = t.{column})
), moving AS (
    SELECT f.pos, row_number() OVER (ORDER BY f.pos) AS rn, count(*) OVER () AS total
    FROM found f JOIN repair_id_map d ON d.old_team_id = f.old_team_id
)
SELECT f.old_team_id, d.new_team_id, count(*)::bigint, NULL::bigint
FROM found f LEFT JOIN repair_id_map d ON d.old_team_id = f.old_team_id
GROUP BY f.old_team_id, d.new_team_id
UNION ALL
SELECT NULL, NULL, NULL, pos::bigint FROM moving WHERE rn %% %(size)s = 0 AND rn < total;

-- name: bulk_ids
-- The bulk strategy's read of a column whose rows an index finds by team: its rows on ids no
-- team has, counted per id (in parallel where the server allows), with the team repair_id_map
-- decided for each id (none: the id's rows are collected one by one).
WITH found AS MATERIALIZED (
    SELECT t.{column} AS old_team_id, count(*)::bigint AS rows
    FROM {table} t
    WHERE t.{column} IS NOT NULL AND {unowned}
      AND NOT EXISTS (SELECT 1 FROM {teams_table} x WHERE x.{teams_id} = t.{column})
    GROUP BY t.{column}
)
SELECT f.old_team_id, d.new_team_id, f.rows
FROM found f LEFT JOIN repair_id_map d ON d.old_team_id = f.old_team_id;

-- name: id_edges
-- One old id with more rows than a batch: the position of every %(size)s-th of its rows.
SELECT pos::bigint FROM (
    SELECT t.{pos} AS pos, row_number() OVER (ORDER BY t.{pos}) AS rn, count(*) OVER () AS total
    FROM {table} t
    WHERE t.{column} = %(id)s
) x
WHERE rn %% %(size)s = 0 AND rn < total;

-- name: collect_misplaced
-- Rows on a re-used id: those the last good backup shows on that id keep the meaning the id had
-- then (old_epoch); any other row on it has no such evidence and is decided by its content. A
-- row a repair moved onto the id since the re-use (a run killed midway) is already in place.
INSERT INTO repair_orphans (table_name, column_name, row_ref, row_pk, row_id, quarantine_id, old_team_id,
                            reused, old_epoch, author_id, league_id, body, grp)
SELECT %(table_name)s, %(column_name)s, t.ctid, {row_pk}, {row_id}, {quarantine_id}, t.{column},
       true, CASE WHEN b.row_id IS NOT NULL THEN u.prev_epoch END, {author}, {league}, {text}, {group}
FROM {table} t
JOIN reuse_targets u ON u.team_id = t.{column} AND {unowned}
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
LEFT JOIN {leagues} l ON l.code = k.league_code
LEFT JOIN {series} s ON s.league_id = l.id AND s.series_key = k.series_key AND s.owned
LEFT JOIN {teams} t ON t.league_id = l.id AND t.series_id = s.id AND t.team_key = k.team_key AND t.owned
WHERE o.strategy IS NULL
  AND k.team_id = o.old_team_id
  AND k.epoch = CASE WHEN o.reused THEN o.old_epoch
                     ELSE (SELECT max(m.epoch) FROM etl.team_key_map m WHERE m.team_id = o.old_team_id) END
  AND (k.merged_into IS NOT NULL AND EXISTS (SELECT 1 FROM {teams_table} x WHERE x.{teams_id} = k.merged_into)
       OR t.id IS NOT NULL AND t.id <> o.old_team_id);

-- name: restore_known_teams
-- One team per natural key is put back, inactive: under the id the key map knows (the lowest of
-- its old ids) when that id is free, else (a re-used id) under a new id. Other old ids of the
-- same team then resolve through the key map to it.
CREATE TEMP TABLE repair_restore ON COMMIT DROP AS
SELECT DISTINCT ON (k.league_code, k.series_key, k.team_key)
       k.*, EXISTS (SELECT 1 FROM {teams_table} x WHERE x.{teams_id} = k.team_id) AS id_taken
FROM repair_orphans o
JOIN etl.team_key_map k ON k.team_id = o.old_team_id
 AND k.epoch = CASE WHEN o.reused THEN o.old_epoch
                    ELSE (SELECT max(m.epoch) FROM etl.team_key_map m WHERE m.team_id = o.old_team_id) END
WHERE o.strategy IS NULL AND k.merged_into IS NULL
ORDER BY k.league_code, k.series_key, k.team_key, id_taken, k.team_id;

-- name: restore_leagues
SELECT {next_id} AS id, x.code
FROM (SELECT DISTINCT league_code AS code FROM repair_restore r
      WHERE NOT EXISTS (SELECT 1 FROM {leagues} l WHERE l.code = r.league_code) ORDER BY 1) x

-- name: restore_clubs
SELECT {next_id} AS id, x.name, x.name_key
FROM (SELECT min(club_name) AS name, club_key AS name_key FROM repair_restore r
      WHERE NOT EXISTS (SELECT 1 FROM {clubs} c WHERE c.name_key = r.club_key AND c.owned)
      GROUP BY club_key ORDER BY club_key) x

-- name: restore_series
SELECT {next_id} AS id, x.league_id, x.league, x.name, x.series_key
FROM (SELECT l.id AS league_id, l.code AS league, min(r.series_name) AS name, r.series_key
      FROM repair_restore r JOIN {leagues} l ON l.code = r.league_code
      WHERE NOT EXISTS (SELECT 1 FROM {series} s
                        WHERE s.league_id = l.id AND s.series_key = r.series_key AND s.owned)
      GROUP BY l.id, l.code, r.series_key ORDER BY 1, 4) x

-- name: restore_teams
-- Under the id the key map knows when it is free, else a new one.
SELECT CASE WHEN r.id_taken THEN {next_id} ELSE r.team_id END AS id, l.id AS league_id, c.id AS club_id,
       s.id AS series_id, r.team_name, false AS is_active, r.team_key, r.sub_team, r.league_code AS league,
       r.series_name AS series, r.club_name AS club
FROM repair_restore r
JOIN {leagues} l ON l.code = r.league_code
JOIN (SELECT DISTINCT ON (name_key) id, name_key FROM {clubs} WHERE owned ORDER BY name_key, id) c
  ON c.name_key = r.club_key
JOIN {series} s ON s.league_id = l.id AND s.series_key = r.series_key AND s.owned
ORDER BY r.id_taken, r.team_id

-- name: restored_decisions
UPDATE repair_orphans o
SET new_team_id = o.old_team_id, strategy = 'restored_team'
FROM repair_restore r
WHERE r.team_id = o.old_team_id AND NOT r.id_taken AND NOT o.reused AND o.strategy IS NULL;

-- name: advance_team_ids
-- A restored id was issued before; keep the identity sequence (%(seq)s) past it all the same.
SELECT setval(%(seq)s::regclass, top)
FROM (SELECT max(x.{teams_id}) AS top FROM {teams_table} x) x
WHERE top > coalesce(pg_sequence_last_value(%(seq)s::regclass), 0);

-- name: mention_inputs
-- Undecided rows with text, and what their league's series are called.
SELECT n, body, league_id FROM repair_orphans WHERE strategy IS NULL AND body IS NOT NULL;

-- name: series_names
SELECT s.league_id, s.series_key, s.name FROM {series} s WHERE s.owned;

-- name: create_mentions
CREATE TEMP TABLE repair_mentions (n bigint, series_key text) ON COMMIT DROP;

-- name: author_memberships
-- The authors' memberships as they will be once this run's decisions are written: a membership
-- on a re-used id, or an orphaned one, counts on the team decided for it, and not at all while
-- undecided (the id it sits on may name another team now).
DROP TABLE IF EXISTS author_memberships;
CREATE TEMP TABLE author_memberships ON COMMIT DROP AS
SELECT DISTINCT m.user_id, coalesce(o.new_team_id, d.new_team_id, m.team_id) AS team_id
FROM {memberships} m
LEFT JOIN repair_orphans o
       ON o.table_name = {memberships_table} AND o.column_name = {memberships_column} AND o.row_ref = m.ref
-- an orphaned membership the bulk strategy moves (not in repair_orphans): on its id's team
LEFT JOIN repair_id_map d ON d.old_team_id = m.team_id AND o.n IS NULL
WHERE o.n IS NULL OR o.strategy IN ('key_map', 'restored_team');
ANALYZE author_memberships;

-- name: decide_by_content
-- Candidates: active teams in a named series, of a club and league the author plays for.
WITH author_clubs AS (
    SELECT DISTINCT m.user_id, t.club_id, t.league_id
    FROM author_memberships m
    JOIN {teams} t ON t.id = m.team_id
), candidates AS (
    SELECT o.n, count(DISTINCT t.id) AS k, min(t.id) AS team_id,
           jsonb_agg(DISTINCT t.id) AS seen
    FROM repair_orphans o
    JOIN repair_mentions r ON r.n = o.n
    JOIN {series} s ON s.series_key = r.series_key AND s.owned
    JOIN {teams} t ON t.series_id = s.id AND t.league_id = s.league_id AND t.is_active AND t.owned
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
    JOIN {teams} t ON t.id = m.team_id AND t.is_active AND t.owned
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
    candidates = coalesce(candidates, '{{}}'::jsonb)
WHERE strategy IS NULL;

-- name: no_op_decisions
-- A row decided back onto the id it is on (its own team restored under it) needs no write.
INSERT INTO repair_done
SELECT n FROM repair_orphans WHERE strategy <> 'quarantine' AND new_team_id = old_team_id
ON CONFLICT DO NOTHING;

-- name: decision_counts
-- How many rows each strategy took, per team column.
SELECT table_name, column_name, strategy, count(*)
FROM repair_orphans
GROUP BY table_name, column_name, strategy;

-- name: assign_batches
-- Batches of about %(size)s rows of one column and kind (moves, or quarantine), by their order of
-- collection, numbered across every column at once. Rows of one group (the same natural key but
-- for the team: one user's memberships, one practice slot) share a batch: on re-used ids they may
-- trade places, which one batch does without a false duplicate. Kept in a narrow table of its
-- own (writing the batch into every orphan's row cost more than deciding it).
CREATE TEMP TABLE repair_batches AS
WITH numbered AS (
    SELECT n, table_name, column_name, strategy = 'quarantine' AS quarantine, grp,
           row_number() OVER (PARTITION BY table_name, column_name, strategy = 'quarantine' ORDER BY n) AS rn
    FROM repair_orphans
    WHERE strategy IS NOT NULL AND NOT EXISTS (SELECT 1 FROM repair_done d WHERE d.n = repair_orphans.n)
), grouped AS (
    SELECT n, table_name, column_name, quarantine,
           (min(rn) OVER (PARTITION BY table_name, column_name, quarantine, coalesce(grp, n::text)) - 1)
               / %(size)s AS part
    FROM numbered
)
SELECT n, table_name, column_name, quarantine,
       dense_rank() OVER (ORDER BY table_name, column_name, quarantine, part)::integer AS batch
FROM grouped;

-- name: index_batches
CREATE INDEX ON repair_batches (batch, n);
ANALYZE repair_batches;

-- name: batch_ranges
-- Each batch with the range of its rows' numbers, so a batch reads its own rows, not every orphan.
SELECT table_name, column_name, quarantine, batch, min(n), max(n)
FROM repair_batches
GROUP BY table_name, column_name, quarantine, batch
ORDER BY batch;

-- name: clear_batch
TRUNCATE row_moves;

-- name: batch_rows
-- The batch's rows as they are now: still on the team id they were collected on.
INSERT INTO row_moves (n, row_ref, new_team_id)
SELECT o.n, t.ctid, o.new_team_id
FROM repair_orphans o
JOIN {table} t ON {match}
WHERE o.n BETWEEN %(first)s AND %(last)s AND o.n IN (SELECT b.n FROM repair_batches b WHERE b.batch = %(batch)s)
  AND o.table_name = %(table_name)s AND o.column_name = %(column_name)s
  AND NOT EXISTS (SELECT 1 FROM repair_done d WHERE d.n = o.n)
  AND o.strategy = ANY (%(strategies)s) AND t.{column} = o.old_team_id;

-- name: move_collisions
-- Rows that would repeat their table's natural key once moved: one row per key stays, chosen by
-- the dedup rule ({order}: the primary membership, else the lowest id), then a row that does not
-- move; the others are archived as duplicates and removed. Only the batch's rows and the rows
-- already holding a key one of them moves to can meet: those are looked up through the natural
-- key's index, by equal values ({same_key_equal}), and for a moving row with a NULL in its key
-- ({key_has_null}) by NULL-safe comparison ({same_key}), not found by sorting every row of the
-- teams they move to.
CREATE TEMP TABLE IF NOT EXISTS move_collisions (ref tid) ON COMMIT DROP;
TRUNCATE move_collisions;
INSERT INTO move_collisions
WITH moving AS MATERIALIZED (
    SELECT m.new_team_id AS repair_new_team_id, x.*
    FROM {table} x JOIN row_moves m ON m.row_ref = x.ctid
    WHERE x.ctid = ANY (ARRAY(SELECT row_ref FROM row_moves))
), meeting AS MATERIALIZED (
    SELECT row_ref AS ref FROM row_moves
    UNION
    SELECT s.ctid FROM moving x JOIN {table} s ON {same_key_equal}
    UNION
    SELECT s.ctid FROM moving x JOIN {table} s ON {same_key} WHERE {key_has_null}
)
SELECT ref FROM (
    SELECT r.ctid AS ref,
           row_number() OVER (PARTITION BY {mapped_key} ORDER BY {order}, m.row_ref IS NOT NULL, r.ctid) AS rn
    FROM {table} r
    LEFT JOIN row_moves m ON m.row_ref = r.ctid
    WHERE r.ctid = ANY (ARRAY(SELECT ref FROM meeting))
) ranked
WHERE rn > 1;

-- name: collided
t.ctid = ANY (ARRAY(SELECT ref FROM move_collisions))

-- name: delete_collided
WITH gone AS (DELETE FROM {table} t WHERE t.ctid = ANY (ARRAY(SELECT ref FROM move_collisions)) RETURNING t.ctid)
DELETE FROM row_moves m USING gone g WHERE m.row_ref = g.ctid RETURNING m.n;

-- name: swapping_rows
-- Rows of the batch whose new key another row of the batch still holds (it moves away, as on
-- re-used ids): an UPDATE checks a unique key row by row, so these are taken out and put back
-- once the others moved, in the same transaction. Their copies wait in move_swaps (ids and every
-- value kept, only the team changes). Only tables whose key holds the team come here
-- (memberships, practice times): no row of another table points at theirs.
-- The batch's own rows are compared first; the table is read only for the rows that swap.
DROP TABLE IF EXISTS move_swaps;
CREATE TEMP TABLE move_swaps ON COMMIT DROP AS
WITH batch AS MATERIALIZED (
    SELECT m.n, m.row_ref, m.new_team_id, o.grp, o.old_team_id
    FROM row_moves m JOIN repair_orphans o ON o.n = m.n
), swapping AS MATERIALIZED (
    SELECT b.n, b.row_ref, b.new_team_id FROM batch b
    WHERE EXISTS (SELECT 1 FROM batch b2 WHERE b2.n <> b.n AND b2.grp = b.grp AND b2.old_team_id = b.new_team_id)
)
SELECT s.new_team_id AS repair_team_id, s.n AS repair_n, t.*
FROM swapping s JOIN {table} t ON t.ctid = s.row_ref
WHERE t.ctid = ANY (ARRAY(SELECT row_ref FROM swapping));
DELETE FROM {table} t
WHERE t.ctid = ANY (ARRAY(SELECT m.row_ref FROM row_moves m JOIN move_swaps s ON s.repair_n = m.n));
DELETE FROM row_moves WHERE n IN (SELECT repair_n FROM move_swaps);

-- name: swapped_rows_back
INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE
SELECT {values} FROM move_swaps t;
INSERT INTO repair_done SELECT repair_n FROM move_swaps ON CONFLICT DO NOTHING;

-- name: move_rows
-- The batch's rows are fetched by their tuple ids (a TID scan), not found by reading the table.
WITH moved AS (
    UPDATE {table} t SET {column} = m.new_team_id
    FROM row_moves m
    WHERE t.ctid = m.row_ref AND t.ctid = ANY (ARRAY(SELECT row_ref FROM row_moves))
    RETURNING m.n
)
INSERT INTO repair_done SELECT n FROM moved ON CONFLICT DO NOTHING;

-- name: mark_applied
INSERT INTO repair_done SELECT unnest(%(ns)s::bigint[]) ON CONFLICT DO NOTHING;

-- name: quarantined_predicate
t.ctid = ANY (ARRAY(SELECT row_ref FROM row_moves))

-- name: detach_quarantined
WITH detached AS (
    UPDATE {table} t SET {column} = NULL
    FROM row_moves m WHERE t.ctid = m.row_ref AND t.ctid = ANY (ARRAY(SELECT row_ref FROM row_moves))
    RETURNING m.n
)
INSERT INTO repair_done SELECT n FROM detached ON CONFLICT DO NOTHING;

-- name: remove_quarantined
WITH removed AS (
    DELETE FROM {table} t USING row_moves m
    WHERE t.ctid = m.row_ref AND t.ctid = ANY (ARRAY(SELECT row_ref FROM row_moves))
    RETURNING m.n
)
INSERT INTO repair_done SELECT n FROM removed ON CONFLICT DO NOTHING;

-- name: record_quarantine
-- Keyed by the row's real identity (its id, or its whole key): any number of rows of one user
-- can wait, and an entry still waiting is never overwritten.
INSERT INTO etl.quarantine (table_name, column_name, row_id, old_team_id, reason, candidates, run_id)
SELECT o.table_name, o.column_name, o.quarantine_id, o.old_team_id, o.reason, o.candidates, %(run_id)s
FROM repair_orphans o
WHERE o.n BETWEEN %(first)s AND %(last)s AND o.n IN (SELECT b.n FROM repair_batches b WHERE b.batch = %(batch)s)
  AND o.table_name = %(table_name)s AND o.column_name = %(column_name)s
  AND o.strategy = 'quarantine' AND EXISTS (SELECT 1 FROM repair_done d WHERE d.n = o.n)
ON CONFLICT (table_name, column_name, row_id) WHERE resolved_at IS NULL DO NOTHING;

-- name: record_decisions
-- The batch's decisions, in the transaction that wrote them. The CTE gives each row written
-- (row_id, old_team_id, new_team_id, strategy): the rows of a batch marked done
-- (batch_decisions, collected_decisions), or a bulk batch's moves as they happen
-- (move_by_key_map: the UPDATE's own RETURNING, so the rows are not read twice).
WITH written AS ({written})
INSERT INTO etl.repairs (run_id, table_name, column_name, row_id, old_team_id, new_team_id, strategy)
SELECT %(run_id)s, %(table_name)s, %(column_name)s, w.row_id, w.old_team_id, w.new_team_id, w.strategy
FROM written w;

-- name: batch_decisions
SELECT o.row_id, o.old_team_id, o.new_team_id, o.strategy
FROM repair_orphans o
WHERE o.n BETWEEN %(first)s AND %(last)s AND o.n IN (SELECT b.n FROM repair_batches b WHERE b.batch = %(batch)s)
  AND o.table_name = %(table_name)s AND o.column_name = %(column_name)s
  AND EXISTS (SELECT 1 FROM repair_done d WHERE d.n = o.n) AND o.strategy = ANY (%(strategies)s)

-- name: bulk_settings
-- A bulk batch reads its range through the position's index (or the whole table, for a large
-- range) and hashes repair_id_map: never a merge join along another index of the table.
SET LOCAL enable_nestloop = off;
SET LOCAL enable_mergejoin = off;

-- name: move_by_key_map
-- A bulk batch: every row of the batch (its old ids, or its position range) on an id
-- repair_id_map decided goes to that id's team, in the scan that finds it (the floor's own
-- UPDATE ... FROM, on a part of the table). A row the app moved meanwhile is no longer on the id,
-- and is left alone.
UPDATE {table} t SET {column} = d.new_team_id
FROM repair_id_map d
WHERE d.old_team_id = t.{column} AND {batch} AND {unowned}
RETURNING {row_id} AS row_id, d.old_team_id, d.new_team_id, 'key_map'::text AS strategy

-- name: collect_bulk_batch
-- A bulk batch whose moves repeat a natural key (the unique index refused it, back to its
-- savepoint): its rows are collected, decided by the key map, and written as the other batches
-- are, the collisions settled by the dedup rule and archived.
WITH found AS (
    INSERT INTO repair_orphans (table_name, column_name, row_ref, row_pk, row_id, quarantine_id, old_team_id,
                                author_id, league_id, body, grp, new_team_id, strategy)
    SELECT %(table_name)s, %(column_name)s, t.ctid, {row_pk}, {row_id}, {quarantine_id}, t.{column},
           {author}, {league}, {text}, {group}, d.new_team_id, 'key_map'
    FROM {table} t JOIN repair_id_map d ON d.old_team_id = t.{column}
    WHERE {batch} AND {unowned}
    RETURNING n, row_ref, new_team_id
), moves AS (
    INSERT INTO row_moves (n, row_ref, new_team_id) SELECT n, row_ref, new_team_id FROM found
)
SELECT min(n), max(n) FROM found;

-- name: collected_decisions
SELECT o.row_id, o.old_team_id, o.new_team_id, o.strategy
FROM repair_orphans o
WHERE o.n BETWEEN %(first)s AND %(last)s AND EXISTS (SELECT 1 FROM repair_done d WHERE d.n = o.n)

-- name: record_unmoved
-- Decisions that needed no write (a team restored under the row's own id): recorded in the
-- transaction that restores the team, so a run killed later cannot lose them.
INSERT INTO etl.repairs (run_id, table_name, column_name, row_id, old_team_id, new_team_id, strategy)
SELECT %(run_id)s, table_name, column_name, row_id, old_team_id, new_team_id, strategy
FROM repair_orphans
WHERE strategy <> 'quarantine' AND new_team_id = old_team_id;

-- name: unapplied
-- Rows the batches could not write (the app changed them meanwhile): the next run sees them again.
SELECT table_name, count(*) FROM repair_orphans o
WHERE NOT EXISTS (SELECT 1 FROM repair_done d WHERE d.n = o.n)
GROUP BY table_name;

-- name: settled_reuses
-- Re-used ids all of whose collected rows were written.
SELECT u.team_id FROM reuse_targets u
WHERE NOT EXISTS (SELECT 1 FROM repair_orphans o WHERE o.reused AND o.old_team_id = u.team_id
                  AND NOT EXISTS (SELECT 1 FROM repair_done d WHERE d.n = o.n));

-- name: sample_decisions
SELECT table_name, row_id, old_team_id, new_team_id, strategy, reason, candidates
FROM repair_orphans
ORDER BY strategy, table_name, n
LIMIT %(limit)s;

-- name: drop_work
DROP TABLE IF EXISTS repair_orphans, row_moves, reuse_targets, repair_id_map, repair_batches, repair_done;
