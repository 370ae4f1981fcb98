"""The health reports over http, inside Airflow's API server, behind Airflow's own login.

A FastAPI app that the plugin (plugins/league_import_plugin.py) mounts at /league-import: GET
/league-import/reports/ lists the reports, /league-import/reports/<file> serves one (the pages and
the plotly.js beside them) from the report folder (league_import.report.report_dir).

Airflow does not authenticate a plugin's app (a mounted app inherits none of the API's
dependencies), so this one does, with the API server's own dependency: a request needs a user of
the auth manager (the UI's cookie, or a bearer token) allowed to read league_import's task
instances, as the task's "Health report" link implies. A browser without a login is sent to the
login page, and back. Only regular files inside the folder are served: no `..`, no absolute path,
no symbolic link leading out of it, only pages and scripts.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

PREFIX = "/league-import"
REPORTS = "/reports"
DAG_ID = "league_import"  # the DAG whose runs write the reports
SERVED = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def report_file(folder: Path, name: str) -> Path | None:
    """The file `name` names inside `folder`, or None when it is not one to serve."""
    try:
        root = folder.resolve()
        found = (root / name).resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of links
        return None
    if not found.is_relative_to(root) or found == root or found.suffix not in SERVED:
        return None
    return found if found.is_file() else None


def listing(folder: Path) -> str:
    """The reports in the folder, newest first, as a page."""
    pages = sorted(
        (p for p in folder.glob("health_*.html") if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True
    )
    items = "\n".join(
        f'<li><a href="{quote(p.name)}">{html.escape(p.stem.removeprefix("health_"))}</a></li>' for p in pages
    )
    latest = '<p><a href="latest.html">the latest report</a></p>' if (folder / "latest.html").is_file() else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>league_import health reports</title>'
        "</head><body><h1>league_import health reports</h1>"
        f"{latest}<ul>\n{items}\n</ul>{'' if pages else '<p>no report yet: each league_import run writes one</p>'}"
        "</body></html>"
    )


def create_app():
    """The app, with Airflow's authentication and authorization on every route."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from league_import.report import report_dir

    app = FastAPI(
        title="league_import health reports",
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE, param_dag_id=DAG_ID))],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def to_login(request: Request, exc: StarletteHTTPException):
        """A browser without a login goes to the login page, which brings it back here."""
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return await http_exception_handler(request, exc)

    @app.get(REPORTS, include_in_schema=False)
    def folder_without_slash() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}{REPORTS}/")

    @app.get(f"{REPORTS}/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(listing(report_dir()))

    @app.get(f"{REPORTS}/{{name:path}}")
    def report(name: str) -> FileResponse:
        found = report_file(report_dir(), name)
        if found is None:
            raise HTTPException(status_code=404, detail="no such report")
        return FileResponse(found, media_type=SERVED[found.suffix], headers={"Cache-Control": "no-cache"})

    return app
