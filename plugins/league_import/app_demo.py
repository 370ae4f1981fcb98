"""`make demo-app`: the pipeline adopted by the league app's own database, in the embedded server.

The story: the app's schema (include/targets/league_app.schema.sql, ../shared/app/schema.sql)
filled the way the app's older importer filled it for years (names as the files spell them, one
team per club and series: a club's second team in a series was dropped), with user rows in every
table that points at teams and the app's practices in schedule; `target check` and `target
apply`; a night, which adopts every existing team under its id; the old system's churn (teams
deleted and re-inserted with the id sequence restarted); the next night's repair, with figures
per table. The functions here build that state for the tests too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from league_import.embedded import REPO
from league_import.sources import read_leagues

APP_SCHEMA = REPO / "include" / "targets" / "league_app.schema.sql"
APP_MAPPING = REPO / "include" / "targets" / "league_app.toml"
DEMO_DATABASE = "league_app_demo"
PRACTICE = " Practice"  # the app's practices in schedule: '<team name> Practice', away team empty


def psql() -> str:
    """The psql of the embedded server (the pgserver wheel ships one), else the one on PATH."""
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("psql")
    if found is None:
        raise RuntimeError("no psql: install PostgreSQL's client, or the pgserver wheel (requirements.txt)")
    return found


def load_schema(uri: str, schema: Path = APP_SCHEMA) -> None:
    """Load the app's schema as its maintainers do: psql, stopping at the first error."""
    env = {**os.environ, "PGOPTIONS": "--client-min-messages=warning"}
    subprocess.run(
        [psql(), "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-d", uri, "-f", str(schema)],
        check=True,
        capture_output=True,
        env=env,
    )


def fill_like_old_importer(conn: psycopg.Connection, source_dir: Path) -> dict:
    """What the app's older importer left: leagues (code and name), one club per club name, one
    series per label of the standings, one team per club and series (a club's second team in a
    series was refused by the app's UNIQUE and dropped, with its matches and standings), the
    teams named as the standings spell them; matches with both names as the schedule spells them;
    standings with the scraper's figures. Returns the counts written."""
    counts = {"teams_dropped": 0}
    with conn.cursor() as cur:
        for league in read_leagues(source_dir, []):
            league_id = cur.execute(
                "INSERT INTO leagues (league_id, league_name, created_at) VALUES (%s, %s, now()) RETURNING id",
                (league.code, league.code.replace("_", " ").title()),
            ).fetchone()[0]
            kept, by_club = [], set()
            for team in sorted(league.teams, key=lambda t: (not t.in_stats, t.seen_in)):
                if (team.club_key, team.series_key) in by_club:
                    counts["teams_dropped"] += 1
                    continue
                by_club.add((team.club_key, team.series_key))
                kept.append(team)
            names = {t.club_key: t.club for t in kept}
            found = dict(cur.execute("SELECT name, id FROM clubs WHERE name = ANY (%s)", (list(names.values()),)))
            new = {key: name for key, name in names.items() if name not in found}
            clubs = {key: found[name] for key, name in names.items() if name in found}
            clubs |= _write(cur, "clubs", "name", {key: (name,) for key, name in new.items()})
            labels = {t.series_key: (t.series_label, league_id) for t in kept}
            series = _write(cur, "series", "name, league_id", labels)
            rows = {
                (t.series_key, t.team_key): (clubs[t.club_key], series[t.series_key], league_id, t.team_name)
                for t in kept
            }
            teams = _write(cur, "teams", "club_id, series_id, league_id, team_name, is_active, created_at", rows, True)
            matches = []
            for key, day, at, home, away, location, _label, home_name, away_name in league.schedule:
                home_id, away_id = teams.get((key, home)), teams.get((key, away))
                if (home and home_id is None) or (away and away_id is None):
                    continue  # a match of a dropped team: dropped with it
                matches.append((league_id, day, at, home_name, away_name, home_id, away_id, location))
            columns = "league_id, match_date, match_time, home_team, away_team, home_team_id, away_team_id, location"
            _copy(cur, "schedule", columns, matches)
            standings = []
            for key, team_key, *figures, label, name in league.stats:
                if (team_id := teams.get((key, team_key))) is not None:
                    standings.append((league_id, label, name, series[key], team_id, *figures))
            columns = (
                "league_id, series, team, series_id, team_id, points, matches_won, matches_lost, matches_tied, "
                "lines_won, lines_lost, lines_for, lines_ret, sets_won, sets_lost, games_won, games_lost"
            )
            _copy(cur, "series_stats", columns, standings)
            counts[league.code] = {"teams": len(teams), "schedule": len(matches), "series_stats": len(standings)}
    conn.commit()
    return counts


def _write(cur, table: str, columns: str, rows: dict, stamped: bool = False) -> dict:
    """Rows (key -> values) written with ids drawn from the table's sequence; returns key -> id.
    `stamped`: the values end with is_active and the insert time (true, now)."""
    drawn = "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)"
    ids = [i for (i,) in cur.execute(drawn, (f"public.{table}", len(rows))).fetchall()]
    out = dict(zip(rows, ids))
    extra = (True, datetime.now(UTC)) if stamped else ()
    _copy(cur, table, f"id, {columns}", [(out[key], *values, *extra) for key, values in rows.items()])
    return out


def _copy(cur, table: str, columns: str, rows: list[tuple]) -> None:
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), sql.SQL(columns))) as copy:
        for row in rows:
            copy.write_row(row)


USER_ROWS = """
INSERT INTO users (id, email, password_hash, first_name, last_name, is_admin, created_at)
SELECT n, 'player' || n || '@example.com', 'x', 'Player', 'Number' || n, false, now()
FROM generate_series(1, %(n)s) n;
CREATE TEMP TABLE seeded ON COMMIT DROP AS
SELECT n AS user_id, t.id AS team_id, t.league_id, t.series_id, t.club_id, t.team_name
FROM generate_series(1, %(n)s) n
JOIN (SELECT id, league_id, series_id, club_id, team_name, row_number() OVER (ORDER BY id) AS n FROM teams) t USING (n);
INSERT INTO user_contexts (user_id, league_id, team_id, series_id, last_updated)
SELECT user_id, league_id, team_id, series_id, now() FROM seeded;
INSERT INTO polls (team_id, created_by, question, created_at)
SELECT team_id, user_id, 'Who can play Saturday?', now() FROM seeded;
INSERT INTO captain_messages (team_id, captain_user_id, message, created_at)
SELECT team_id, user_id, 'Bring new balls on Tuesday', now() FROM seeded;
INSERT INTO saved_lineups (user_id, team_id, lineup_name, lineup_data, is_active, created_at)
SELECT user_id, team_id, 'Lineup ' || user_id, '[]', true, now() FROM seeded;
INSERT INTO pairing_preferences (team_id, player1_user_id, player2_user_id, is_allowed, created_at)
SELECT team_id, user_id, user_id, true, now() FROM seeded;
INSERT INTO lineup_escrow (escrow_token, initiator_user_id, recipient_name, recipient_contact, contact_type,
                           initiator_team_id, recipient_team_id, initiator_lineup, status, message_body, created_at)
SELECT 'token-' || user_id, user_id, 'Opponent', 'opponent@example.com', 'email', team_id, team_id, '[]', 'pending',
       'Our lineup', now() FROM seeded;
INSERT INTO activity_log (id, team_id, user_id, action_type, action_description, "timestamp")
SELECT md5(user_id::text)::uuid, team_id, user_id, 'login', 'Signed in', now() FROM seeded;
INSERT INTO user_instructions (user_email, instruction, series_id, team_id, created_at, is_active)
SELECT 'player' || user_id || '@example.com', 'Warm up first', series_id, team_id, now(), true FROM seeded;
INSERT INTO players (tenniscores_player_id, first_name, last_name, league_id, club_id, series_id, team_id, is_active)
SELECT 'P' || user_id, 'Player', 'Number' || user_id, league_id, club_id, series_id, team_id, true FROM seeded;
INSERT INTO player_season_tracking (player_id, team_id, league_id, season_year, created_at)
SELECT 'P' || user_id, team_id, league_id, 2025, now() FROM seeded;
INSERT INTO match_scores (league_id, match_date, home_team, away_team, home_team_id, away_team_id, scores,
                          tenniscores_match_id, created_at)
SELECT league_id, DATE '2024-10-01', team_name, team_name, team_id, team_id, '6-4', 'M' || user_id, now() FROM seeded;
INSERT INTO match_scores_previous_seasons (league_id, match_date, home_team, away_team, home_team_id, away_team_id,
                                           scores, season, created_at)
SELECT league_id, DATE '2023-10-01', team_name, team_name, team_id, team_id, '6-4', '2023-2024', now() FROM seeded;
-- The app's own practices, as it writes them.
INSERT INTO schedule (league_id, match_date, match_time, home_team, away_team, home_team_id, location, created_at)
SELECT league_id, DATE '2024-10-03', TIME '19:00', team_name || ' Practice', '', team_id, 'Court 2', now() FROM seeded;
"""


def add_user_rows(conn: psycopg.Connection, users: int = 40) -> None:
    """Users on the first teams, each with a row in every table of the app that points at teams,
    and a practice of their team in schedule, as the app writes them."""
    conn.execute(USER_ROWS.replace("%(n)s", str(int(users))))
    conn.commit()


def team_references(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every (table, column) of the app's schema with a foreign key to teams."""
    from league_import.pgcatalog import foreign_keys

    with conn.cursor() as cur:
        found = sorted((fk.table, fk.column) for fk in foreign_keys(cur).values() if fk.target == "teams")
    conn.rollback()
    return found


def placement(conn: psycopg.Connection) -> dict:
    """Each row's real team, by the team id it has now: (table, column, row) -> (league, series
    key, team key), for every table that points at teams but the pipeline's own standings; in
    schedule, the app's practices only (the matches are the pipeline's, written anew)."""
    from league_import.identity import parse_team

    out = {}
    for table, column in team_references(conn):
        if table == "series_stats":
            continue
        row = "r.user_id::text" if table == "user_contexts" else "r.id::text"
        only = "r.home_team LIKE '%%' || %s" if table == "schedule" else "%s = %s"
        query = sql.SQL(
            "SELECT " + row + ", l.league_id, s.name, t.team_name FROM {} r "
            "JOIN teams t ON t.id = r.{} JOIN series s ON s.id = t.series_id JOIN leagues l ON l.id = t.league_id "
            "WHERE " + only
        ).format(sql.Identifier(table), sql.Identifier(column))
        args = (PRACTICE,) if table == "schedule" else (1, 1)
        for row_id, league, series, team in conn.execute(query, args).fetchall():
            ident = parse_team(team, series)
            out[(table, column, row_id)] = (league, ident.series_key, ident.team_key)
    conn.rollback()
    return out


def restart_identity_churn(conn: psycopg.Connection) -> None:
    """The old system's worst night: foreign-key triggers off, every team deleted and re-inserted
    with the id sequence restarted, in another order: old ids come back naming other teams."""
    from league_import.pgcatalog import columns

    with conn.cursor() as cur:
        names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns(cur, "teams") if c.name != "id")
    conn.execute("SET session_replication_role = replica")
    conn.execute("CREATE TEMP TABLE churned AS SELECT * FROM teams")
    conn.execute("DELETE FROM teams")
    conn.execute("ALTER SEQUENCE teams_id_seq RESTART")
    statement = "INSERT INTO teams ({names}) SELECT {names} FROM churned ORDER BY team_name DESC, id"
    conn.execute(sql.SQL(statement).format(names=names))
    conn.execute("DROP TABLE churned")
    conn.execute("SET session_replication_role = origin")
    conn.commit()


def orphans_per_table(conn: psycopg.Connection) -> dict[str, int]:
    """Rows per (table.column) whose team id no team has."""
    out = {}
    for table, column in team_references(conn):
        query = sql.SQL(
            "SELECT count(*) FROM {} r WHERE r.{} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM teams t WHERE t.id = r.{})"
        ).format(sql.Identifier(table), sql.Identifier(column), sql.Identifier(column))
        out[f"{table}.{column}"] = conn.execute(query).fetchone()[0]
    conn.rollback()
    return out


def practices(conn: psycopg.Connection) -> list[tuple]:
    """The app's practices in schedule, everything but their team id."""
    found = conn.execute(
        "SELECT id, league_id, match_date, match_time, home_team, away_team, away_team_id, location, created_at "
        "FROM schedule WHERE home_team LIKE %s ORDER BY id",
        ("%" + PRACTICE,),
    ).fetchall()
    conn.rollback()
    return found


def run_app_demo() -> int:
    """The story, printed with figures per table (see the module's doc)."""
    from league_import.demo import DEMO_DATA, REPO, demo_home, latest_run, run_dag, summarize
    from league_import.embedded import ensure_server
    from league_import.errors import LeagueImportError
    from league_import.target import active, load
    from league_import.targetplan import apply, describe, make_plan

    started = time.monotonic()
    server = os.environ.get("AIRFLOW_CONN_LEAGUE_DB") or ensure_server()
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DATABASE)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))
    from urllib.parse import urlsplit, urlunsplit

    uri = urlunsplit(urlsplit(server)._replace(path=f"/{DEMO_DATABASE}"))
    os.environ["LEAGUE_IMPORT_TARGET"] = str(APP_MAPPING)
    log = REPO / ".demo" / "app_dags_test.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    home = demo_home()
    print(
        f"the app's database: {DEMO_DATABASE} (its schema: {APP_SCHEMA.relative_to(REPO)}); "
        f"logs: {log.relative_to(REPO)}"
    )
    load_schema(uri)
    target = load(APP_MAPPING)
    with psycopg.connect(uri) as conn, active(target):
        filled = fill_like_old_importer(conn, DEMO_DATA)
        add_user_rows(conn)
        before_ids = dict(conn.execute("SELECT team_name, id FROM teams").fetchall())
        conn.rollback()
        kept = practices(conn)
        print(
            f"the old importer's state: {filled}; users' rows in all {len(team_references(conn))} columns "
            "that point at teams"
        )
        print("\n$ league-import target check")
        plan = make_plan(conn, target, read_leagues(DEMO_DATA, []))
        print(_short(describe(plan)))
        print("\n$ league-import target apply")
        try:
            for what in apply(conn, target, by="demo"):
                print(f"- {what}")
        except LeagueImportError as exc:
            print(f"error: {exc}")
            return 2
    conf = {"source_dir": str(DEMO_DATA)}
    for night, story in ((1, "adopts the app's teams"), (2, "after the old system's churn")):
        if night == 2:
            with psycopg.connect(uri) as conn:
                restart_identity_churn(conn)
                lost = {k: v for k, v in orphans_per_table(conn).items() if v}
            print(f"\nthe old system re-creates every team, its id sequence restarted: rows on ids no team has: {lost}")
            print("(and every re-used id now names another team)")
        print(f"\nnight {night} ({story}): airflow dags test league_import")
        code = run_dag(home, uri, conf, log)
        with psycopg.connect(uri) as conn, active(target):
            print(summarize(latest_run(conn)))
            if night == 1:
                after = dict(conn.execute("SELECT team_name, id FROM teams").fetchall())
                changed = sum(1 for name, i in before_ids.items() if after.get(name) != i)
                print(
                    f"  team ids changed: {changed} of {len(before_ids)}; teams created: {len(after) - len(before_ids)}"
                )
            else:
                repaired = conn.execute(
                    "SELECT table_name || '.' || column_name, strategy, count(*) FROM etl.repairs WHERE run_id = %s "
                    "GROUP BY 1, 2 ORDER BY 1, 2",
                    (latest_run(conn)["run_id"],),
                ).fetchall()
                for column, strategy, n in repaired:
                    print(f"  {column}: {n} {'quarantined' if strategy == 'quarantine' else 'put back by ' + strategy}")
                left = {k: v for k, v in orphans_per_table(conn).items() if v}
                print(f"  rows on ids no team has: {left or 'none'}")
            same = practices(conn) == kept
            print(f"  the app's practices in schedule: {len(kept)}, untouched but for their team id: {same}")
            conn.rollback()
        if code:
            print(f"errors: the DAG run failed (exit {code}); see {log}")
            return code
    print(f"errors: none ({time.monotonic() - started:.0f} s)")
    return 0


def _short(text: str, limit: int = 12) -> str:
    """A long section of the check's output cut to its first lines."""
    out, run = [], 0
    for line in text.splitlines():
        run = run + 1 if line.startswith("- constraint") else 0
        if run <= limit // 3:
            out.append(line)
        elif run == limit // 3 + 1:
            out.append("- ... (more of the same; `league-import target check` lists them all)")
    return "\n".join(out)
