-- Incremental, set-based load of every staged league in one transaction (league_import.upsert).
-- Rows come from the run's stage (etl.stage_*); each statement is one set-based pass over all
-- leagues. Writes only what changed: new rows are found by anti-join (no INSERT ... ON CONFLICT,
-- which takes a sequence value and locks a row for every row it does not write), changed rows
-- by IS DISTINCT FROM, rows gone from the sources are archived before they are removed.
-- Matches and standings are compared with the stored rows in one full join each, which keeps
-- only the differences: the writes then read those alone.
-- An unchanged re-import writes no row, locks no row and takes no value from any sequence.

-- name: first_import
-- A first import: no team at all yet, so no app row can point at one.
SELECT NOT EXISTS (SELECT 1 FROM public.teams);

-- name: settings
-- For this transaction only: sorts and hashes of a million staged rows in memory, not in
-- batches on disk; and hash joins, not merge joins. A team key repeats across series (a club
-- plays in many), so the planner prices a hash join on (league, series, team key) by its most
-- common team key and takes a merge join of two sorted copies instead, 2 to 3 times slower.
SET LOCAL work_mem = '64MB';
SET LOCAL enable_mergejoin = off;

-- name: staged_leagues_table
-- The leagues of this run, with the files each had: a file absent tonight ("and/or" in the
-- contract) says nothing about what it determines, so its stored rows are kept, not archived.
CREATE TEMP TABLE staged_leagues ON COMMIT DROP AS
SELECT s.league_code,
       EXISTS (SELECT 1 FROM etl.source_files f WHERE f.run_id = %(run_id)s AND f.league_code = s.league_code
                                                  AND f.file_name = %(schedule_file)s) AS has_schedule,
       EXISTS (SELECT 1 FROM etl.source_files f WHERE f.run_id = %(run_id)s AND f.league_code = s.league_code
                                                  AND f.file_name = %(stats_file)s) AS has_stats
FROM (SELECT DISTINCT st.league_code FROM etl.stage_teams st WHERE st.run_id = %(run_id)s) s;

-- name: insert_leagues
INSERT INTO public.leagues (code)
SELECT s.league_code FROM staged_leagues s
WHERE NOT EXISTS (SELECT 1 FROM public.leagues l WHERE l.code = s.league_code)
ORDER BY 1;

-- name: insert_clubs
INSERT INTO public.clubs (name, name_key)
SELECT min(st.club), st.club_key
FROM etl.stage_teams st
WHERE st.run_id = %(run_id)s
  AND NOT EXISTS (SELECT 1 FROM public.clubs c WHERE c.name_key = st.club_key)
GROUP BY st.club_key
ORDER BY st.club_key;

-- name: stage_series
CREATE TEMP TABLE stage_series ON COMMIT DROP AS
SELECT l.id AS league_id, st.series_key, min(st.series_label) AS name
FROM etl.stage_teams st
JOIN public.leagues l ON l.code = st.league_code
WHERE st.run_id = %(run_id)s
GROUP BY l.id, st.series_key;

-- name: insert_series
INSERT INTO public.series (league_id, name, series_key)
SELECT ss.league_id, ss.name, ss.series_key FROM stage_series ss
WHERE NOT EXISTS (SELECT 1 FROM public.series s WHERE s.league_id = ss.league_id AND s.series_key = ss.series_key)
ORDER BY 1, 3;

-- name: update_series
UPDATE public.series s SET name = ss.name
FROM stage_series ss
WHERE s.league_id = ss.league_id AND s.series_key = ss.series_key AND s.name IS DISTINCT FROM ss.name;

-- name: resolve_teams
-- Each staged team's id: the team with its natural key, else the team an alias ties its
-- spelling to (a merge, a person's decision), else none yet (a new team).
CREATE TEMP TABLE resolved_teams ON COMMIT DROP AS
SELECT st.league_code, l.id AS league_id, s.id AS series_id, st.series_key, st.team_key, st.team_name,
       st.sub_team, c.id AS club_id, st.in_stats, st.in_schedule,
       t.id AS key_id, a.team_id AS alias_id, coalesce(t.id, a.team_id) AS team_id, false AS created
FROM etl.stage_teams st
JOIN public.leagues l ON l.code = st.league_code
JOIN public.series s ON s.league_id = l.id AND s.series_key = st.series_key
JOIN public.clubs c ON c.name_key = st.club_key
LEFT JOIN public.teams t ON t.league_id = l.id AND t.series_id = s.id AND t.team_key = st.team_key
LEFT JOIN etl.team_aliases a
       ON a.league_code = st.league_code AND a.series_key = st.series_key AND a.team_key = st.team_key
      AND EXISTS (SELECT 1 FROM public.teams x WHERE x.id = a.team_id)
WHERE st.run_id = %(run_id)s;

-- name: analyze_teams
-- A temp table has no statistics: without them the joins to it are planned for a few hundred rows.
ANALYZE resolved_teams;

-- name: alias_conflicts
-- An alias whose team is also claimed tonight under its own key (both spellings in the files):
-- the alias yields, the spelling becomes a team of its own and a suspect to review.
UPDATE resolved_teams r SET team_id = NULL
WHERE r.key_id IS NULL AND r.alias_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM resolved_teams o WHERE o.key_id = r.alias_id)
RETURNING r.league_code, r.series_key, r.team_name, r.alias_id;

-- name: guard
-- Per staged league: its active teams, and how many no staged team resolves to (read-only).
WITH claimed AS (
    SELECT DISTINCT team_id FROM resolved_teams WHERE team_id IS NOT NULL
), active AS (
    SELECT sl.league_code, count(t.id) AS active, count(t.id) FILTER (WHERE c.team_id IS NULL) AS leaving
    FROM staged_leagues sl
    LEFT JOIN public.leagues l ON l.code = sl.league_code
    LEFT JOIN public.teams t ON t.league_id = l.id AND t.is_active
    LEFT JOIN claimed c ON c.team_id = t.id
    GROUP BY sl.league_code
), stored AS (
    SELECT l.code AS league_code, max(sc.match_date) AS last_season_end
    FROM public.schedule sc JOIN public.leagues l ON l.id = sc.league_id
    WHERE l.code IN (SELECT league_code FROM staged_leagues)
    GROUP BY l.code
), staged AS (
    SELECT ss.league_code, min(ss.match_date) AS new_schedule_start
    FROM etl.stage_schedule ss
    WHERE ss.run_id = %(run_id)s
    GROUP BY ss.league_code
)
SELECT a.league_code, a.active, a.leaving, o.last_season_end, n.new_schedule_start
FROM active a
LEFT JOIN stored o ON o.league_code = a.league_code
LEFT JOIN staged n ON n.league_code = a.league_code
ORDER BY a.league_code;

-- name: insert_teams
WITH inserted AS (
    INSERT INTO public.teams (league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
    SELECT r.league_id, r.club_id, r.series_id, r.team_name, r.team_key, r.sub_team, true
    FROM resolved_teams r
    WHERE r.team_id IS NULL
    ORDER BY r.league_id, r.series_id, r.team_key
    RETURNING id, series_id, team_key
)
UPDATE resolved_teams r SET team_id = i.id, created = true
FROM inserted i
WHERE r.team_id IS NULL AND r.series_id = i.series_id AND r.team_key = i.team_key;

-- name: update_teams
-- Renamed, moved to another club, reactivated; a team found by alias keeps its own key.
WITH written AS (
    UPDATE public.teams t
    SET team_name = r.team_name, club_id = r.club_id, sub_team = r.sub_team, is_active = true, updated_at = now()
    FROM resolved_teams r
    WHERE t.id = r.team_id AND NOT r.created
      AND (t.team_name, t.club_id, t.sub_team, t.is_active) IS DISTINCT FROM (r.team_name, r.club_id, r.sub_team, true)
    RETURNING t.league_id
)
SELECT league_id, count(*) FROM written GROUP BY league_id;

-- name: deactivate_teams
-- Teams that left the sources: kept, with their ids, as inactive. Never deleted.
CREATE TEMP TABLE deactivated ON COMMIT DROP AS
WITH gone AS (
    UPDATE public.teams t
    SET is_active = false, updated_at = now()
    FROM public.leagues l
    WHERE l.id = t.league_id AND t.is_active
      AND l.code IN (SELECT league_code FROM staged_leagues)
      AND NOT EXISTS (SELECT 1 FROM resolved_teams r WHERE r.team_id = t.id)
    RETURNING t.id, t.league_id, t.series_id
)
SELECT * FROM gone;

-- name: team_counts
SELECT league_id, league_code, count(*) AS in_sources, count(*) FILTER (WHERE created) AS created,
       count(*) FILTER (WHERE alias_id IS NOT NULL AND key_id IS NULL AND NOT created) AS by_alias,
       (SELECT count(*) FROM deactivated d WHERE d.league_id = r.league_id) AS deactivated
FROM resolved_teams r
GROUP BY league_id, league_code;

-- name: schedule_changes
-- Tonight's matches against the stored ones of the staged leagues that had a schedule file
-- tonight, in one full join on the
-- natural key: the new ones, the changed ones (time or place), the ones gone from the sources,
-- and any staged one naming a team that was not staged (a bug check). Same matches, no row.
CREATE TEMP TABLE schedule_changes ON COMMIT DROP AS
-- A match's league and series are its teams' (a BYE names one team): two joins, not four.
WITH staged AS (
    SELECT coalesce(h.league_id, a.league_id) AS league_id, coalesce(h.series_id, a.series_id) AS series_id,
           ss.match_date, ss.match_time, h.team_id AS home_team_id, a.team_id AS away_team_id, ss.location,
           (ss.home_key IS NOT NULL AND h.team_id IS NULL) OR (ss.away_key IS NOT NULL AND a.team_id IS NULL)
               AS unresolved
    FROM etl.stage_schedule ss
    LEFT JOIN resolved_teams h
           ON h.league_code = ss.league_code AND h.series_key = ss.series_key AND h.team_key = ss.home_key
    LEFT JOIN resolved_teams a
           ON a.league_code = ss.league_code AND a.series_key = ss.series_key AND a.team_key = ss.away_key
    WHERE ss.run_id = %(run_id)s
), stored AS (
    SELECT t.* FROM public.schedule t
    WHERE t.league_id IN (SELECT l.id FROM public.leagues l
                          JOIN staged_leagues s ON s.league_code = l.code AND s.has_schedule)
)
SELECT CASE WHEN t.id IS NULL THEN 'new' WHEN r.league_id IS NULL THEN 'gone' ELSE 'changed' END AS change,
       t.id, coalesce(r.league_id, t.league_id) AS league_id, r.series_id, r.match_date, r.match_time,
       r.home_team_id, r.away_team_id, r.location, coalesce(r.unresolved, false) AS unresolved
FROM staged r
FULL JOIN stored t
  ON t.league_id = r.league_id AND t.series_id = r.series_id AND t.match_date = r.match_date
 AND coalesce(t.home_team_id, 0) = coalesce(r.home_team_id, 0)
 AND coalesce(t.away_team_id, 0) = coalesce(r.away_team_id, 0)
WHERE t.id IS NULL OR r.league_id IS NULL OR r.unresolved
   OR (t.match_time, t.location) IS DISTINCT FROM (r.match_time, r.location);

-- name: analyze_schedule
ANALYZE schedule_changes;

-- name: unresolved_schedule
SELECT count(*) FROM schedule_changes WHERE unresolved;

-- name: schedule_gone
-- Matches of a staged league that the sources no longer list (alias t, for the archive).
t.id IN (SELECT c.id FROM schedule_changes c WHERE c.change = 'gone')

-- name: delete_schedule
WITH gone AS (DELETE FROM public.schedule t WHERE {predicate} RETURNING t.league_id)
SELECT league_id, count(*) FROM gone GROUP BY league_id;

-- name: insert_schedule
WITH written AS (
    INSERT INTO public.schedule (league_id, series_id, match_date, match_time, home_team_id, away_team_id, location)
    SELECT c.league_id, c.series_id, c.match_date, c.match_time, c.home_team_id, c.away_team_id, c.location
    FROM schedule_changes c
    WHERE c.change = 'new'
    -- In the natural key's order: each index grows at its right edge, not all over.
    ORDER BY c.league_id, c.series_id, c.match_date, c.home_team_id, c.away_team_id
    RETURNING league_id
)
SELECT league_id, count(*) FROM written GROUP BY league_id;

-- name: update_schedule
WITH written AS (
    UPDATE public.schedule t
    SET match_time = c.match_time, location = c.location
    FROM schedule_changes c
    WHERE c.change = 'changed' AND t.id = c.id
    RETURNING t.league_id
)
SELECT league_id, count(*) FROM written GROUP BY league_id;

-- name: stats_changes
-- Tonight's standings against the stored ones of the staged leagues, as for the schedule.
CREATE TEMP TABLE stats_changes ON COMMIT DROP AS
WITH staged AS (
    SELECT r.league_id, r.series_id, r.team_id, st.points, st.matches_won, st.matches_lost, st.matches_tied,
           st.lines_won, st.lines_lost, st.lines_for, st.lines_ret, st.sets_won, st.sets_lost,
           st.games_won, st.games_lost
    FROM etl.stage_stats st
    JOIN resolved_teams r
      ON r.league_code = st.league_code AND r.series_key = st.series_key AND r.team_key = st.team_key
    WHERE st.run_id = %(run_id)s
), stored AS (
    SELECT t.* FROM public.series_stats t
    WHERE t.league_id IN (SELECT l.id FROM public.leagues l
                          JOIN staged_leagues s ON s.league_code = l.code AND s.has_stats)
)
SELECT CASE WHEN t.id IS NULL THEN 'new' WHEN r.league_id IS NULL THEN 'gone' ELSE 'changed' END AS change,
       t.id, coalesce(r.league_id, t.league_id) AS league_id, r.series_id, r.team_id, r.points,
       r.matches_won, r.matches_lost, r.matches_tied, r.lines_won, r.lines_lost, r.lines_for, r.lines_ret,
       r.sets_won, r.sets_lost, r.games_won, r.games_lost
FROM staged r
FULL JOIN stored t ON t.league_id = r.league_id AND t.series_id = r.series_id AND t.team_id = r.team_id
WHERE t.id IS NULL OR r.league_id IS NULL
   OR (t.points, t.matches_won, t.matches_lost, t.matches_tied, t.lines_won, t.lines_lost,
       t.lines_for, t.lines_ret, t.sets_won, t.sets_lost, t.games_won, t.games_lost)
      IS DISTINCT FROM
      (r.points, r.matches_won, r.matches_lost, r.matches_tied, r.lines_won, r.lines_lost,
       r.lines_for, r.lines_ret, r.sets_won, r.sets_lost, r.games_won, r.games_lost);

-- name: analyze_stats
ANALYZE stats_changes;

-- name: stats_gone
t.id IN (SELECT c.id FROM stats_changes c WHERE c.change = 'gone')

-- name: delete_stats
WITH gone AS (DELETE FROM public.series_stats t WHERE {predicate} RETURNING t.league_id)
SELECT league_id, count(*) FROM gone GROUP BY league_id;

-- name: insert_stats
WITH written AS (
INSERT INTO public.series_stats
    (league_id, series_id, team_id, points, matches_won, matches_lost, matches_tied,
     lines_won, lines_lost, lines_for, lines_ret, sets_won, sets_lost, games_won, games_lost)
SELECT c.league_id, c.series_id, c.team_id, c.points, c.matches_won, c.matches_lost, c.matches_tied,
       c.lines_won, c.lines_lost, c.lines_for, c.lines_ret, c.sets_won, c.sets_lost, c.games_won, c.games_lost
FROM stats_changes c
WHERE c.change = 'new'
ORDER BY c.league_id, c.series_id, c.team_id
RETURNING league_id
)
SELECT league_id, count(*) FROM written GROUP BY league_id;

-- name: update_stats
WITH written AS (
UPDATE public.series_stats t
SET points = c.points, matches_won = c.matches_won, matches_lost = c.matches_lost,
    matches_tied = c.matches_tied, lines_won = c.lines_won, lines_lost = c.lines_lost,
    lines_for = c.lines_for, lines_ret = c.lines_ret, sets_won = c.sets_won, sets_lost = c.sets_lost,
    games_won = c.games_won, games_lost = c.games_lost
FROM stats_changes c
WHERE c.change = 'changed' AND t.id = c.id
RETURNING t.league_id
)
SELECT league_id, count(*) FROM written GROUP BY league_id;
