"""The Assets the DAGs share: league_import updates them, league_review is scheduled on them."""

from __future__ import annotations

from airflow.sdk import Asset

# Updated when a run succeeds (its health check passed); its extra carries the run's counts.
TEAMS = Asset(name="league_teams", uri="league-import://league_db/public/teams")
