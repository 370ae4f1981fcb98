-- Health checks (league_import.health). Read-only except record_checks.
-- Templates: {table}, {column} are composed with psycopg.sql.

-- name: count_rows
SELECT count(*) FROM {table};

-- name: table_exists
SELECT to_regclass(%(table)s) IS NOT NULL;

-- name: backup_counts
-- The counts taken by this run's backup (or the latest backup when no run is named).
SELECT table_name, row_count, taken_at, run_id
FROM etl.backup_counts
WHERE run_id = coalesce(%(run_id)s, (SELECT run_id FROM etl.backup_counts ORDER BY taken_at DESC LIMIT 1));

-- name: archived_since
-- Rows the pipeline archived from a table after the backup was taken, in that run.
SELECT count(*) FROM {archive} WHERE run_id = %(run_id)s AND archived_at >= %(since)s;

-- name: previous_counts
-- Row counts recorded by the last successful, non-dry run before this one.
SELECT h.subject, h.figure
FROM etl.health_checks h
WHERE h.check_name = 'rows'
  AND h.run_id = (
      SELECT r.run_id FROM etl.runs r
      WHERE r.status = 'success' AND NOT r.dry_run AND r.run_id IS DISTINCT FROM %(run_id)s
        AND EXISTS (SELECT 1 FROM etl.health_checks x WHERE x.run_id = r.run_id)
      ORDER BY r.finished_at DESC LIMIT 1
  );

-- name: quarantine_waiting
SELECT count(*), coalesce(jsonb_agg(jsonb_build_object('table', table_name, 'row_id', row_id, 'reason', reason)
                                    ORDER BY created_at DESC) FILTER (WHERE rn <= 5), '[]'::jsonb)
FROM (SELECT *, row_number() OVER (ORDER BY created_at DESC) AS rn
      FROM etl.quarantine WHERE resolved_at IS NULL) q;

-- name: record_checks
INSERT INTO etl.health_checks (run_id, check_name, subject, figure, threshold, status, detail)
VALUES (%(run_id)s, %(check_name)s, %(subject)s, %(figure)s, %(threshold)s, %(status)s, %(detail)s)
ON CONFLICT (run_id, check_name, subject) DO UPDATE
SET figure = EXCLUDED.figure, threshold = EXCLUDED.threshold, status = EXCLUDED.status,
    detail = EXCLUDED.detail, checked_at = now();

-- name: trends
-- The last runs' figures, oldest first, for the report's charts.
SELECT h.run_id, r.started_at, h.check_name, sum(h.figure)
FROM etl.health_checks h
JOIN etl.runs r ON r.run_id = h.run_id
WHERE h.run_id IN (SELECT run_id FROM etl.runs WHERE NOT dry_run ORDER BY started_at DESC LIMIT %(runs)s)
  AND h.check_name IN ('rows', 'orphans', 'duplicates', 'quarantine')
GROUP BY h.run_id, r.started_at, h.check_name
ORDER BY r.started_at;

-- name: table_trends
SELECT h.subject, r.started_at, h.figure
FROM etl.health_checks h
JOIN etl.runs r ON r.run_id = h.run_id
WHERE h.check_name = 'rows'
  AND h.run_id IN (SELECT run_id FROM etl.runs WHERE NOT dry_run ORDER BY started_at DESC LIMIT %(runs)s)
ORDER BY h.subject, r.started_at;
