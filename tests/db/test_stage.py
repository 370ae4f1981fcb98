"""The run's stage on a real PostgreSQL: the files read once into per-run partitions, and dropped.

Later tasks load from the stage, never from the files, so the stage must hold exactly what the
files say, be rebuilt (not appended to) by a retry, and never outlive its run for long.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from helpers import FRESH_DEMO, LEAGUE, copy_demo, q, read

from league_import import stage, steps
from league_import.errors import SourceError, TerminalError
from league_import.runs import finish_run, start_run
from league_import.schema import ensure_schema
from league_import.sources import SCHEDULE_FILE, STATS_FILE


@pytest.fixture
def db(conn):
    ensure_schema(conn)
    return conn


def validate(conn, run_id, source=FRESH_DEMO, dry_run=False) -> dict:
    return steps.validate(conn, run_id, source_dir=str(source), leagues=[], dry_run=dry_run)


def partitions(conn, run_id) -> list[str | None]:
    s = stage.suffix(run_id)
    names = [f"etl.stage_{kind}__{s}" for kind in ("teams", "schedule", "stats")]
    return [q(conn, "SELECT to_regclass(%s)::text", name)[0][0] for name in names]


def staged_rows(conn, run_id) -> tuple[int, int, int]:
    return tuple(
        q(conn, f"SELECT count(*) FROM etl.stage_{kind} WHERE run_id = %s", run_id)[0][0]
        for kind in ("teams", "schedule", "stats")
    )


def staged(conn, run_id):
    with conn.transaction(), conn.cursor() as cur:
        return stage.staged_leagues(cur, run_id)


def test_validate_stages_the_season_in_the_runs_partitions(db):
    report = validate(db, "run-1")
    assert report["leagues"] == [LEAGUE]
    assert report["implied"] == {
        LEAGUE: {"teams": 537, "series": 53, "clubs": 55, "schedule": 4931, "series_stats": 537}
    }
    assert all(partitions(db, "run-1"))
    assert staged_rows(db, "run-1") == (537, 4931, 537)
    # Rows sit in the run's own partitions, not in the parents.
    s = stage.suffix("run-1")
    assert q(db, f"SELECT count(*) FROM etl.stage_schedule__{s}")[0][0] == 4931
    assert q(db, "SELECT count(*) FROM ONLY etl.stage_schedule")[0][0] == 0
    byes = q(db, "SELECT home_key, away_key FROM etl.stage_schedule WHERE location = 'BYE' ORDER BY away_key")
    assert byes == [(None, "glenellyn"), (None, "medinah")]
    assert staged(db, "run-1") == [LEAGUE]


def test_the_files_read_are_recorded_with_their_hash(db):
    validate(db, "run-1")
    rows = q(
        db,
        """SELECT file_name, size_bytes, sha256, records, first_date::text, last_date::text
           FROM etl.source_files WHERE run_id = 'run-1' ORDER BY file_name""",
    )
    schedule = (FRESH_DEMO / LEAGUE / SCHEDULE_FILE).read_bytes()
    stats = (FRESH_DEMO / LEAGUE / STATS_FILE).read_bytes()
    assert rows == [
        (SCHEDULE_FILE, len(schedule), hashlib.sha256(schedule).hexdigest(), 4931, "2024-09-24", "2025-03-11"),
        (STATS_FILE, len(stats), hashlib.sha256(stats).hexdigest(), 537, None, None),
    ]


def test_a_retry_rebuilds_the_stage_instead_of_adding_to_it(db, tmp_path):
    validate(db, "run-1")
    src = copy_demo(tmp_path)
    (src / LEAGUE / SCHEDULE_FILE).write_text(json.dumps(read(src, SCHEDULE_FILE)[:100]))
    validate(db, "run-1", src)  # the retry sees other files: the stage holds them, not both
    assert staged_rows(db, "run-1") == (537, 100, 537)
    assert q(db, "SELECT count(*) FROM etl.source_files WHERE run_id = 'run-1'")[0][0] == 2
    assert staged(db, "run-1") == [LEAGUE]


def test_a_bad_second_league_leaves_no_stage(db, tmp_path):
    """The first league was staged as soon as it was valid; the second's problem drops it again."""
    src = copy_demo(tmp_path)
    second = src / "ZZ_SECOND"
    shutil.copytree(src / LEAGUE, second)
    stats = [dict(r, league_id="ZZ_SECOND") for r in read(src, STATS_FILE)]
    stats[3]["points"] = 2**40
    (second / STATS_FILE).write_text(json.dumps(stats))
    with pytest.raises(SourceError, match=r"ZZ_SECOND/series_stats.json: record 3: field 'points'"):
        validate(db, "run-1", src)
    assert staged(db, "run-1") is None and partitions(db, "run-1") == [None, None, None]
    assert staged_rows(db, "run-1") == (0, 0, 0)
    assert q(db, "SELECT count(*) FROM etl.source_files WHERE run_id = 'run-1'")[0][0] == 0
    with pytest.raises(TerminalError, match="run never-validated has no stage"):
        steps.upsert(db, "never-validated", max_ratio=0.2, dry_run=False)


def test_drop_stage_drops_the_partitions(db):
    validate(db, "run-1")
    with db.transaction(), db.cursor() as cur:
        stage.drop_stage(cur, "run-1")
    assert partitions(db, "run-1") == [None, None, None]
    assert staged(db, "run-1") is None
    assert staged_rows(db, "run-1") == (0, 0, 0)
    with pytest.raises(TerminalError, match="run run-1 has no stage"):
        steps.upsert(db, "run-1", max_ratio=0.2, dry_run=False)


def test_a_later_run_drops_the_stages_of_ended_runs_only(db):
    """A crashed run leaves its stage: the next run drops it, but never a running run's."""
    validate(db, "ended")
    finish_run(db, "ended", "failed", "crashed")
    validate(db, "running")  # still running: another run must keep its stage
    validate(db, "next")
    assert partitions(db, "ended") == [None, None, None]
    assert staged(db, "ended") is None
    assert all(partitions(db, "running")) and staged(db, "running") == [LEAGUE]
    assert all(partitions(db, "next")) and staged_rows(db, "next") == (537, 4931, 537)
    finish_run(db, "running", "success")
    with db.transaction(), db.cursor() as cur:
        assert stage.drop_ended(cur, keep="next") == 1
        assert stage.drop_ended(cur, keep="next") == 0
    assert partitions(db, "running") == [None, None, None]
    assert all(partitions(db, "next"))


def test_a_stage_without_a_run_row_counts_as_ended(db):
    start_run(db, "orphan", False)
    stage.open_stage(db, "orphan")
    db.execute("DELETE FROM etl.runs WHERE run_id = 'orphan'")
    db.commit()
    with db.transaction(), db.cursor() as cur:
        assert stage.drop_ended(cur) == 1
    assert partitions(db, "orphan") == [None, None, None]
