-- Decisions a person makes (league_import.review): quarantined rows and suspected renames.
-- Templates: {table}, {column}, {archive}, {row_id}, {text}, {author}, {columns}, {values} are
-- composed with psycopg.sql.

-- name: waiting_quarantine
SELECT q.id, q.table_name, q.column_name, q.row_id, q.old_team_id, q.reason, q.candidates, q.run_id, q.created_at
FROM etl.quarantine q
WHERE q.resolved_at IS NULL
ORDER BY q.id;

-- name: quarantine_entry
SELECT q.id, q.table_name, q.column_name, q.row_id, q.old_team_id, q.reason, q.candidates, q.run_id, q.created_at,
       q.resolved_at, q.resolved_by, q.resolution
FROM etl.quarantine q WHERE q.id = %(id)s
FOR UPDATE;

-- name: quarantine_by_row
SELECT id FROM etl.quarantine
WHERE table_name = %(table_name)s AND column_name = %(column_name)s AND row_id = %(row_id)s AND resolved_at IS NULL
FOR UPDATE;

-- name: archived_copy
-- The row as it was quarantined: its text and author, from its archived copy.
SELECT {text}, {author}
FROM {archive} t
WHERE {row_id} = %(row_id)s AND t.reason = 'orphan'
ORDER BY t.archived_at DESC
LIMIT 1;

-- name: old_team
-- What the key map knows of a team id: league, series and name (its latest meaning).
SELECT league_code, series_key, team_name, merged_into
FROM etl.team_key_map WHERE team_id = %(team_id)s
ORDER BY epoch DESC LIMIT 1;

-- name: teams_named
-- Display names of teams: "name (league, series S, id N)".
SELECT t.id, t.team_name || ' (' || l.code || ', series ' || coalesce(s.series_key, s.name) || ', id ' || t.id || ')',
       t.is_active
FROM {teams} t
JOIN {leagues} l ON l.id = t.league_id
JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id
WHERE t.id = ANY (%(ids)s)
ORDER BY t.id;

-- name: member_teams
-- The active teams a user belongs to.
SELECT DISTINCT t.id FROM {memberships} m JOIN {teams} t ON t.id = m.team_id
WHERE m.user_id = %(user_id)s AND t.is_active
ORDER BY t.id;

-- name: team_exists
SELECT EXISTS (SELECT 1 FROM {teams_table} x WHERE x.{teams_id} = %(team_id)s);

-- name: reattach
UPDATE {table} t SET {column} = %(team_id)s
WHERE {row_id} = %(row_id)s AND t.{column} IS NULL;

-- name: reinsert_from_archive
INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE
SELECT {values} FROM {archive} t
WHERE {row_id} = %(row_id)s AND t.reason = 'orphan'
ORDER BY t.archived_at DESC
LIMIT 1
ON CONFLICT DO NOTHING;

-- name: archived_exists
SELECT EXISTS (SELECT 1 FROM {archive} t WHERE {row_id} = %(row_id)s AND t.reason = 'orphan');

-- name: resolve_quarantine
UPDATE etl.quarantine
SET resolved_at = now(), resolved_team_id = %(team_id)s, resolved_by = %(by)s, resolution = %(resolution)s
WHERE id = %(id)s;

-- name: suspect
SELECT id, kind, league_code, series_key, old_team_id, new_team_id, old_name, new_name, score, user_rows,
       status, decided_by, decided_at
FROM etl.rename_suspects WHERE id = %(id)s
FOR UPDATE;

-- name: decide_suspect
UPDATE etl.rename_suspects SET status = %(status)s, decided_by = %(by)s, decided_at = now() WHERE id = %(id)s;

-- name: recorded_outcome
-- What a review run already did with an item: a retry of its apply task records nothing again.
SELECT outcome FROM etl.decisions
WHERE item = %(item)s AND dag_run_id = %(dag_run_id)s
ORDER BY id
LIMIT 1;

-- name: record_decision
INSERT INTO etl.decisions (item, choice, outcome, decided_by, via, dag_run_id)
VALUES (%(item)s, %(choice)s, %(outcome)s, %(by)s, %(via)s, %(dag_run_id)s)
RETURNING id, decided_at;

-- name: record_link
INSERT INTO etl.review_links (item, dag_run_id, task_id, map_index, url_path)
VALUES (%(item)s, %(dag_run_id)s, %(task_id)s, %(map_index)s, %(url_path)s)
ON CONFLICT (item) DO UPDATE
SET dag_run_id = EXCLUDED.dag_run_id, task_id = EXCLUDED.task_id, map_index = EXCLUDED.map_index,
    url_path = EXCLUDED.url_path, asked_at = now();
