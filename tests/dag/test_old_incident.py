"""The old system's id churn, replayed end to end through the DAG (issue 4's acceptance)."""

from __future__ import annotations

import psycopg
import pytest
from helpers import (
    CONF,
    USER_TABLES,
    archived,
    create_user_data,
    old_etl_churn,
    orphan_count,
    placement,
    user_counts,
)

pytestmark = pytest.mark.dag

CAPTAINS = 60  # create_user_data's users, each captain of one team


def test_old_etl_churn_is_repaired_with_every_row_on_its_real_team(league_dag, db_uri):
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        create_user_data(conn)
        before, counts = placement(conn), user_counts(conn)
        deleted = [name for (name,) in conn.execute("SELECT team_name FROM teams ORDER BY id LIMIT 3").fetchall()]
        conn.rollback()
        old_etl_churn(conn, delete_outright=deleted)
        assert orphan_count(conn) == 4 * CAPTAINS + 1

        assert league_dag.test(run_conf=CONF).state == "success"

        assert orphan_count(conn) == 0
        after = placement(conn)
        moved_message = max((k for k in after if k[0] == "captain_messages"), key=lambda k: int(k[1]))
        assert after.pop(moved_message)  # the message with no history, decided below
        assert after == before  # same league, series and team for every row that had one
        for table in USER_TABLES:  # live + archived = before
            assert user_counts(conn)[table] + archived(conn, table) == counts[table]
        report = conn.execute("SELECT status, report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()
        status, repair = report[0], report[1]["restore_mapping"]
        assert status == "success"
        assert repair["by_strategy"] == {
            "key_map": 4 * CAPTAINS,
            "restored_team": 0,
            "content": 0,
            "user_context": 1,
            "quarantine": 0,
        }
        assert repair["foreign_keys_validated"] == []  # the foreign keys stayed valid throughout
        assert report[1]["backup"]["row_counts"]["polls"] == CAPTAINS

        # A second night changes nothing more.
        assert league_dag.test(run_conf=CONF).state == "success"
        repeat = conn.execute("SELECT report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
        assert repeat["restore_mapping"]["orphans"] == 0
