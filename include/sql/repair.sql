-- restore_mapping (league_import.repair): every user-owned row whose team id does not exist is
-- decided by the first strategy that is certain, in this order, or quarantined:
--   key_map        the old id's natural key now belongs to another id
--   restored_team  the old id's team is known but gone: it is put back, inactive, under its id
--   content        the row's text names a series, and exactly one of the author's clubs' teams plays in it
--   user_context   no series named, and the author belongs to exactly one active team (in the row's league)
--   quarantine     anything else: listed in etl.quarantine, original archived, never guessed
-- All statements are set-based over the temp table repair_orphans.
-- Templates: {table}, {column}, {row_id}, {author}, {text}, {league} are composed with psycopg.sql.

-- name: create_orphans
CREATE TEMP TABLE repair_orphans (
    n           bigint GENERATED ALWAYS AS IDENTITY,
    table_name  text NOT NULL,
    column_name text NOT NULL,
    row_ref     tid NOT NULL,
    row_id      text NOT NULL,
    old_team_id bigint NOT NULL,
    author_id   bigint,
    league_id   bigint,
    body        text,
    new_team_id bigint,
    strategy    text,
    reason      text,
    candidates  jsonb
) ON COMMIT DROP;

-- name: lock_table
LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE;

-- name: collect_orphans
INSERT INTO repair_orphans (table_name, column_name, row_ref, row_id, old_team_id, author_id, league_id, body)
SELECT %(table_name)s, %(column_name)s, t.ctid, {row_id}, t.{column}, {author}, {league}, {text}
FROM {table} t
WHERE t.{column} IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM public.teams x WHERE x.id = t.{column});

-- name: analyze_orphans
-- A temp table has no statistics: without them the planner takes 100,000 orphans for a few
-- hundred and joins them to the key map by nested loop (7 s instead of 0.15 s).
ANALYZE repair_orphans;

-- name: undecided
SELECT count(*) FROM repair_orphans WHERE strategy IS NULL;

-- name: decision_counts
-- Once every orphan is decided: how many rows each strategy took, per team column.
SELECT table_name, column_name, strategy, count(*)
FROM repair_orphans
GROUP BY table_name, column_name, strategy;

-- name: decide_by_key_map
UPDATE repair_orphans o
SET new_team_id = t.id, strategy = 'key_map'
FROM etl.team_key_map k
JOIN public.leagues l ON l.code = k.league_code
JOIN public.series s ON s.league_id = l.id AND s.series_key = k.series_key
JOIN public.teams t ON t.league_id = l.id AND t.series_id = s.id AND t.team_key = k.team_key
WHERE o.strategy IS NULL AND k.team_id = o.old_team_id;

-- name: key_map_ids
CREATE TEMP TABLE id_map ON COMMIT DROP AS
SELECT DISTINCT old_team_id AS dup_id, new_team_id AS keep_id
FROM repair_orphans
WHERE strategy = 'key_map';

-- name: restore_known_teams
-- One team per natural key is put back (the lowest of its old ids); other old ids of the same
-- team then resolve through the key map to it.
CREATE TEMP TABLE repair_restore ON COMMIT DROP AS
SELECT DISTINCT ON (k.league_code, k.series_key, k.team_key) k.*
FROM repair_orphans o
JOIN etl.team_key_map k ON k.team_id = o.old_team_id
WHERE o.strategy IS NULL
ORDER BY k.league_code, k.series_key, k.team_key, k.team_id;
INSERT INTO public.leagues (code)
SELECT DISTINCT league_code FROM repair_restore
ON CONFLICT (code) DO NOTHING;
INSERT INTO public.clubs (name, name_key)
SELECT min(club_name), club_key FROM repair_restore GROUP BY club_key
ON CONFLICT (name_key) DO NOTHING;
INSERT INTO public.series (league_id, name, series_key)
SELECT l.id, min(r.series_name), r.series_key
FROM repair_restore r JOIN public.leagues l ON l.code = r.league_code
GROUP BY l.id, r.series_key
ON CONFLICT (league_id, series_key) DO NOTHING;
INSERT INTO public.teams (id, league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
SELECT r.team_id, l.id, c.id, s.id, r.team_name, r.team_key, r.sub_team, false
FROM repair_restore r
JOIN public.leagues l ON l.code = r.league_code
JOIN public.clubs c ON c.name_key = r.club_key
JOIN public.series s ON s.league_id = l.id AND s.series_key = r.series_key;
UPDATE repair_orphans o
SET new_team_id = o.old_team_id, strategy = 'restored_team'
FROM repair_restore r
WHERE r.team_id = o.old_team_id AND o.strategy IS NULL;

-- name: advance_team_ids
-- A restored id was issued before; keep the identity sequence past it all the same.
SELECT setval(seq, top)
FROM (SELECT pg_get_serial_sequence('public.teams', 'id') AS seq, (SELECT max(id) FROM public.teams) AS top) x
WHERE seq IS NOT NULL AND top > coalesce(pg_sequence_last_value(seq::regclass), 0);

-- name: find_series_mentions
-- Series references read as series labels only: "Series 2B", "series 22", "Division 11",
-- "Chicago 22 SW" (any case), "Series A" (capital letter), NSTF "S2B". A bare number, a time
-- ("moved to 7:22") or a date is never a series.
CREATE TEMP TABLE repair_mentions ON COMMIT DROP AS
SELECT DISTINCT n, series_key FROM (
    SELECT o.n, upper(regexp_replace(m[1], '\s+', ' ', 'g')) AS series_key
    FROM repair_orphans o,
         regexp_matches(o.body, '\m(?:series|division|chicago)\s+(\d{1,3}[a-z]?(?:\s+sw)?)\M', 'gi') AS m
    WHERE o.strategy IS NULL AND o.body IS NOT NULL
    UNION ALL
    SELECT o.n, m[1]
    FROM repair_orphans o,
         regexp_matches(o.body, '\m(?:Series|SERIES|Division)\s+([A-K]|SN)\M', 'g') AS m
    WHERE o.strategy IS NULL AND o.body IS NOT NULL
    UNION ALL
    SELECT o.n, m[1]
    FROM repair_orphans o, regexp_matches(o.body, '\mS(\d{1,2}[A-Z]?)\M', 'g') AS m
    WHERE o.strategy IS NULL AND o.body IS NOT NULL
) found;

-- name: decide_by_content
-- Candidates: active teams in a named series, of a club and league the author plays for.
WITH author_clubs AS (
    SELECT DISTINCT m.user_id, t.club_id, t.league_id
    FROM public.team_memberships m
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
    SELECT n, jsonb_agg(series_key ORDER BY series_key) AS series FROM repair_mentions GROUP BY n
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
    JOIN public.team_memberships m ON m.user_id = o.author_id
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
        WHEN author_id IS NULL THEN 'old team id unknown to the key map, and the row has no author to decide by'
        ELSE 'old team id unknown to the key map, and the author belongs to no active team'
    END),
    candidates = coalesce(candidates, '{}'::jsonb)
WHERE strategy IS NULL;

-- name: apply_row_decisions
UPDATE {table} t
SET {column} = o.new_team_id
FROM repair_orphans o
WHERE o.table_name = %(table_name)s AND o.column_name = %(column_name)s
  AND o.strategy IN ('content', 'user_context') AND t.ctid = o.row_ref;

-- name: quarantined_predicate
t.ctid IN (SELECT row_ref FROM repair_orphans
           WHERE table_name = %(table_name)s AND column_name = %(column_name)s AND strategy = 'quarantine')

-- name: detach_quarantined
UPDATE {table} t SET {column} = NULL
WHERE {predicate};

-- name: remove_quarantined
DELETE FROM {table} t
WHERE {predicate};

-- name: record_quarantine
INSERT INTO etl.quarantine AS q (table_name, column_name, row_id, old_team_id, reason, candidates, run_id)
SELECT table_name, column_name, row_id, old_team_id, reason, candidates, %(run_id)s
FROM repair_orphans
WHERE strategy = 'quarantine'
ON CONFLICT (table_name, column_name, row_id) DO UPDATE
SET old_team_id = EXCLUDED.old_team_id, reason = EXCLUDED.reason, candidates = EXCLUDED.candidates,
    run_id = EXCLUDED.run_id, created_at = now(), resolved_at = NULL, resolved_team_id = NULL;

-- name: record_decisions
INSERT INTO etl.repairs (run_id, table_name, column_name, row_id, old_team_id, new_team_id, strategy)
SELECT %(run_id)s, table_name, column_name, row_id, old_team_id, new_team_id, strategy
FROM repair_orphans;

-- name: sample_decisions
SELECT table_name, row_id, old_team_id, new_team_id, strategy, reason, candidates
FROM repair_orphans
ORDER BY strategy, table_name, n
LIMIT %(limit)s;

-- Releasing a quarantined row once a person has decided its team (league_import.repair.release).

-- name: quarantined_row
SELECT id FROM etl.quarantine
WHERE table_name = %(table_name)s AND column_name = %(column_name)s AND row_id = %(row_id)s
  AND resolved_at IS NULL
FOR UPDATE;

-- name: team_exists
SELECT EXISTS (SELECT 1 FROM public.teams WHERE id = %(team_id)s);

-- name: reattach
UPDATE {table} t SET {column} = %(team_id)s
WHERE {row_id} = %(row_id)s AND t.{column} IS NULL;

-- name: reinsert_from_archive
INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE
SELECT {values} FROM {archive} t
WHERE {row_id} = %(row_id)s AND t.reason = 'orphan'
ORDER BY t.archived_at DESC
LIMIT 1;

-- name: mark_resolved
UPDATE etl.quarantine SET resolved_at = now(), resolved_team_id = %(team_id)s WHERE id = %(id)s;
