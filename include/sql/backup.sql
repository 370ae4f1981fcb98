-- The backup task (league_import.backup): before teams change, snapshot teams and every
-- user-owned team reference, keyed by run id, from one REPEATABLE READ snapshot (no table lock:
-- the app writes on). A retry deletes its own run's rows first.
-- Templates: {table}, {column}, {row_id} are composed with psycopg.sql.

-- name: clear_run
WITH teams AS (DELETE FROM etl.backup_teams WHERE run_id = %(run_id)s),
     counts AS (DELETE FROM etl.backup_counts WHERE run_id = %(run_id)s)
DELETE FROM etl.backup_refs WHERE run_id = %(run_id)s;

-- name: backup_teams
INSERT INTO etl.backup_teams (run_id, id, league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
SELECT %(run_id)s, t.id, t.league_id, t.club_id, t.series_id, t.team_name, t.team_key, t.sub_team, t.is_active
FROM {teams} t;

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
SELECT count(DISTINCT run_id) FROM (SELECT run_id FROM teams UNION ALL SELECT run_id FROM refs) gone;
