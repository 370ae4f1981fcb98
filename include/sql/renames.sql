-- Suspected renames (league_import.renames): read in the upsert's transaction, from its temp
-- tables resolved_teams (tonight's teams) and deactivated (teams that left tonight).

-- name: rename_candidates
-- Per league and series: teams created tonight, and teams that left tonight.
SELECT 'created' AS side, r.team_id, r.league_code, r.series_key, c.name AS club, r.team_name, r.sub_team
FROM resolved_teams r
JOIN {clubs} c ON c.id = r.club_id
WHERE r.created
UNION ALL
SELECT 'left', t.id, l.code, s.series_key, c.name, t.team_name, t.sub_team
FROM deactivated d
JOIN {teams} t ON t.id = d.id
JOIN {leagues} l ON l.id = t.league_id
JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id
JOIN {clubs} c ON c.id = t.club_id;

-- name: split_candidates
-- Tonight's teams named in only one of their league's two files: one team spelled two ways
-- across the files shows up as one team of each kind.
SELECT CASE WHEN r.in_stats THEN 'stats' ELSE 'schedule' END, r.team_id, r.league_code, r.series_key,
       c.name, r.team_name, r.sub_team
FROM resolved_teams r
JOIN {clubs} c ON c.id = r.club_id
WHERE r.in_stats <> r.in_schedule
  AND r.league_code IN (SELECT league_code FROM etl.source_files WHERE run_id = %(run_id)s
                        GROUP BY league_code HAVING count(*) = 2);

-- name: user_rows
SELECT {column}, count(*) FROM {table} WHERE {column} = ANY (%(ids)s) GROUP BY {column};

-- name: record_suspect
INSERT INTO etl.rename_suspects
    (kind, league_code, series_key, old_team_id, new_team_id, old_name, new_name, score, user_rows, run_id)
VALUES (%(kind)s, %(league_code)s, %(series_key)s, %(old_team_id)s, %(new_team_id)s, %(old_name)s,
        %(new_name)s, %(score)s, %(user_rows)s, %(run_id)s)
ON CONFLICT (old_team_id, new_team_id) DO NOTHING
RETURNING id;

-- name: pending
SELECT id, kind, league_code, series_key, old_team_id, new_team_id, old_name, new_name, score, user_rows,
       run_id, created_at
FROM etl.rename_suspects
WHERE status = 'pending'
ORDER BY id;

-- name: gone
-- A pending pair whose teams no longer both exist (merged by another path) is not asked again.
UPDATE etl.rename_suspects r SET status = 'gone', decided_at = now(), decided_by = 'league_import'
WHERE r.status = 'pending'
  AND (NOT EXISTS (SELECT 1 FROM {teams} t WHERE t.id = r.old_team_id AND t.owned)
       OR NOT EXISTS (SELECT 1 FROM {teams} t WHERE t.id = r.new_team_id AND t.owned));
