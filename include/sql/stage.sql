-- The run's stage (league_import.stage): parsed and validated rows, one partition per run.
-- Templates: {teams}, {schedule}, {stats} are the partitions, {run_id} the run id as a literal
-- (DDL takes no bound parameters).

-- name: register
INSERT INTO etl.stages (run_id, suffix) VALUES (%(run_id)s, %(suffix)s)
ON CONFLICT (run_id) DO UPDATE SET leagues = '{{}}', created_at = now();

-- name: create_partitions
CREATE UNLOGGED TABLE IF NOT EXISTS {teams} PARTITION OF etl.stage_teams FOR VALUES IN ({run_id});
CREATE UNLOGGED TABLE IF NOT EXISTS {schedule} PARTITION OF etl.stage_schedule FOR VALUES IN ({run_id});
CREATE UNLOGGED TABLE IF NOT EXISTS {stats} PARTITION OF etl.stage_stats FOR VALUES IN ({run_id});
TRUNCATE {teams}, {schedule}, {stats};
DELETE FROM etl.source_files WHERE run_id = {run_id};

-- name: add_league
UPDATE etl.stages SET leagues = array_append(leagues, %(league)s) WHERE run_id = %(run_id)s;

-- name: record_file
INSERT INTO etl.source_files
    (run_id, league_code, file_name, path, size_bytes, modified_at, sha256, records, first_date, last_date)
VALUES (%(run_id)s, %(league)s, %(name)s, %(path)s, %(size)s, %(mtime)s, %(sha256)s, %(records)s,
        %(first_date)s, %(last_date)s);

-- name: analyze
ANALYZE {teams}, {schedule}, {stats};

-- name: staged
SELECT leagues FROM etl.stages WHERE run_id = %(run_id)s;

-- name: ended_stages
-- Stages of runs that are no longer running (finished, failed, or never recorded).
SELECT s.run_id, s.suffix FROM etl.stages s
WHERE s.run_id IS DISTINCT FROM %(keep)s
  AND NOT EXISTS (SELECT 1 FROM etl.runs r WHERE r.run_id = s.run_id AND r.status = 'running');

-- name: drop_partitions
DROP TABLE IF EXISTS {teams}, {schedule}, {stats};

-- name: unregister
DELETE FROM etl.stages WHERE run_id = %(run_id)s;

-- name: forget_files
DELETE FROM etl.source_files WHERE run_id = %(run_id)s;

-- name: counts
-- What the files imply per league, for the report and the health check's reconciliation: one
-- grouped pass over each staged table; a file absent tonight implies no count for its table.
WITH teams AS (
    SELECT league_code, count(*) AS teams, count(DISTINCT series_key) AS series, count(DISTINCT club_key) AS clubs
    FROM etl.stage_teams WHERE run_id = %(run_id)s GROUP BY league_code
), schedule AS (
    SELECT league_code, count(*) AS n FROM etl.stage_schedule WHERE run_id = %(run_id)s GROUP BY league_code
), stats AS (
    SELECT league_code, count(*) AS n FROM etl.stage_stats WHERE run_id = %(run_id)s GROUP BY league_code
)
SELECT t.league_code, t.teams, t.series, t.clubs,
       -- NULL: the file was absent tonight, so it implies nothing (the stored rows are kept)
       CASE WHEN f.has_schedule THEN coalesce(sc.n, 0) END, CASE WHEN f.has_stats THEN coalesce(ss.n, 0) END
FROM teams t
CROSS JOIN LATERAL (
    SELECT coalesce(bool_or(file_name = %(schedule_file)s), false) AS has_schedule,
           coalesce(bool_or(file_name = %(stats_file)s), false) AS has_stats
    FROM etl.source_files WHERE run_id = %(run_id)s AND league_code = t.league_code
) f
LEFT JOIN schedule sc ON sc.league_code = t.league_code
LEFT JOIN stats ss ON ss.league_code = t.league_code
ORDER BY t.league_code;
