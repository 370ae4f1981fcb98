-- Decisions a person makes (league_import.review): quarantined rows and suspected renames.
-- Templates: {table}, {column}, {archive}, {row_id}, {text}, {author}, {columns}, {values} are
-- composed with psycopg.sql.

-- name: waiting_quarantine
SELECT q.id, q.table_name, q.column_name, q.row_id, q.old_team_id, q.reason, q.candidates, q.run_id, q.created_at
FROM etl.quarantine q
WHERE q.resolved_at IS NULL
ORDER BY q.id;

-- name: quarantine_entry
-- The entry, locked; its xmin is the transaction that quarantined the row (and detached it).
SELECT q.id, q.table_name, q.column_name, q.row_id, q.old_team_id, q.reason, q.candidates, q.run_id, q.created_at,
       q.resolved_at, q.resolved_by, q.resolution, q.xmin::text
FROM etl.quarantine q WHERE q.id = %(id)s
FOR UPDATE;

-- name: quarantine_by_row
SELECT id FROM etl.quarantine
WHERE table_name = %(table_name)s AND column_name = %(column_name)s AND row_id = %(row_id)s AND resolved_at IS NULL
FOR UPDATE;

-- name: archived_row
-- The row as it was quarantined (or as the app left it when an answer was refused since).
SELECT {doc}
FROM {archive} t
WHERE {row_id} = %(row_id)s AND t.reason = 'orphan'
ORDER BY t.archived_at DESC
LIMIT 1;

-- name: live_rows
-- The live row that is the archived one (by id; without one, equal in every column but the team).
SELECT t.{column}, {doc}, t.ctid::text, t.xmin::text
FROM {table} t, jsonb_populate_record(NULL::{table}, %(doc)s) r
WHERE {same};

-- name: live_rows_locked
SELECT t.{column}, {doc}, t.ctid::text, t.xmin::text
FROM {table} t, jsonb_populate_record(NULL::{table}, %(doc)s) r
WHERE {same}
FOR UPDATE OF t;

-- name: league_of
-- A league by its id, else the league the key map last knew a team id in.
SELECT l.id, l.code FROM {leagues} l
WHERE l.id = %(league_id)s::bigint
   OR (%(league_id)s::bigint IS NULL AND l.code = (
       SELECT k.league_code FROM etl.team_key_map k WHERE k.team_id = %(team_id)s ORDER BY k.epoch DESC LIMIT 1))
LIMIT 1;

-- name: series_teams
-- The active teams of a series (a quarantined row's old team's), for a question with no other candidate.
SELECT t.id FROM {teams} t
JOIN {leagues} l ON l.id = t.league_id
JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id
WHERE l.code = %(league)s AND s.series_key = %(series_key)s AND t.is_active
ORDER BY t.id
LIMIT 12;

-- name: old_team
-- What the key map knows of a team id: league, series and name (its latest meaning).
SELECT league_code, series_key, team_name, merged_into
FROM etl.team_key_map WHERE team_id = %(team_id)s
ORDER BY epoch DESC LIMIT 1;

-- name: teams_named
-- Display names of teams: "name (league, series S, id N)", whether active, and their league.
SELECT t.id, t.team_name || ' (' || l.code || ', series ' || coalesce(s.series_key, s.name) || ', id ' || t.id || ')',
       t.is_active, t.league_id, l.code
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

-- name: reattach
UPDATE {table} t SET {column} = %(team_id)s
WHERE t.ctid = %(ctid)s::tid AND t.{column} IS NULL;

-- name: reinsert_from_archive
INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE
SELECT {values} FROM {archive} t
WHERE {row_id} = %(row_id)s AND t.reason = 'orphan'
ORDER BY t.archived_at DESC
LIMIT 1
ON CONFLICT DO NOTHING;

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

-- name: open_growth_alarms
SELECT id, run_id, subject, status, row_count, baseline, written, ratio, created_at
FROM etl.growth_alarms WHERE answer IS NULL
ORDER BY id;

-- name: growth_alarm
SELECT subject, row_count, answer, decided_by, decided_at FROM etl.growth_alarms WHERE id = %(id)s
FOR UPDATE;

-- name: answer_growth
UPDATE etl.growth_alarms SET answer = %(answer)s, decided_by = %(by)s, decided_at = now() WHERE id = %(id)s;

-- name: open_questions
-- How many questions wait, by kind (cheap: no evidence read).
SELECT (SELECT count(*) FROM etl.quarantine WHERE resolved_at IS NULL),
       (SELECT count(*) FROM etl.rename_suspects WHERE status = 'pending'),
       (SELECT count(*) FROM etl.growth_alarms WHERE answer IS NULL);
