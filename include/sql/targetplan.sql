-- What `target check` reads of the target (league_import.targetplan). Read-only.

-- name: existing_teams
-- Every team with its league's code, its club's and series' names, and the keys the pipeline
-- keeps for its own teams.
SELECT t.id, l.code, c.name, s.name, t.team_name, t.owned, t.team_key, s.series_key, t.is_active
FROM {teams} t
JOIN {leagues} l ON l.id = t.league_id
LEFT JOIN {clubs} c ON c.id = t.club_id
LEFT JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id;
