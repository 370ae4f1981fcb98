"""A growth alarm a person answers, over three nights of the real DAG: the app writes 1,000 users
and 1,000,000 polls between two nights; the night after fails on it and asks; "expected" is
recorded with who and when; the next night is green. 41 -> 3,470,114 still fails
(tests/dag/test_practice_times_incident.py)."""

from __future__ import annotations

import psycopg
import pytest
from helpers import CONF, one, q

from league_import import cli

pytestmark = pytest.mark.dag


def questions_announced(run_id: str) -> list[dict]:
    """The league_questions Asset events the run published (what schedules league_review)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent.extra)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetModel.name == "league_questions", AssetEvent.source_run_id == run_id)
            )
        )


def test_the_apps_growth_fails_one_night_asks_and_is_accepted(league_dag, db_uri, capsys):
    first = league_dag.test(run_conf=CONF)
    assert first.state == "success"
    assert questions_announced(first.run_id) == []  # nothing waits: nothing announced
    with psycopg.connect(db_uri) as conn:
        conn.execute(
            "INSERT INTO users (id, email) SELECT n, 'user' || n || '@example.com' FROM generate_series(1, 1000) n"
        )
        conn.commit()
        team = one(conn, "SELECT min(id) FROM teams")
        conn.execute(
            "INSERT INTO polls (team_id, created_by, question) SELECT %s, 1 + n %% 1000, 'Who plays?' "
            "FROM generate_series(1, 1000000) n",
            (team,),
        )
        conn.commit()

        second = league_dag.test(run_conf=CONF)
        assert second.state == "failed"
        states = {ti.task_id: ti.state for ti in second.get_task_instances()}
        assert states["health_check"] == "failed" and states["announce_questions"] == "success"
        error = one(conn, "SELECT report->>'error' FROM etl.runs WHERE run_id = %s", second.run_id)
        assert "rows polls" in error and "rows users" in error
        alarms = q(conn, "SELECT id, subject, status, row_count, answer FROM etl.growth_alarms ORDER BY subject")
        assert [(s, st, n, a) for _, s, st, n, a in alarms] == [
            ("polls", "error", 1_000_000, None),
            ("users", "error", 1_000, None),
        ]
        polls_alarm, users_alarm = (f"growth:{a[0]}" for a in alarms)
        assert f"league-import review decide {polls_alarm} expected" in error
        # The failed night still announces its questions, for league_review.
        assert questions_announced(second.run_id) == [{"run_id": second.run_id, "growth": 2}]

        assert cli.main(["review", "list"]) == 0
        listed = capsys.readouterr().out
        assert f"{polls_alarm}  Did polls grow as expected?" in listed and "rows that night: 1,000,000" in listed
        assert "options: expected | not expected" in listed
        for alarm in (polls_alarm, users_alarm):
            assert cli.main(["review", "decide", alarm, "expected"]) == 0
        assert "polls: 1,000,000 rows accepted as its baseline" in capsys.readouterr().out
        accepted = q(conn, "SELECT answer, decided_by LIKE 'cli:%%', decided_at IS NOT NULL FROM etl.growth_alarms")
        assert accepted == [("expected", True, True)] * 2

        third = league_dag.test(run_conf=CONF)
        assert third.state == "success"
        polls = q(
            conn,
            "SELECT status, detail FROM etl.health_checks WHERE run_id = %s AND check_name = 'rows' AND subject = 'polls'",
            third.run_id,
        )
        assert polls[0][0] == "ok"
        assert polls[0][1].startswith("1,000,000 rows when cli:") and "accepted them as expected on" in polls[0][1]
        assert one(conn, "SELECT count(*) FROM etl.growth_alarms WHERE answer IS NULL") == 0
