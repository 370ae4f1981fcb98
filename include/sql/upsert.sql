-- Incremental, set-based load of every staged league in one transaction (league_import.upsert).
-- Rows come from the run's stage (etl.stage_*); each statement is one set-based pass over all
-- leagues. The target's tables are read through its relations ({leagues}, {teams}, ...: section
-- 4's names, with the pipeline's keys and `owned`) and written by league_import.target from the
-- temp tables below, which hold each row to write with the entity's fields.
-- Writes only what changed: new rows are found by anti-join (no INSERT ... ON CONFLICT, which
-- takes a sequence value and locks a row for every row it does not write), changed rows by IS
-- DISTINCT FROM, rows gone from the sources are archived before they are removed. Only rows the
-- pipeline wrote (or adopted) are compared, updated or removed: on an app's database the app's
-- own rows in these tables are never touched.
-- An unchanged re-import writes no row, locks no row and takes no value from any sequence.
-- Templates: {next_id} (a new id of the entity), {changed}, {adopt_match}, {staged_matches}.

-- name: first_import
-- A first import: no team at all yet, so no app row can point at one.
SELECT NOT EXISTS (SELECT 1 FROM {teams} t);

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

-- name: new_leagues
SELECT {next_id} AS id, n.code
FROM (SELECT s.league_code AS code FROM staged_leagues s
      WHERE NOT EXISTS (SELECT 1 FROM {leagues} l WHERE l.code = s.league_code)
      ORDER BY 1) n

-- name: new_clubs
SELECT {next_id} AS id, n.name, n.name_key
FROM (SELECT min(st.club) AS name, st.club_key AS name_key
      FROM etl.stage_teams st
      WHERE st.run_id = %(run_id)s
        AND NOT EXISTS (SELECT 1 FROM {clubs} c WHERE c.name_key = st.club_key AND c.owned)
      GROUP BY st.club_key
      ORDER BY st.club_key) n

-- name: stage_series
CREATE TEMP TABLE stage_series ON COMMIT DROP AS
SELECT l.id AS league_id, l.code AS league, st.series_key, min(st.series_label) AS name
FROM etl.stage_teams st
JOIN {leagues} l ON l.code = st.league_code
WHERE st.run_id = %(run_id)s
GROUP BY l.id, l.code, st.series_key;

-- name: new_series
SELECT {next_id} AS id, n.league_id, n.league, n.name, n.series_key
FROM (SELECT ss.league_id, ss.league, ss.name, ss.series_key FROM stage_series ss
      WHERE NOT EXISTS (SELECT 1 FROM {series} s
                        WHERE s.league_id = ss.league_id AND s.series_key = ss.series_key AND s.owned)
      ORDER BY 1, 4) n

-- name: renamed_series
-- A series whose label changed (the files' first spelling); never onto a name another series of
-- the league holds.
SELECT s.id, s.league_id, ss.name
FROM {series} s
JOIN stage_series ss ON s.league_id = ss.league_id AND s.series_key = ss.series_key
WHERE s.owned AND s.name IS DISTINCT FROM ss.name
  AND NOT EXISTS (SELECT 1 FROM {series} o WHERE o.league_id = s.league_id AND o.name = ss.name)

-- name: resolve_teams
-- Each staged team's id: the team with its natural key, else the team an alias ties its
-- spelling to (a merge, a person's decision), else an existing team of the target with the same
-- key that is not the pipeline's yet (adopted: league_import.adoption), else none yet (new).
CREATE TEMP TABLE resolved_teams ON COMMIT DROP AS
SELECT st.league_code, l.id AS league_id, s.id AS series_id, st.series_key, st.series_label, st.team_key,
       st.team_name, st.sub_team, c.id AS club_id, st.club, st.in_stats, st.in_schedule,
       t.id AS key_id, a.team_id AS alias_id, d.id AS adopted_id, coalesce(t.id, a.team_id, d.id) AS team_id,
       false AS created
FROM etl.stage_teams st
JOIN {leagues} l ON l.code = st.league_code
JOIN {series} s ON s.league_id = l.id AND s.series_key = st.series_key AND s.owned
JOIN {clubs} c ON c.name_key = st.club_key AND c.owned
LEFT JOIN {teams} t ON t.league_id = l.id AND t.series_id = s.id AND t.team_key = st.team_key AND t.owned
LEFT JOIN etl.team_aliases a
       ON a.league_code = st.league_code AND a.series_key = st.series_key AND a.team_key = st.team_key
      AND EXISTS (SELECT 1 FROM {teams} x WHERE x.id = a.team_id AND x.owned)
LEFT JOIN adoptable_teams d
       ON d.league_id = l.id AND d.series_key = st.series_key AND d.team_key = st.team_key
WHERE st.run_id = %(run_id)s;

-- name: analyze_teams
-- A temp table has no statistics: without them the joins to it are planned for a few hundred rows.
ANALYZE resolved_teams;

-- name: adopted_teams
-- Existing teams of the target that are tonight's teams: the pipeline's from now on, as they
-- are (the update below brings their name, club and series to the files').
SELECT a.id, a.league_id, a.series_id, a.team_name, r.team_key, r.sub_team
FROM resolved_teams r
JOIN adoptable_teams a ON a.id = r.adopted_id
WHERE r.key_id IS NULL AND r.alias_id IS NULL AND r.team_id = r.adopted_id

-- name: alias_conflicts
-- An alias whose team is also claimed tonight under its own key (both spellings in the files):
-- the alias yields, the spelling becomes a team of its own and a suspect to review.
UPDATE resolved_teams r SET team_id = NULL
WHERE r.key_id IS NULL AND r.alias_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM resolved_teams o WHERE o.key_id = r.alias_id)
RETURNING r.league_code, r.series_key, r.team_name, r.alias_id;

-- name: guard
-- Per staged league: the pipeline's active teams, and how many no staged team resolves to (read-only).
WITH claimed AS (
    SELECT DISTINCT team_id FROM resolved_teams WHERE team_id IS NOT NULL
), active AS (
    SELECT sl.league_code, count(t.id) AS active, count(t.id) FILTER (WHERE c.team_id IS NULL) AS leaving
    FROM staged_leagues sl
    LEFT JOIN {leagues} l ON l.code = sl.league_code
    LEFT JOIN {teams} t ON t.league_id = l.id AND t.is_active AND t.owned
    LEFT JOIN claimed c ON c.team_id = t.id
    GROUP BY sl.league_code
), stored AS (
    SELECT l.code AS league_code, max(sc.match_date) AS last_season_end
    FROM {schedule} sc JOIN {leagues} l ON l.id = sc.league_id
    WHERE l.code IN (SELECT league_code FROM staged_leagues) AND sc.owned
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

-- name: issue_team_ids
-- New teams get their ids, in the natural key's order.
UPDATE resolved_teams r SET team_id = n.id, created = true
FROM (SELECT o.ref, {next_id} AS id
      FROM (SELECT ctid AS ref FROM resolved_teams WHERE team_id IS NULL ORDER BY league_id, series_id, team_key) o) n
WHERE r.ctid = n.ref;

-- name: new_teams
SELECT r.team_id AS id, r.league_id, r.club_id, r.series_id, r.team_name, true AS is_active, r.team_key,
       r.sub_team, r.league_code AS league, r.series_label AS series, r.club
FROM resolved_teams r
WHERE r.created
ORDER BY r.league_id, r.series_id, r.team_key

-- name: team_updates
-- Renamed, moved to another club (or, once adopted, series), reactivated; a team found by alias
-- keeps its own key.
CREATE TEMP TABLE team_updates ON COMMIT DROP AS
SELECT t.id, r.league_id, r.team_name, r.club_id, r.series_id, r.sub_team, true AS is_active,
       r.league_code AS league, r.series_label AS series, r.club
FROM {teams} t
JOIN resolved_teams r ON t.id = r.team_id AND NOT r.created
WHERE (t.team_name, t.club_id, t.series_id, t.sub_team, t.is_active)
      IS DISTINCT FROM (r.team_name, r.club_id, r.series_id, r.sub_team, true);

-- name: updated_per_league
SELECT league_id, count(*) FROM team_updates GROUP BY league_id;

-- name: deactivate_teams
-- Teams of the pipeline that left the sources: kept, with their ids, as inactive. Never deleted.
CREATE TEMP TABLE deactivated ON COMMIT DROP AS
SELECT t.id, t.league_id, t.series_id, false AS is_active
FROM {teams} t
JOIN {leagues} l ON l.id = t.league_id
WHERE t.is_active AND t.owned
  AND l.code IN (SELECT league_code FROM staged_leagues)
  AND NOT EXISTS (SELECT 1 FROM resolved_teams r WHERE r.team_id = t.id);

-- name: team_counts
SELECT league_id, league_code, count(*) AS in_sources, count(*) FILTER (WHERE created) AS created,
       count(*) FILTER (WHERE alias_id IS NOT NULL AND key_id IS NULL AND NOT created) AS by_alias,
       (SELECT count(*) FROM deactivated d WHERE d.league_id = r.league_id) AS deactivated,
       count(*) FILTER (WHERE adopted_id IS NOT NULL AND team_id = adopted_id AND key_id IS NULL
                          AND alias_id IS NULL) AS adopted
FROM resolved_teams r
GROUP BY league_id, league_code;

-- name: staged_matches
-- Tonight's matches with their teams' ids. A match's league and series are its teams' (a BYE
-- names one team): two joins, not four.
SELECT coalesce(h.league_id, a.league_id) AS league_id, coalesce(h.series_id, a.series_id) AS series_id,
       ss.match_date, ss.match_time, h.team_id AS home_team_id, a.team_id AS away_team_id, ss.location,
       ss.home_name AS home_team, ss.away_name AS away_team, ss.series_label AS series, ss.league_code AS league,
       (ss.home_key IS NOT NULL AND h.team_id IS NULL) OR (ss.away_key IS NOT NULL AND a.team_id IS NULL)
           AS unresolved
FROM etl.stage_schedule ss
LEFT JOIN resolved_teams h
       ON h.league_code = ss.league_code AND h.series_key = ss.series_key AND h.team_key = ss.home_key
LEFT JOIN resolved_teams a
       ON a.league_code = ss.league_code AND a.series_key = ss.series_key AND a.team_key = ss.away_key
WHERE ss.run_id = %(run_id)s

-- name: adopt_schedule
-- Existing rows of the app's table holding one of tonight's matches that no row of the pipeline
-- holds: the first such row (agreeing also on the mapping's adopt_if_equal columns) becomes the
-- pipeline's. Another row of the app's is never taken for a match (a practice is no BYE).
SELECT DISTINCT ON (r.league_id, r.series_id, r.match_date, r.home_team_id, r.away_team_id)
       t.id, t.league_id, t.match_date, r.series_id
FROM ({staged_matches}) r
JOIN {schedule} t
  ON NOT t.owned AND t.league_id = r.league_id AND t.match_date = r.match_date
 AND t.home_team_id IS NOT DISTINCT FROM r.home_team_id AND t.away_team_id IS NOT DISTINCT FROM r.away_team_id
 AND {adopt_match}
WHERE NOT r.unresolved
  AND r.league_id IN (SELECT l.id FROM {leagues} l JOIN staged_leagues s ON s.league_code = l.code AND s.has_schedule)
  AND NOT EXISTS (SELECT 1 FROM {schedule} o
                  WHERE o.owned AND o.league_id = r.league_id AND o.series_id = r.series_id
                    AND o.match_date = r.match_date
                    AND coalesce(o.home_team_id, 0) = coalesce(r.home_team_id, 0)
                    AND coalesce(o.away_team_id, 0) = coalesce(r.away_team_id, 0))
ORDER BY r.league_id, r.series_id, r.match_date, r.home_team_id, r.away_team_id, t.id

-- name: schedule_changes
-- Tonight's matches against the pipeline's stored ones of the staged leagues that had a
-- schedule file tonight, in one full join on the natural key: the new ones, the changed ones
-- (time, place, or what the target keeps of the record), the ones gone from the sources, and any
-- staged one naming a team that was not staged (a bug check). Same matches, no row.
CREATE TEMP TABLE schedule_changes ON COMMIT DROP AS
WITH staged AS ({staged_matches}), stored AS (
    SELECT t.* FROM {schedule} t
    WHERE t.owned
      AND t.league_id IN (SELECT l.id FROM {leagues} l
                          JOIN staged_leagues s ON s.league_code = l.code AND s.has_schedule)
)
SELECT CASE WHEN t.id IS NULL THEN 'new' WHEN r.league_id IS NULL THEN 'gone' ELSE 'changed' END AS change,
       t.id, coalesce(r.league_id, t.league_id) AS league_id, r.series_id, r.match_date, r.match_time,
       r.home_team_id, r.away_team_id, r.location, r.home_team, r.away_team, r.series, r.league,
       coalesce(r.unresolved, false) AS unresolved
FROM staged r
FULL JOIN stored t
  ON t.league_id = r.league_id AND t.series_id = r.series_id AND t.match_date = r.match_date
 AND coalesce(t.home_team_id, 0) = coalesce(r.home_team_id, 0)
 AND coalesce(t.away_team_id, 0) = coalesce(r.away_team_id, 0)
WHERE t.id IS NULL OR r.league_id IS NULL OR r.unresolved OR {changed};

-- name: analyze_schedule
ANALYZE schedule_changes;

-- name: unresolved_schedule
SELECT count(*) FROM schedule_changes WHERE unresolved;

-- name: meanings_before_run
-- Each team id's natural key as the key map held it before this run (an epoch this run added, a
-- re-used id, is not yet what the stored rows meant), for the two statements below (made once).
CREATE TEMP TABLE IF NOT EXISTS meanings_before_run ON COMMIT DROP AS
SELECT DISTINCT ON (k.team_id) k.team_id, k.team_key
FROM etl.team_key_map k
WHERE k.first_seen_run IS DISTINCT FROM %(run_id)s
ORDER BY k.team_id, k.epoch DESC;

-- name: analyze_meanings
ANALYZE meanings_before_run;

-- name: schedule_for_users
-- Per league, tonight's changes to the schedule as the app's users see them. Matches are told
-- apart by series, date and their teams' natural keys, not by ids: a stored row's ids read with
-- the meaning they had before this run (the old system may have re-created its teams under other
-- ids, or given an id to another team). Of the rows schedule_changes writes, a staged match with
-- no stored one is `added`, a stored one with no staged one `removed`, both `changed` when they
-- differ, and `rewritten` when they are the same match, written again under other ids (the
-- pipeline's bookkeeping). Read before the gone rows are removed.
WITH g AS (
    SELECT s.*, CASE WHEN s.home_team_id IS NULL THEN '(bye)' ELSE h.team_key END AS home_ref,
           CASE WHEN s.away_team_id IS NULL THEN '(bye)' ELSE a.team_key END AS away_ref
    FROM schedule_changes c
    JOIN {schedule} s ON s.id = c.id
    LEFT JOIN meanings_before_run h ON h.team_id = s.home_team_id
    LEFT JOIN meanings_before_run a ON a.team_id = s.away_team_id
    WHERE c.change IN ('gone', 'changed')
), n AS (
    SELECT c.*, CASE WHEN c.home_team_id IS NULL THEN '(bye)' ELSE h.team_key END AS home_ref,
           CASE WHEN c.away_team_id IS NULL THEN '(bye)' ELSE a.team_key END AS away_ref
    FROM schedule_changes c
    LEFT JOIN {teams} h ON h.id = c.home_team_id
    LEFT JOIN {teams} a ON a.id = c.away_team_id
    WHERE c.change IN ('new', 'changed')
)
SELECT coalesce(n.league_id, g.league_id),
       CASE WHEN g.id IS NULL THEN 'added' WHEN n.league_id IS NULL THEN 'removed'
            WHEN {changed} THEN 'changed' ELSE 'rewritten' END,
       count(*)
FROM n
FULL JOIN g
  ON g.league_id = n.league_id AND coalesce(g.series_id, 0) = coalesce(n.series_id, 0)
 AND g.match_date = n.match_date AND g.home_ref = n.home_ref AND g.away_ref = n.away_ref
GROUP BY 1, 2;

-- name: schedule_gone
SELECT c.id FROM schedule_changes c WHERE c.change = 'gone'

-- name: schedule_new
-- In the natural key's order: each index grows at its right edge, not all over.
SELECT {next_id} AS id, c.league_id, c.series_id, c.match_date, c.match_time, c.home_team_id, c.away_team_id,
       c.location, c.home_team, c.away_team, c.series, c.league
FROM (SELECT * FROM schedule_changes WHERE change = 'new'
      ORDER BY league_id, series_id, match_date, home_team_id, away_team_id) c

-- name: schedule_changed
SELECT * FROM schedule_changes WHERE change = 'changed'

-- name: schedule_counts
SELECT change, league_id, count(*) FROM schedule_changes GROUP BY change, league_id;

-- name: adopt_stats
-- Existing standings rows of the app's table for tonight's teams that no row of the pipeline
-- holds: the first becomes the pipeline's.
SELECT DISTINCT ON (r.league_id, r.team_id) t.id, t.league_id
FROM resolved_teams r
JOIN etl.stage_stats st
  ON st.run_id = %(run_id)s AND st.league_code = r.league_code AND st.series_key = r.series_key
 AND st.team_key = r.team_key
JOIN {series_stats} t ON NOT t.owned AND t.league_id = r.league_id AND t.team_id = r.team_id
WHERE r.league_id IN (SELECT l.id FROM {leagues} l JOIN staged_leagues s ON s.league_code = l.code AND s.has_stats)
  AND NOT EXISTS (SELECT 1 FROM {series_stats} o WHERE o.owned AND o.league_id = r.league_id AND o.team_id = r.team_id)
ORDER BY r.league_id, r.team_id, t.id

-- name: stats_changes
-- Tonight's standings against the pipeline's stored ones of the staged leagues, as for the schedule.
CREATE TEMP TABLE stats_changes ON COMMIT DROP AS
WITH staged AS (
    SELECT r.league_id, r.series_id, r.team_id, st.points, st.matches_won, st.matches_lost, st.matches_tied,
           st.lines_won, st.lines_lost, st.lines_for, st.lines_ret, st.sets_won, st.sets_lost,
           st.games_won, st.games_lost, st.team_name AS team, st.series_label AS series, st.league_code AS league
    FROM etl.stage_stats st
    JOIN resolved_teams r
      ON r.league_code = st.league_code AND r.series_key = st.series_key AND r.team_key = st.team_key
    WHERE st.run_id = %(run_id)s
), stored AS (
    SELECT t.* FROM {series_stats} t
    WHERE t.owned
      AND t.league_id IN (SELECT l.id FROM {leagues} l
                          JOIN staged_leagues s ON s.league_code = l.code AND s.has_stats)
)
SELECT CASE WHEN t.id IS NULL THEN 'new' WHEN r.league_id IS NULL THEN 'gone' ELSE 'changed' END AS change,
       t.id, coalesce(r.league_id, t.league_id) AS league_id, r.series_id, r.team_id, r.points,
       r.matches_won, r.matches_lost, r.matches_tied, r.lines_won, r.lines_lost, r.lines_for, r.lines_ret,
       r.sets_won, r.sets_lost, r.games_won, r.games_lost, r.team, r.series, r.league
FROM staged r
-- A team plays in one series: its row is found by the team, and a series the row disagrees on
-- (an adopted row of another series row of the same name) is a change.
FULL JOIN stored t ON t.league_id = r.league_id AND t.team_id = r.team_id
WHERE t.id IS NULL OR r.league_id IS NULL OR {changed};

-- name: analyze_stats
ANALYZE stats_changes;

-- name: stats_for_users
-- Per league, tonight's changes to the standings as the app's users see them: rows told apart by
-- series and their team's natural key, as for the schedule above.
WITH g AS (
    SELECT s.*, m.team_key AS team_ref
    FROM stats_changes c
    JOIN {series_stats} s ON s.id = c.id
    LEFT JOIN meanings_before_run m ON m.team_id = s.team_id
    WHERE c.change IN ('gone', 'changed')
), n AS (
    SELECT c.*, t.team_key AS team_ref
    FROM stats_changes c
    LEFT JOIN {teams} t ON t.id = c.team_id
    WHERE c.change IN ('new', 'changed')
)
SELECT coalesce(n.league_id, g.league_id),
       CASE WHEN g.id IS NULL THEN 'added' WHEN n.league_id IS NULL THEN 'removed'
            WHEN {changed} THEN 'changed' ELSE 'rewritten' END,
       count(*)
FROM n
FULL JOIN g
  ON g.league_id = n.league_id AND coalesce(g.series_id, 0) = coalesce(n.series_id, 0) AND g.team_ref = n.team_ref
GROUP BY 1, 2;

-- name: stats_gone
SELECT c.id FROM stats_changes c WHERE c.change = 'gone'

-- name: stats_new
SELECT {next_id} AS id, c.league_id, c.series_id, c.team_id, c.points, c.matches_won, c.matches_lost,
       c.matches_tied, c.lines_won, c.lines_lost, c.lines_for, c.lines_ret, c.sets_won, c.sets_lost, c.games_won,
       c.games_lost, c.team, c.series, c.league
FROM (SELECT * FROM stats_changes WHERE change = 'new' ORDER BY league_id, series_id, team_id) c

-- name: stats_changed
SELECT * FROM stats_changes WHERE change = 'changed'

-- name: stats_counts
SELECT change, league_id, count(*) FROM stats_changes GROUP BY change, league_id;
