"""Each task killed midway (its database backend terminated after partial work): the retry reaches
the end state of a clean run, with nothing duplicated and nothing lost."""

from __future__ import annotations

import psycopg
import pytest
from faults import FAULTS, KILL_ONCE, end_state, prepare
from helpers import CONF

pytestmark = pytest.mark.dag

@pytest.mark.parametrize("task", list(FAULTS))
def test_a_task_killed_midway_is_retried_to_the_clean_end_state(league_dag, db_uri, clean_end_state, task):
    assert league_dag.test(run_conf=CONF).state == "success"
    with psycopg.connect(db_uri) as conn:
        prepare(conn)
        conn.execute(KILL_ONCE)
        conn.execute(FAULTS[task])
        conn.commit()
        dag_run = league_dag.test(run_conf=CONF)
        assert dag_run.state == "success"
        tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
        assert tries[task] == 2 and all(n == 1 for t, n in tries.items() if t != task)
        assert conn.execute("SELECT last_value FROM fault_once").fetchone()[0] >= 1  # the fault fired
        conn.rollback()
        assert end_state(conn) == clean_end_state
