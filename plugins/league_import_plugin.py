"""league-import's Airflow plugin: the health reports served by Airflow's API server, behind its
login, at /league-import/reports/ (league_import.reports_app), where the health_check task's
"Health report" link points.

Airflow loads this file in every component, each task's process included, but only the API server
reads `fastapi_apps`: the app (and the API server's modules it needs) is built there alone.
"""

from __future__ import annotations

from functools import cached_property

from airflow.plugins_manager import AirflowPlugin


class LeagueImportPlugin(AirflowPlugin):
    name = "league_import"

    @cached_property
    def fastapi_apps(self) -> list[dict]:
        from league_import.reports_app import PREFIX, create_app

        return [{"app": create_app(), "url_prefix": PREFIX, "name": "league_import health reports"}]
