-- The backup task (league_import.backup): before teams change, snapshot teams and every
-- user-owned team reference, keyed by run id. A retry deletes its own run's rows first.
-- Templates: {table}, {column}, {row_id}, {columns} are composed with psycopg.sql.

-- name: refresh_key_map
-- Every team id ever seen keeps its natural key; a new spelling is added to its names.
INSERT INTO etl.team_key_map AS k
    (team_id, league_code, series_key, series_name, club_name, club_key, team_key, sub_team,
     team_name, names, first_seen_run, last_seen_run)
SELECT t.id, l.code, s.series_key, s.name, c.name, c.name_key, t.team_key, t.sub_team,
       t.team_name, ARRAY[t.team_name], %(run_id)s, %(run_id)s
FROM public.teams t
JOIN public.leagues l ON l.id = t.league_id
JOIN public.series s ON s.id = t.series_id
JOIN public.clubs c ON c.id = t.club_id
ON CONFLICT (team_id) DO UPDATE
SET last_seen_run = EXCLUDED.last_seen_run,
    last_seen_at = now(),
    team_name = EXCLUDED.team_name,
    names = CASE WHEN EXCLUDED.team_name = ANY (k.names) THEN k.names ELSE k.names || EXCLUDED.team_name END
WHERE k.last_seen_run IS DISTINCT FROM EXCLUDED.last_seen_run
   OR NOT (EXCLUDED.team_name = ANY (k.names));

-- name: clear_run
WITH teams AS (DELETE FROM etl.backup_teams WHERE run_id = %(run_id)s),
     counts AS (DELETE FROM etl.backup_counts WHERE run_id = %(run_id)s)
DELETE FROM etl.backup_refs WHERE run_id = %(run_id)s;

-- name: lock_table
LOCK TABLE {table} IN SHARE MODE;

-- name: backup_teams
INSERT INTO etl.backup_teams (run_id, {columns})
SELECT %(run_id)s, {columns} FROM public.teams;

-- name: backup_refs
INSERT INTO etl.backup_refs (run_id, table_name, column_name, row_id, team_id)
SELECT %(run_id)s, %(table_name)s, %(column_name)s, {row_id}, t.{column}
FROM {table} t;

-- name: count_rows
SELECT count(*) FROM {table};

-- name: record_count
INSERT INTO etl.backup_counts (run_id, table_name, row_count) VALUES (%(run_id)s, %(table_name)s, %(row_count)s);

-- name: prune
-- Keep this run's backup and the last successful run's (for rollback); drop older ones.
-- backup_counts stay: they are small, and the health check compares runs with them.
WITH keep AS (
    SELECT %(run_id)s AS run_id
    UNION ALL
    (SELECT run_id FROM etl.runs
     WHERE status = 'success' AND NOT dry_run AND run_id <> %(run_id)s
     ORDER BY finished_at DESC LIMIT 1)
), teams AS (
    DELETE FROM etl.backup_teams WHERE run_id NOT IN (SELECT run_id FROM keep) RETURNING run_id
), refs AS (
    DELETE FROM etl.backup_refs WHERE run_id NOT IN (SELECT run_id FROM keep) RETURNING run_id
)
SELECT (SELECT count(DISTINCT run_id) FROM teams) + (SELECT count(DISTINCT run_id) FROM refs);
