-- The health report's charts and lists (league_import.report). Read-only.

-- name: repairs_by_strategy
-- Rows decided per night, by strategy (quarantine included), over the last runs.
SELECT r.started_at::date, p.strategy, count(*)
FROM etl.repairs p
JOIN etl.runs r ON r.run_id = p.run_id
WHERE p.run_id IN (SELECT run_id FROM etl.runs WHERE NOT dry_run ORDER BY started_at DESC LIMIT %(runs)s)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: quarantine_flow
-- Rows put in quarantine and released (by a person), per day of the last runs' span.
WITH span AS (
    SELECT min(started_at)::date AS since
    FROM (SELECT started_at FROM etl.runs WHERE NOT dry_run ORDER BY started_at DESC LIMIT %(runs)s) r
)
SELECT day, what, n FROM (
    SELECT created_at::date AS day, 'quarantined' AS what, count(*) AS n FROM etl.quarantine GROUP BY 1
    UNION ALL
    SELECT resolved_at::date, 'released', count(*) FROM etl.quarantine WHERE resolved_at IS NOT NULL GROUP BY 1
) f
WHERE day >= (SELECT since FROM span)
ORDER BY day, what;

-- name: renames_flow
WITH span AS (
    SELECT min(started_at)::date AS since
    FROM (SELECT started_at FROM etl.runs WHERE NOT dry_run ORDER BY started_at DESC LIMIT %(runs)s) r
)
SELECT day, what, n FROM (
    SELECT created_at::date AS day, 'suspected' AS what, count(*) AS n FROM etl.rename_suspects GROUP BY 1
    UNION ALL
    SELECT decided_at::date, 'decided: ' || status, count(*) FROM etl.rename_suspects
    WHERE decided_at IS NOT NULL GROUP BY 1, 2
) f
WHERE day >= (SELECT since FROM span)
ORDER BY day, what;

-- name: rows_per_table
-- Rows per table at each run: the user-owned tables, and the ETL-owned ones per league.
SELECT r.started_at, h.subject, h.figure
FROM etl.health_checks h
JOIN etl.runs r ON r.run_id = h.run_id
WHERE (h.check_name = 'reconcile' OR (h.check_name = 'rows' AND h.subject NOT LIKE '%%.%%'))
  AND h.run_id IN (SELECT run_id FROM etl.runs WHERE NOT dry_run ORDER BY started_at DESC LIMIT %(runs)s)
ORDER BY h.subject, r.started_at;

-- name: pending_decisions
-- What waits for a person, with the newest review task that asks it (etl.review_links).
SELECT 'quarantine', q.id, q.table_name || ' row ' || q.row_id || ': ' || q.reason, l.url_path
FROM etl.quarantine q
LEFT JOIN etl.review_links l ON l.item = 'quarantine:' || q.id
WHERE q.resolved_at IS NULL
UNION ALL
SELECT 'rename', s.id, s.league_code || ' series ' || s.series_key || ': ' || s.old_name || ' -> ' || s.new_name,
       l.url_path
FROM etl.rename_suspects s
LEFT JOIN etl.review_links l ON l.item = 'rename:' || s.id
WHERE s.status = 'pending'
ORDER BY 1, 2;
