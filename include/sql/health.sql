-- Health checks (league_import.health). Read-only except record_checks.
-- Templates: {table}, {archive} are composed with psycopg.sql.

-- name: count_rows
SELECT count(*) FROM {table};

-- name: last_implied
-- The rows the files implied, per league, at the last successful run (for checks outside a run).
SELECT v->'implied'
FROM etl.runs r, jsonb_each(r.report) AS e(k, v)
WHERE r.status = 'success' AND NOT r.dry_run AND jsonb_typeof(v) = 'object' AND v ? 'implied'
ORDER BY r.finished_at DESC
LIMIT 1;

-- name: league_counts
-- Per league, what the pipeline's rows hold: the league, its active teams, the series and clubs
-- of those teams, its matches and stats rows (on an app's database, not the app's own rows).
SELECT l.code, 1,
       (SELECT count(*) FROM {teams} t WHERE t.league_id = l.id AND t.is_active AND t.owned),
       (SELECT count(DISTINCT t.series_id) FROM {teams} t WHERE t.league_id = l.id AND t.is_active AND t.owned),
       (SELECT count(DISTINCT t.club_id) FROM {teams} t WHERE t.league_id = l.id AND t.is_active AND t.owned),
       (SELECT count(*) FROM {schedule} s WHERE s.league_id = l.id AND s.owned),
       (SELECT count(*) FROM {series_stats} s WHERE s.league_id = l.id AND s.owned)
FROM {leagues} l
WHERE l.code = ANY (%(codes)s);

-- name: owned_duplicates
-- On an app's database: the pipeline's rows (not the app's) beyond one per natural key.
SELECT 'teams', coalesce(sum(n - 1), 0)::bigint FROM (
    SELECT count(*) AS n FROM {teams} WHERE owned GROUP BY league_id, series_id, team_key HAVING count(*) > 1) d
UNION ALL
SELECT 'schedule', coalesce(sum(n - 1), 0)::bigint FROM (
    SELECT count(*) AS n FROM {schedule} WHERE owned
    GROUP BY league_id, series_id, match_date, home_team_id, away_team_id HAVING count(*) > 1) d
UNION ALL
SELECT 'series_stats', coalesce(sum(n - 1), 0)::bigint FROM (
    SELECT count(*) AS n FROM {series_stats} WHERE owned GROUP BY league_id, team_id HAVING count(*) > 1) d;

-- name: backup_counts
-- The counts taken by this run's backup (or the latest backup when no run is named).
SELECT table_name, row_count, taken_at, run_id
FROM etl.backup_counts
WHERE run_id = coalesce(%(run_id)s, (SELECT run_id FROM etl.backup_counts ORDER BY taken_at DESC LIMIT 1));

-- name: archived_since
-- Rows the pipeline archived from a table after the backup was taken, in that run.
SELECT count(*) FROM {archive} WHERE run_id = %(run_id)s AND archived_at >= %(since)s;

-- name: written_by
-- Rows of a table that this run wrote ({column} names the run that wrote each row).
SELECT count(*) FROM {table} WHERE {column} = %(run_id)s;

-- name: baselines
-- Each table's baseline: its count after the last successful, non-dry run before this one, or the
-- count a person accepted as expected (etl.growth_alarms) on a night since: the newer of the two.
WITH last AS (
    SELECT r.run_id, r.finished_at FROM etl.runs r
    WHERE r.status = 'success' AND NOT r.dry_run AND r.run_id IS DISTINCT FROM %(run_id)s
      AND EXISTS (SELECT 1 FROM etl.health_checks x WHERE x.run_id = r.run_id)
    ORDER BY r.finished_at DESC LIMIT 1
), counted AS (
    SELECT h.subject, h.figure AS row_count, NULL::text AS accepted_by, NULL::timestamptz AS accepted_at,
           l.finished_at AS counted_at
    FROM etl.health_checks h JOIN last l ON l.run_id = h.run_id
    WHERE h.check_name = 'rows'
), accepted AS (
    SELECT DISTINCT ON (a.subject) a.subject, a.row_count::double precision, a.decided_by, a.decided_at,
           r.started_at AS counted_at
    FROM etl.growth_alarms a JOIN etl.runs r ON r.run_id = a.run_id
    WHERE a.answer = 'expected' AND a.run_id IS DISTINCT FROM %(run_id)s
    ORDER BY a.subject, r.started_at DESC
)
SELECT DISTINCT ON (subject) subject, row_count, accepted_by, accepted_at
FROM (SELECT * FROM counted UNION ALL SELECT * FROM accepted) b
ORDER BY subject, counted_at DESC;

-- name: raise_growth_alarm
-- A growth warning or error, asked of a person; an older open alarm of the table is superseded.
WITH superseded AS (
    UPDATE etl.growth_alarms SET answer = 'superseded', decided_at = now()
    WHERE subject = %(subject)s AND answer IS NULL AND run_id <> %(run_id)s
)
INSERT INTO etl.growth_alarms (run_id, subject, status, row_count, baseline, written, ratio)
VALUES (%(run_id)s, %(subject)s, %(status)s, %(row_count)s, %(baseline)s, %(written)s, %(ratio)s)
ON CONFLICT (run_id, subject) DO UPDATE
SET status = EXCLUDED.status, row_count = EXCLUDED.row_count, baseline = EXCLUDED.baseline,
    written = EXCLUDED.written, ratio = EXCLUDED.ratio
RETURNING id;

-- name: quarantine_waiting
SELECT count(*), coalesce(jsonb_agg(jsonb_build_object('table', table_name, 'row_id', row_id, 'reason', reason)
                                    ORDER BY created_at DESC) FILTER (WHERE rn <= 5), '[]'::jsonb)
FROM (SELECT *, row_number() OVER (ORDER BY created_at DESC) AS rn
      FROM etl.quarantine WHERE resolved_at IS NULL) q;

-- name: renames_waiting
SELECT count(*), coalesce(jsonb_agg(jsonb_build_object('id', id, 'league', league_code, 'series', series_key,
                                                       'old', old_name, 'new', new_name, 'score', score)
                                    ORDER BY id) FILTER (WHERE rn <= 5), '[]'::jsonb)
FROM (SELECT *, row_number() OVER (ORDER BY id) AS rn FROM etl.rename_suspects WHERE status = 'pending') r;

-- name: freshness
-- Per league read by this run (or the latest run that read files): how old its newest file is,
-- the schedule's last date, and for how many runs in a row (successful ones, and this one) its
-- files were identical.
WITH this AS (
    SELECT coalesce(%(run_id)s, (SELECT run_id FROM etl.source_files ORDER BY read_at DESC LIMIT 1)) AS run_id
), files AS (
    SELECT sf.run_id, sf.league_code, min(sf.read_at) AS read_at, max(sf.modified_at) AS modified,
           max(sf.last_date) AS last_date,
           string_agg(sf.file_name || ':' || sf.sha256, ',' ORDER BY sf.file_name) AS fingerprint
    FROM etl.source_files sf
    GROUP BY sf.run_id, sf.league_code
), history AS (
    SELECT f.* FROM files f
    WHERE f.run_id = (SELECT run_id FROM this)
       OR EXISTS (SELECT 1 FROM etl.runs r WHERE r.run_id = f.run_id AND r.status = 'success' AND NOT r.dry_run)
)
SELECT c.league_code, c.modified, c.last_date,
       (SELECT count(*) FROM history h
        WHERE h.league_code = c.league_code AND h.read_at <= c.read_at AND h.fingerprint = c.fingerprint
          AND NOT EXISTS (SELECT 1 FROM history d
                          WHERE d.league_code = c.league_code AND d.read_at > h.read_at
                            AND d.read_at <= c.read_at AND d.fingerprint <> c.fingerprint)) AS same_runs
FROM files c
WHERE c.run_id = (SELECT run_id FROM this)
ORDER BY c.league_code;

-- name: record_checks
INSERT INTO etl.health_checks (run_id, check_name, subject, figure, threshold, status, detail)
VALUES (%(run_id)s, %(check_name)s, %(subject)s, %(figure)s, %(threshold)s, %(status)s, %(detail)s)
ON CONFLICT (run_id, check_name, subject) DO UPDATE
SET figure = EXCLUDED.figure, threshold = EXCLUDED.threshold, status = EXCLUDED.status,
    detail = EXCLUDED.detail, checked_at = now();

-- name: league_mismatch
-- User rows whose own league column names another league than their team's.
SELECT count(*), coalesce((array_agg({row_id} ORDER BY {row_id}))[1:5], '{{}}')
FROM {table} t JOIN {teams} x ON x.id = t.{column}
WHERE t.{league} IS DISTINCT FROM x.league_id AND t.{league} IS NOT NULL;
