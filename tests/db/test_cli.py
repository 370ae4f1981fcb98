"""The `league-import` command as an operator runs it: health, quarantine, review, aliases, unlock."""

from __future__ import annotations

import json

from helpers import night, one, q

from league_import import cli


def orphan_poll(conn, poll_id=900, team_id=999_999, text="Nobody wrote this"):
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (%s, %s, %s)", (poll_id, team_id, text))
    conn.execute("SET session_replication_role = origin")
    conn.commit()


def test_health_exits_0_when_sound_and_1_on_an_error(conn, capsys):
    night(conn, "night-1")  # db_uri (through conn) names this database in AIRFLOW_CONN_LEAGUE_DB
    assert cli.main(["health"]) == 0
    out = capsys.readouterr().out
    assert "checks: 0 errors, 0 warnings" in out and "orphans schedule.home_team_id" in out
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO polls (id, team_id, question) VALUES (1, 424242, 'orphan')")
    conn.commit()
    assert cli.main(["health"]) == 1
    out = capsys.readouterr().out
    assert "checks: 1 error, 0 warnings" in out
    assert "orphans polls.team_id" in out and "1 row points at no team" in out
    # Read-only: the command wrote nothing (no health figures recorded beyond the night's own).
    assert one(conn, "SELECT count(DISTINCT run_id) FROM etl.health_checks") == 1


def test_release_says_why_it_cannot(conn, capsys):
    night(conn, "night-1")
    code = cli.main(["release", "--table", "polls", "--row-id", "7", "--team-id", "1"])
    assert code == 2
    assert "error: no unresolved quarantine entry for polls.team_id row 7" in capsys.readouterr().err


def test_quarantine_list_and_review_decide(conn, capsys):
    night(conn, "night-1")
    orphan_poll(conn)
    night(conn, "night-2")
    assert cli.main(["quarantine", "list"]) == 0
    out = capsys.readouterr().out
    assert "polls.team_id row 900" in out and "1 row waits" in out
    assert cli.main(["review", "list", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [i["id"] for i in items] == ["quarantine:1"] and items[0]["options"] == ["the team id typed below", "leave in quarantine"]
    team = one(conn, "SELECT min(id) FROM teams")
    assert cli.main(["review", "decide", "quarantine:1", str(team)]) == 0
    assert f"polls row 900: team_id set to {team}" in capsys.readouterr().out
    assert one(conn, "SELECT team_id FROM polls WHERE id = 900") == team
    assert q(conn, "SELECT item, decided_by LIKE 'cli:%%', via FROM etl.decisions") == [("quarantine:1", True, "cli")]
    assert cli.main(["review", "decide", "quarantine:1", str(team)]) == 0
    assert "already resolved" in capsys.readouterr().out
    assert cli.main(["review", "decide", "rename:77", "same team"]) == 2
    assert "no suspected rename 77" in capsys.readouterr().err


def test_alias_add_list_remove(conn, capsys):
    night(conn, "night-1")
    team = one(conn, "SELECT id FROM teams WHERE team_name = 'Glenbrook RC 1'")
    args = ["alias", "add", "--league", "APTA_CHICAGO", "--series", "Series 1", "--spelling", "Winnetka 1"]
    assert cli.main([*args, "--team-id", str(team)]) == 2  # another team's own spelling
    assert "is the spelling of team" in capsys.readouterr().err
    assert cli.main(["alias", "add", "--league", "APTA_CHICAGO", "--series", "Series 1", "--spelling",
                     "Glenbrook Racquet 1", "--team-id", str(team)]) == 0
    assert "alias 1 added" in capsys.readouterr().out
    assert cli.main(["alias", "list"]) == 0
    assert f"'Glenbrook Racquet 1' -> team {team}" in capsys.readouterr().out
    assert cli.main(["alias", "remove", "1"]) == 0
    assert "no longer names team" in capsys.readouterr().out
    assert one(conn, "SELECT count(*) FROM etl.team_aliases") == 0


def test_unlock_shows_the_holder_and_frees_it(conn, capsys):
    night(conn, "night-1")
    conn.execute("INSERT INTO etl.runs (run_id, status) VALUES ('killed-run', 'running')")
    conn.execute(
        "INSERT INTO etl.run_lock (id, run_id, holder, acquired_at, heartbeat_at) "
        "VALUES (1, 'killed-run', 'worker-1 pid 4242', now(), now())"
    )
    conn.commit()
    assert cli.main(["unlock", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "held by run killed-run" in out and "worker-1 pid 4242" in out and "freed: run killed-run" in out
    assert q(conn, "SELECT run_id FROM etl.run_lock") == [(None,)]
    assert one(conn, "SELECT status FROM etl.runs WHERE run_id = 'killed-run'") == "failed"
    assert cli.main(["unlock", "--yes"]) == 0
    assert "no run holds the database" in capsys.readouterr().out


def test_a_change_is_refused_while_a_run_holds_the_database(conn, capsys):
    night(conn, "night-1")
    orphan_poll(conn)
    night(conn, "night-2")
    conn.execute("INSERT INTO etl.runs (run_id, status) VALUES ('running-run', 'running')")
    conn.execute("INSERT INTO etl.run_lock (id, run_id, acquired_at, heartbeat_at) VALUES (1, 'running-run', now(), now())")
    conn.commit()
    assert cli.main(["review", "decide", "quarantine:1", "leave in quarantine"]) == 2
    assert "run running-run" in capsys.readouterr().err
    assert one(conn, "SELECT count(*) FROM etl.decisions") == 0


def test_every_command_has_help(capsys):
    for command in (
        [], ["demo"], ["summary"], ["health"], ["migrate"], ["unlock"], ["release"], ["quarantine", "list"],
        ["alias", "add"], ["alias", "list"], ["alias", "remove"], ["review", "list"], ["review", "decide"],
    ):
        assert cli.main([*command, "--help"]) == 0, command
        assert "Usage: league-import" in capsys.readouterr().out


def test_review_list_prints_control_characters_escaped(conn, capsys):
    """A user's text with a terminal's escape sequence and invisible characters: shown, not obeyed."""
    night(conn, "night-1")
    orphan_poll(conn, text="Clear \x1b[2J screen\u200b \u202eevil")
    night(conn, "night-2")
    assert cli.main(["review", "list"]) == 0
    out = capsys.readouterr().out
    assert r"text: Clear \x1b[2J screen\u200b \u202eevil" in out
    assert not any(c in out for c in ("\x1b", "\u200b", "\u202e"))
    assert cli.main(["quarantine", "list"]) == 0
    assert "\x1b" not in capsys.readouterr().out


def test_review_decide_an_inactive_team_needs_the_flag(conn, capsys):
    night(conn, "night-1")
    orphan_poll(conn)
    night(conn, "night-2")
    gone = one(conn, "SELECT id FROM teams WHERE team_name = 'Skokie 11'")
    conn.execute("UPDATE teams SET is_active = false WHERE id = %s", (gone,))  # as when it leaves the files
    conn.commit()
    assert cli.main(["review", "decide", "quarantine:1", str(gone)]) == 2
    assert f"team {gone} is inactive" in capsys.readouterr().err
    assert cli.main(["review", "decide", "quarantine:1", str(gone), "--inactive"]) == 0
    assert f"polls row 900: team_id set to {gone}" in capsys.readouterr().out


def test_env_gives_a_shell_what_airflow_standalone_needs(db_uri, tmp_path):
    """eval "$(league-import env)" in a shell without the environment on PATH: `airflow` is this
    environment's (standalone starts each component as `airflow ...`), and the configured source
    folder is the bundled season (what the demo set-up's scheduled runs read)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from helpers import DEMO_DATA

    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEAGUE_IMPORT_"))}
    env |= {"PATH": "/usr/bin:/bin", "AIRFLOW_CONN_LEAGUE_DB": db_uri, "LEAGUE_IMPORT_DEMO_HOME": str(tmp_path / "af")}
    script = f'eval "$({bin_dir}/league-import env)"; command -v airflow; echo "$LEAGUE_IMPORT_SOURCE_DIR $AIRFLOW_HOME"'
    done = subprocess.run(["bash", "-euc", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    airflow, settings = done.stdout.splitlines()[-2:]
    assert airflow == str(bin_dir / "airflow")
    assert settings == f"{DEMO_DATA} {tmp_path / 'af'}"
