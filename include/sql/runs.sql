-- etl.runs, the run lease and the task lock (league_import.runs).

-- name: start
INSERT INTO etl.runs (run_id, dry_run, status, dag_id) VALUES (%(run_id)s, %(dry_run)s, 'running', %(dag_id)s)
ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL, dry_run = EXCLUDED.dry_run;

-- name: record
UPDATE etl.runs SET report = jsonb_set(report, ARRAY[%(step)s], %(report)s) WHERE run_id = %(run_id)s;

-- name: report
SELECT report FROM etl.runs WHERE run_id = %(run_id)s;

-- name: finish
INSERT INTO etl.runs AS r (run_id, status, finished_at, report)
VALUES (%(run_id)s, %(status)s, now(), %(extra)s)
ON CONFLICT (run_id) DO UPDATE
SET status = EXCLUDED.status, finished_at = now(), report = r.report || EXCLUDED.report;

-- name: try_task_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: task_lock
SELECT pg_advisory_lock(%(key)s);

-- name: lease
-- The lease, with whether its run still says it is running and how old its heartbeat is. The
-- row as JSON: read before the task upgrades the schema, it may lack the columns added since.
SELECT to_jsonb(l),
       EXISTS (SELECT 1 FROM etl.runs r WHERE r.run_id = l.run_id AND r.status = 'running') AS running,
       now() - l.heartbeat_at > %(stale)s::interval AS stale
FROM etl.run_lock l WHERE l.id = 1;

-- name: lease_for_update
SELECT run_id FROM etl.run_lock WHERE id = 1 FOR UPDATE;

-- name: claim
INSERT INTO etl.run_lock AS l (id, run_id, dag_id, holder, acquired_at, heartbeat_at)
VALUES (1, %(run_id)s, %(dag_id)s, %(holder)s, now(), now())
ON CONFLICT (id) DO UPDATE
SET run_id = EXCLUDED.run_id, dag_id = EXCLUDED.dag_id, holder = EXCLUDED.holder,
    acquired_at = CASE WHEN l.run_id = EXCLUDED.run_id THEN l.acquired_at ELSE now() END,
    heartbeat_at = now();

-- name: heartbeat
UPDATE etl.run_lock SET heartbeat_at = now() WHERE id = 1 AND run_id = %(run_id)s;

-- name: release
UPDATE etl.run_lock SET run_id = NULL, holder = NULL WHERE id = 1 AND run_id = %(run_id)s;

-- name: free
-- By hand (league-import unlock): the lease is freed and its run marked failed.
WITH freed AS (
    UPDATE etl.run_lock SET run_id = NULL, holder = NULL WHERE id = 1 AND run_id = %(run_id)s RETURNING %(run_id)s AS run_id
)
UPDATE etl.runs r SET status = 'failed', finished_at = now(),
       report = r.report || jsonb_build_object('error', 'lease freed by hand: ' || %(why)s)
FROM freed WHERE r.run_id = freed.run_id AND r.status = 'running';

-- name: taken_over
-- The run whose lease another run took: failed, with the reason, unless it finished meanwhile.
UPDATE etl.runs SET status = 'failed', finished_at = coalesce(finished_at, now()),
       report = report || jsonb_build_object('error', %(why)s::text)
WHERE run_id = %(run_id)s AND status = 'running';

-- name: latest
SELECT run_id, status, dry_run, report FROM etl.runs ORDER BY started_at DESC LIMIT 1;
