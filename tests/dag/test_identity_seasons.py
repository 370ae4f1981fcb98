"""Team identity across seasons, through the DAG: every name re-spelt keeps every id; names that
changed a little are suspected, reported and notified, and a person's "same team" keeps the old id."""

from __future__ import annotations

import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer

import psycopg
import pytest
from helpers import CONF, FRESH_DEMO, LEAGUE, copy_demo, create_user_data, one, q, read, row_teams, write

from league_import.identity import is_bye, parse_label, parse_team
from league_import.review import SAME, decide
from league_import.sources import SCHEDULE_FILE, STATS_FILE

pytestmark = pytest.mark.dag

SEPARATORS = [" ", "-", " \u2013 ", ".", "/", "", "  "]
ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV"}


def respell(name: str, label: str, salt: int) -> str:
    """Another spelling of the same team, by the invariants of league_import.identity: the club's
    case, separators and diacritics, the sub-team's notation, the series part's form."""
    ident = parse_team(name, label)
    pick = zlib.crc32(f"{name}|{label}|{salt}".encode())
    words = ident.club.split(" ")
    sep = SEPARATORS[pick % len(SEPARATORS)]
    club = sep.join(w.upper() if (pick >> 3) % 2 else w.lower() for w in words) if len(words) > 1 else words[0]
    if (pick >> 5) % 3 == 0:
        club = club.replace("e", "\u00e9", 1)  # a diacritic
    sub = ""
    if ident.sub_team:
        sub = f" ({ident.sub_team})" if ident.sub_team.isdigit() and (pick >> 7) % 2 else f" {ROMAN.get(ident.sub_team, ident.sub_team)}"
    designator = " ".join(parse_label(label).designator)
    tail = [f" {designator}", f" - {designator}", f" \u2013 {designator}"][(pick >> 9) % 3]
    if not designator[:1].isdigit():
        tail = [tail, ""][(pick >> 11) % 2]  # a letter or word series may be left out
    return f"{club}{sub}{tail}"


def relabel(label: str, salt: int) -> str:
    """The same series under another prefix: the prefix is not identity."""
    designator = " ".join(parse_label(label).designator)
    prefixes = ["Series", "Division", "Chicago", "Flight", "series"] if designator[:1].isdigit() else ["Series", "series"]
    return f"{prefixes[zlib.crc32(f'{label}{salt}'.encode()) % len(prefixes)]} {designator}"


def latest(conn) -> dict:
    found = conn.execute("SELECT status, report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()
    conn.rollback()
    return {"status": found[0], **found[1]}


def test_a_season_with_every_name_respelt_keeps_every_id(league_dag, db_uri, tmp_path):
    assert league_dag.test(run_conf=CONF).state == "success"
    src = copy_demo(tmp_path)
    stats, schedule = read(src, STATS_FILE), read(src, SCHEDULE_FILE)
    # The two files spell each team differently from each other, and from the first night.
    for r in stats:
        r["team"], r["series"] = respell(r["team"], r["series"], 1), relabel(r["series"], 1)
    for r in schedule:
        for side in ("home_team", "away_team"):
            if not is_bye(r[side], None, r["series"]):
                r[side] = respell(r[side], r["series"], 2)
        r["series"] = relabel(r["series"], 2)
    write(src, STATS_FILE, stats)
    write(src, SCHEDULE_FILE, schedule)
    assert sum(a["team"] != b["team"] for a, b in zip(stats, read(FRESH_DEMO, STATS_FILE))) > 450

    with psycopg.connect(db_uri) as conn:
        create_user_data(conn, captains=20)  # few enough not to trip the growth check on its first night
        ids = {i for (i,) in q(conn, "SELECT id FROM teams")}
        before = {k: v for k, v in row_teams(conn).items() if v in ids}  # not the row written on no team
        assert league_dag.test(run_conf={**CONF, "source_dir": str(src)}).state == "success"
        report = latest(conn)
        counts = report["upsert_teams"]["leagues"][LEAGUE]
        assert (counts["teams_created"], counts["teams_deactivated"]) == (0, 0)
        assert {i for (i,) in q(conn, "SELECT id FROM teams WHERE is_active")} == ids
        assert before.items() <= row_teams(conn).items()
        assert one(conn, "SELECT count(*) FROM etl.rename_suspects") == 0
        assert report["health_check"]["status"] == "ok", report["health_check"]["problems"]


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


RENAMES = {("Royal Melbourne", None): "Royal Melborne", ("Legends", None): "Legend", ("Skokie", "11"): "Skokie Park"}


def rename(name: str, label: str) -> str:
    if is_bye(name, None, label):
        return name
    ident = parse_team(name, label)
    for (club, series), new in RENAMES.items():
        if ident.club == club and series in (None, ident.series_key):
            return name.replace(club, new, 1)  # the club part, not a series label repeating it
    return name


def test_three_clubs_renamed_a_little_are_suspected_notified_and_decided(league_dag, db_uri, tmp_path, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LEAGUE_IMPORT_NOTIFY", "webhook")
    monkeypatch.setenv("AIRFLOW_CONN_LEAGUE_IMPORT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
    try:
        assert league_dag.test(run_conf=CONF).state == "success"
        src = copy_demo(tmp_path)
        stats, schedule = read(src, STATS_FILE), read(src, SCHEDULE_FILE)
        for r in stats:
            r["team"] = rename(r["team"], r["series"])
        for r in schedule:
            r["home_team"], r["away_team"] = rename(r["home_team"], r["series"]), rename(r["away_team"], r["series"])
        write(src, STATS_FILE, stats)
        write(src, SCHEDULE_FILE, schedule)
        with psycopg.connect(db_uri) as conn:
            old = dict(q(conn, "SELECT team_name, id FROM teams WHERE team_name IN "
                               "('Royal Melbourne 39', 'Legends', 'Skokie 11')"))
            for user, team in enumerate(sorted(old.values()), start=1):  # users' rows on the renamed teams
                conn.execute("INSERT INTO users (id, email) VALUES (%s, %s)", (user, f"u{user}@example.com"))
                conn.execute("INSERT INTO team_memberships VALUES (%s, %s, true)", (user, team))
                conn.execute(
                    "INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, 'Who plays?')", (team, user)
                )
            conn.commit()
            before = row_teams(conn)
            assert league_dag.test(run_conf={**CONF, "source_dir": str(src)}).state == "success"
            report = latest(conn)
            suspects = report["upsert_teams"]["suspected_renames"]
            assert sorted((s["old_name"], s["new_name"]) for s in suspects) == [
                ("Legends", "Legend"),
                ("Royal Melbourne 39", "Royal Melborne 39"),
                ("Skokie 11", "Skokie Park 11"),
            ]
            assert all(s["user_rows"] for s in suspects)  # the old ids carry users' rows
            warning = [p for p in report["health_check"]["problems"] if p["check"] == "renames"]
            assert warning and warning[0]["detail"].startswith("3 suspected renames await review")
            assert report["health_check"]["status"] == "warn"
            notified = [m for m in _Hook.received if m.get("decisions")]
            assert notified and "3 suspected renames await review" in notified[-1]["message"]

            for item in q(conn, "SELECT id FROM etl.rename_suspects ORDER BY id"):
                assert "merged into" in decide(conn, f"rename:{item[0]}", SAME, by="test", via="test")
            names = dict(q(conn, "SELECT id, team_name FROM teams WHERE id = ANY (%s)", list(old.values())))
            assert names == {
                old["Royal Melbourne 39"]: "Royal Melborne 39",
                old["Legends"]: "Legend",
                old["Skokie 11"]: "Skokie Park 11",
            }
            assert one(conn, "SELECT count(*) FROM teams WHERE NOT is_active") == 0
            assert row_teams(conn) == before  # no user row moved to another team

            assert league_dag.test(run_conf={**CONF, "source_dir": str(src)}).state == "success"
            report = latest(conn)
            counts = report["upsert_teams"]["leagues"][LEAGUE]
            assert (counts["teams_created"], counts["teams_by_alias"], report["upsert_teams"]["suspected_renames"]) == (
                0, 3, [],
            )
            assert report["health_check"]["status"] == "ok", report["health_check"]["problems"]
    finally:
        server.shutdown()
