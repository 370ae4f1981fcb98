"""The Assets the DAGs share: league_import updates them, league_review is scheduled on them."""

from __future__ import annotations

from airflow.sdk import Asset

# Updated when a run succeeds (its health check passed); its extra carries the run's counts.
TEAMS = Asset(name="league_teams", uri="league-import://league_db/public/teams")
# Published at the end of every import run that was not a dry run, failed ones included, while
# questions wait for a person (quarantined rows, suspected renames, growth alarms); league_review
# is scheduled on it. Its extra counts the questions by kind.
QUESTIONS = Asset(name="league_questions", uri="league-import://league_db/etl/questions")
