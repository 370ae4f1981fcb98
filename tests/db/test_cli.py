"""The operator commands behind `make health` and the quarantine release, as a person runs them."""

from __future__ import annotations

from helpers import night

from league_import import cli


def test_health_exits_0_when_sound_and_1_on_an_error(conn, capsys):
    night(conn, "night-1")  # db_uri (through conn) names this database in AIRFLOW_CONN_LEAGUE_DB
    assert cli.main(["health"]) == 0
    out = capsys.readouterr().out
    assert "61 checks: 0 errors, 0 warnings" in out and "orphans schedule.home_team_id" in out
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (1, 424242, 'orphan')")
    conn.commit()
    assert cli.main(["health"]) == 1
    out = capsys.readouterr().out
    assert "61 checks: 1 errors, 0 warnings" in out
    assert "orphans polls.team_id" in out and "1 rows point at no team" in out
    # Read-only: the command wrote nothing (no health figures recorded beyond the night's own).
    assert conn.execute("SELECT count(DISTINCT run_id) FROM etl.health_checks").fetchone()[0] == 1


def test_release_says_why_it_cannot(conn, capsys):
    night(conn, "night-1")
    code = cli.main(["release", "--table", "polls", "--row-id", "7", "--team-id", "1"])
    assert code == 2
    assert "error: no unresolved quarantine entry for polls.team_id row 7" in capsys.readouterr().err
