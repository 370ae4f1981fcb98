-- What `target check` reads of the target (league_import.targetplan). Read-only.

-- name: existing_teams
-- Every team with its league's code, its club's and series' names, and the keys the pipeline
-- keeps for its own teams.
SELECT t.id, l.code, c.name, s.name, t.team_name, t.owned, t.team_key, s.series_key, t.is_active
FROM {teams} t
JOIN {leagues} l ON l.id = t.league_id
LEFT JOIN {clubs} c ON c.id = t.club_id
LEFT JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id;

-- name: existing_matches
-- The target's rows of the leagues' schedule that are not the pipeline's, with what adoption
-- compares: the natural key by ids, and the texts of adopt_if_equal.
SELECT t.id, l.code, t.match_date, t.home_team_id, t.away_team_id, t.home_team, t.away_team
FROM {schedule} t
JOIN {leagues} l ON l.id = t.league_id
WHERE NOT t.owned AND l.code = ANY (%(codes)s);

-- name: existing_standings
SELECT t.id, l.code, t.team_id
FROM {series_stats} t
JOIN {leagues} l ON l.id = t.league_id
WHERE NOT t.owned AND l.code = ANY (%(codes)s);
