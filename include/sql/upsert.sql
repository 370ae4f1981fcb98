-- Incremental, set-based load of one league, run inside one transaction per league.
-- The staging tables are filled by COPY from league_import.upsert; each statement below is one
-- set-based pass. Unchanged rows are never rewritten (ON CONFLICT ... WHERE ... IS DISTINCT FROM).

-- name: create_staging
CREATE TEMP TABLE stage_teams (
    series_key  text NOT NULL,
    series_name text NOT NULL,
    club        text NOT NULL,
    club_key    text NOT NULL,
    team_name   text NOT NULL,
    team_key    text NOT NULL,
    sub_team    text NOT NULL
) ON COMMIT DROP;
CREATE TEMP TABLE stage_schedule (
    series_key text NOT NULL,
    match_date date NOT NULL,
    match_time time,
    home_key   text,
    away_key   text,
    location   text
) ON COMMIT DROP;
CREATE TEMP TABLE stage_stats (
    series_key   text NOT NULL,
    team_key     text NOT NULL,
    points       integer NOT NULL,
    matches_won  integer NOT NULL,
    matches_lost integer NOT NULL,
    matches_tied integer NOT NULL,
    lines_won    integer NOT NULL,
    lines_lost   integer NOT NULL,
    lines_for    integer NOT NULL,
    lines_ret    integer NOT NULL,
    sets_won     integer NOT NULL,
    sets_lost    integer NOT NULL,
    games_won    integer NOT NULL,
    games_lost   integer NOT NULL
) ON COMMIT DROP;

-- name: current_teams
-- The league's known teams by natural key, read before any write for the deactivation guard.
SELECT s.series_key, t.team_key, t.is_active
FROM public.teams t
JOIN public.series s ON s.id = t.series_id
JOIN public.leagues l ON l.id = t.league_id
WHERE l.code = %(code)s;

-- name: upsert_league
WITH inserted AS (
    INSERT INTO public.leagues (code) VALUES (%(code)s)
    ON CONFLICT (code) DO NOTHING
    RETURNING id
)
SELECT id FROM inserted
UNION ALL
SELECT id FROM public.leagues WHERE code = %(code)s;

-- name: upsert_clubs
-- GROUP BY, not DISTINCT ON: a hash aggregate instead of a sort of every staged team.
INSERT INTO public.clubs (name, name_key)
SELECT min(club), club_key
FROM stage_teams
GROUP BY club_key
ON CONFLICT (name_key) DO NOTHING;

-- name: upsert_series
INSERT INTO public.series AS s (league_id, name, series_key)
SELECT %(league_id)s::bigint, min(series_name), series_key
FROM stage_teams
GROUP BY series_key
ON CONFLICT (league_id, series_key) DO UPDATE
SET name = EXCLUDED.name
WHERE s.name IS DISTINCT FROM EXCLUDED.name;

-- name: upsert_teams
-- Counts the teams written: created (new id) or updated (renamed, moved club, reactivated).
WITH written AS (
    INSERT INTO public.teams AS t (league_id, club_id, series_id, team_name, team_key, sub_team, is_active)
    SELECT %(league_id)s, c.id, s.id, st.team_name, st.team_key, st.sub_team, true
    FROM stage_teams st
    JOIN public.series s ON s.league_id = %(league_id)s AND s.series_key = st.series_key
    JOIN public.clubs c ON c.name_key = st.club_key
    ON CONFLICT (league_id, series_id, team_key) DO UPDATE
    SET team_name = EXCLUDED.team_name,
        club_id = EXCLUDED.club_id,
        sub_team = EXCLUDED.sub_team,
        is_active = true,
        updated_at = now()
    WHERE (t.team_name, t.club_id, t.sub_team, t.is_active)
          IS DISTINCT FROM (EXCLUDED.team_name, EXCLUDED.club_id, EXCLUDED.sub_team, true)
    RETURNING (xmax = 0) AS created
)
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS updated
FROM written;

-- name: deactivate_missing_teams
-- Teams that left the sources: kept, with their ids, as inactive. Never deleted.
UPDATE public.teams t
SET is_active = false, updated_at = now()
FROM public.series s
WHERE s.id = t.series_id
  AND t.league_id = %(league_id)s
  AND t.is_active
  AND NOT EXISTS (
      SELECT 1 FROM stage_teams st
      WHERE st.series_key = s.series_key AND st.team_key = t.team_key
  );

-- name: resolve_schedule
-- Team ids through the same canonical key; a BYE side has no key and stays NULL.
CREATE TEMP TABLE resolved_schedule ON COMMIT DROP AS
SELECT s.id AS series_id, ss.match_date, ss.match_time,
       h.id AS home_team_id, a.id AS away_team_id, ss.location,
       ss.home_key, ss.away_key
FROM stage_schedule ss
JOIN public.series s ON s.league_id = %(league_id)s AND s.series_key = ss.series_key
LEFT JOIN public.teams h ON h.series_id = s.id AND h.team_key = ss.home_key
LEFT JOIN public.teams a ON a.series_id = s.id AND a.team_key = ss.away_key;

-- name: unresolved_schedule
SELECT count(*) FROM resolved_schedule
WHERE (home_key IS NOT NULL AND home_team_id IS NULL)
   OR (away_key IS NOT NULL AND away_team_id IS NULL);

-- name: delete_stale_schedule
DELETE FROM public.schedule sc
WHERE sc.league_id = %(league_id)s
  AND NOT EXISTS (
      SELECT 1 FROM resolved_schedule r
      WHERE r.series_id = sc.series_id
        AND r.match_date = sc.match_date
        AND coalesce(r.home_team_id, 0) = coalesce(sc.home_team_id, 0)
        AND coalesce(r.away_team_id, 0) = coalesce(sc.away_team_id, 0)
  );

-- name: upsert_schedule
WITH written AS (
    INSERT INTO public.schedule AS sc
        (league_id, series_id, match_date, match_time, home_team_id, away_team_id, location)
    SELECT %(league_id)s, series_id, match_date, match_time, home_team_id, away_team_id, location
    FROM resolved_schedule
    ON CONFLICT (league_id, series_id, match_date, home_team_id, away_team_id) DO UPDATE
    SET match_time = EXCLUDED.match_time, location = EXCLUDED.location
    WHERE (sc.match_time, sc.location) IS DISTINCT FROM (EXCLUDED.match_time, EXCLUDED.location)
    RETURNING (xmax = 0) AS created
)
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS updated
FROM written;

-- name: resolve_stats
CREATE TEMP TABLE resolved_stats ON COMMIT DROP AS
SELECT s.id AS series_id, t.id AS team_id, st.*
FROM stage_stats st
JOIN public.series s ON s.league_id = %(league_id)s AND s.series_key = st.series_key
JOIN public.teams t ON t.series_id = s.id AND t.team_key = st.team_key;

-- name: delete_stale_stats
DELETE FROM public.series_stats ss
WHERE ss.league_id = %(league_id)s
  AND NOT EXISTS (
      SELECT 1 FROM resolved_stats r
      WHERE r.series_id = ss.series_id AND r.team_id = ss.team_id
  );

-- name: upsert_stats
WITH written AS (
    INSERT INTO public.series_stats AS ss
        (league_id, series_id, team_id, points, matches_won, matches_lost, matches_tied,
         lines_won, lines_lost, lines_for, lines_ret, sets_won, sets_lost, games_won, games_lost)
    SELECT %(league_id)s, series_id, team_id, points, matches_won, matches_lost, matches_tied,
           lines_won, lines_lost, lines_for, lines_ret, sets_won, sets_lost, games_won, games_lost
    FROM resolved_stats
    ON CONFLICT (league_id, series_id, team_id) DO UPDATE
    SET points = EXCLUDED.points,
        matches_won = EXCLUDED.matches_won, matches_lost = EXCLUDED.matches_lost,
        matches_tied = EXCLUDED.matches_tied,
        lines_won = EXCLUDED.lines_won, lines_lost = EXCLUDED.lines_lost,
        lines_for = EXCLUDED.lines_for, lines_ret = EXCLUDED.lines_ret,
        sets_won = EXCLUDED.sets_won, sets_lost = EXCLUDED.sets_lost,
        games_won = EXCLUDED.games_won, games_lost = EXCLUDED.games_lost
    WHERE (ss.points, ss.matches_won, ss.matches_lost, ss.matches_tied, ss.lines_won, ss.lines_lost,
           ss.lines_for, ss.lines_ret, ss.sets_won, ss.sets_lost, ss.games_won, ss.games_lost)
          IS DISTINCT FROM
          (EXCLUDED.points, EXCLUDED.matches_won, EXCLUDED.matches_lost, EXCLUDED.matches_tied,
           EXCLUDED.lines_won, EXCLUDED.lines_lost, EXCLUDED.lines_for, EXCLUDED.lines_ret,
           EXCLUDED.sets_won, EXCLUDED.sets_lost, EXCLUDED.games_won, EXCLUDED.games_lost)
    RETURNING (xmax = 0) AS created
)
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS updated
FROM written;
