"""The old system's damage and the faults the tests inject into each task (tests/dag/test_faults.py,
tests/e2e/test_celery.py), and the end state a night reaches from it."""

from __future__ import annotations

from helpers import create_user_data, old_etl_churn, orphan_count, placement, user_counts

COPIES = 50  # each captain's practice, copied by a looping backup

KILL_ONCE = """
CREATE SEQUENCE fault_once;
CREATE FUNCTION fault_kill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('fault_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
    RETURN NULL;
END $$;
"""
# Where each task is killed: after some of its work, in the middle of a transaction.
FAULTS = {
    # after its schema check and lease claim, on opening the run's row
    "validate_constraints": "CREATE TRIGGER fault AFTER INSERT ON etl.runs FOR EACH STATEMENT EXECUTE FUNCTION fault_kill()",
    # after the earlier tables' transactions and this table's archive copy
    "deduplicate": "CREATE TRIGGER fault AFTER DELETE OR TRUNCATE ON practice_times FOR EACH STATEMENT "
    "EXECUTE FUNCTION fault_kill()",
    "backup": "CREATE TRIGGER fault AFTER INSERT ON etl.backup_refs FOR EACH STATEMENT EXECUTE FUNCTION fault_kill()",
    "upsert_teams": "CREATE TRIGGER fault AFTER INSERT ON schedule FOR EACH STATEMENT EXECUTE FUNCTION fault_kill()",
    "restore_mapping": "CREATE TRIGGER fault AFTER INSERT ON etl.repairs FOR EACH STATEMENT EXECUTE FUNCTION fault_kill()",
    "health_check": "CREATE TRIGGER fault AFTER INSERT ON etl.health_checks FOR EACH STATEMENT EXECUTE FUNCTION fault_kill()",
}


def prepare(conn) -> dict:
    """The old system's damage: duplicated practices, no key, churned team ids."""
    create_user_data(conn)
    before = placement(conn)
    conn.execute("ALTER TABLE practice_times DROP CONSTRAINT practice_times_natural_key")
    conn.execute(
        """INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location, league_id)
           SELECT team_id, day_of_week, start_time, end_time, location, league_id
           FROM practice_times, generate_series(2, %s)""",
        (COPIES,),
    )
    conn.commit()
    counts = user_counts(conn)
    old_etl_churn(conn)
    return {"placement": before, "counts": counts}


def end_state(conn) -> dict:
    def one(query):
        value = conn.execute(query).fetchone()[0]
        conn.rollback()
        return value

    return {
        "placement": placement(conn),
        "orphans": orphan_count(conn),
        "counts": user_counts(conn),
        "teams": one("SELECT count(*) FROM teams"),
        "schedule": one("SELECT count(*) FROM schedule"),
        "archived practices": one("SELECT count(*) FROM etl_archive.practice_times"),
        "archived twice": one("SELECT count(*) - count(DISTINCT (id, run_id)) FROM etl_archive.practice_times"),
        "backup doubled": one(
            "SELECT count(*) FROM (SELECT 1 FROM etl.backup_refs GROUP BY run_id, table_name, row_id, team_id "
            "HAVING count(*) > 1) d"
        ),
        "repairs": one("SELECT count(*) FROM etl.repairs"),
        "status": one("SELECT status FROM etl.runs ORDER BY started_at DESC LIMIT 1"),
    }
