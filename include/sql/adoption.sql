-- Adoption (league_import.adoption): existing rows of an app's database that are the sources'
-- own become the pipeline's instead of being duplicated. The app's rows the pipeline may adopt
-- are read here, keyed in Python by the identity rules (league_import.identity), and kept in
-- the session's temp tables adoptable_clubs, adoptable_series and adoptable_teams, one row per
-- key (the lowest id: the one user data was most likely made against). On a target the
-- pipeline owns every row is already its own, and these tables stay empty.

-- name: create_adoptable
DROP TABLE IF EXISTS adoptable_clubs, adoptable_series, adoptable_teams;
CREATE TEMP TABLE adoptable_clubs (id bigint, name text, name_key text) ON COMMIT DROP;
CREATE TEMP TABLE adoptable_series (id bigint, league_id bigint, name text, series_key text) ON COMMIT DROP;
CREATE TEMP TABLE adoptable_teams (
    id bigint, league_id bigint, series_id bigint, team_name text, series_key text, team_key text, sub_team text
) ON COMMIT DROP;

-- name: unowned_clubs
SELECT c.id, c.name FROM {clubs} c WHERE NOT c.owned AND c.name IS NOT NULL;

-- name: unowned_series
-- Of the leagues staged tonight.
SELECT s.id, s.league_id, s.name
FROM {series} s
JOIN {leagues} l ON l.id = s.league_id
WHERE NOT s.owned AND s.name IS NOT NULL
  AND l.code IN (SELECT st.league_code FROM etl.stage_teams st WHERE st.run_id = %(run_id)s);

-- name: unowned_teams
-- Of the leagues staged tonight, with their series' names (a team's name is read with its label).
SELECT t.id, t.league_id, t.series_id, t.team_name, s.name
FROM {teams} t
JOIN {series} s ON s.id = t.series_id AND s.league_id = t.league_id
JOIN {leagues} l ON l.id = t.league_id
WHERE NOT t.owned AND t.team_name IS NOT NULL AND s.name IS NOT NULL
  AND l.code IN (SELECT st.league_code FROM etl.stage_teams st WHERE st.run_id = %(run_id)s);

-- name: adopt_clubs
-- Tonight's clubs the pipeline has no row for, found among the app's: the lowest id per key.
SELECT DISTINCT ON (a.name_key) a.id, a.name, a.name_key
FROM adoptable_clubs a
WHERE a.name_key IN (SELECT st.club_key FROM etl.stage_teams st WHERE st.run_id = %(run_id)s)
  AND NOT EXISTS (SELECT 1 FROM {clubs} c WHERE c.owned AND c.name_key = a.name_key)
ORDER BY a.name_key, a.id

-- name: adopt_series
SELECT DISTINCT ON (a.league_id, a.series_key) a.id, a.league_id, a.name, a.series_key
FROM adoptable_series a
JOIN {leagues} l ON l.id = a.league_id
WHERE (l.code, a.series_key) IN (SELECT st.league_code, st.series_key FROM etl.stage_teams st
                                 WHERE st.run_id = %(run_id)s)
  AND NOT EXISTS (SELECT 1 FROM {series} s
                  WHERE s.owned AND s.league_id = a.league_id AND s.series_key = a.series_key)
ORDER BY a.league_id, a.series_key, a.id

-- name: one_team_per_key
-- The lowest id of the app's teams per key; the others stay the app's, and are reported.
DELETE FROM adoptable_teams a
WHERE EXISTS (SELECT 1 FROM adoptable_teams b
              WHERE (b.league_id, b.series_key, b.team_key) = (a.league_id, a.series_key, a.team_key) AND b.id < a.id)
RETURNING a.id;

-- name: analyze_adoptable
ANALYZE adoptable_teams;
