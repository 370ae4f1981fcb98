"""The reports served by Airflow's API server (league_import.reports_app, mounted by the plugin):
Airflow's whole API app in this process, with this checkout's plugins folder, its simple auth
manager and its metadata database; requests as a browser and a script make them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from league_import.reports_app import listing, report_file

PAGE = "<html><body>report</body></html>"


@pytest.fixture
def folder(tmp_path) -> Path:
    reports = tmp_path / "reports"
    (reports / "assets").mkdir(parents=True)
    (reports / "health_manual__1.html").write_text(PAGE)
    (reports / "latest.html").write_text(PAGE)
    (reports / "assets" / "plotly-6.0.0.min.js").write_text("/* plotly */")
    (reports / "assets" / "plotly-6.0.0.min.tmp").write_text("partial")
    (tmp_path / "secret.html").write_text("outside")
    (reports / "link.html").symlink_to(tmp_path / "secret.html")
    (reports / "sub.html").mkdir()
    return reports


def test_only_pages_and_scripts_inside_the_folder_are_served(folder):
    assert report_file(folder, "health_manual__1.html") == (folder / "health_manual__1.html").resolve()
    assert report_file(folder, "assets/plotly-6.0.0.min.js") == (folder / "assets/plotly-6.0.0.min.js").resolve()
    for name in (
        "../secret.html",  # out of the folder
        "assets/../../secret.html",
        str(folder.parent / "secret.html"),  # an absolute path
        "link.html",  # a link leading out
        "assets/plotly-6.0.0.min.tmp",  # not a page or a script
        "sub.html",  # a folder
        "missing.html",
        "",
        "health\0.html",
    ):
        assert report_file(folder, name) is None, name


def test_the_listing_links_every_report_newest_first(folder):
    os.utime(folder / "health_manual__1.html", (1, 1))
    (folder / "health_manual__2.html").write_text(PAGE)
    page = listing(folder)
    assert page.index('href="health_manual__2.html"') < page.index('href="health_manual__1.html"')
    assert 'href="latest.html"' in page and "secret" not in page


@pytest.fixture
def airflow_api(airflow_db, folder, monkeypatch, tmp_path):
    """Airflow's API app as `airflow api-server` builds it, with named users (no all-admins)."""
    from airflow.api_fastapi import app as api_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("LEAGUE_IMPORT_REPORT_DIR", str(folder))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "reader:viewer")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp_path / "passwords.json"))
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "a-secret-for-this-test-only-0123456789")
    api_app.purge_cached_app()
    try:
        yield TestClient(api_app.create_app(), base_url="http://127.0.0.1:8080")
    finally:
        api_app.purge_cached_app()


def token(role: str = "viewer") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="reader", role=role))


def test_airflow_serves_reports_only_to_its_users(airflow_api):
    url = "/league-import/reports/health_manual__1.html"
    # No login: a script is refused, a browser is sent to the login page, which brings it back.
    assert airflow_api.get(url).status_code == 401
    sent = airflow_api.get(url, headers={"Accept": "text/html"}, follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"].startswith("/auth/login")
    assert (
        "next=http%3A%2F%2F127.0.0.1%3A8080%2Fleague-import%2Freports%2Fhealth_manual__1.html"
        in (sent.headers["location"])
    )
    assert airflow_api.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 403
    # A user of Airflow who may read league_import's runs: by bearer token, or the UI's cookie.
    shown = airflow_api.get(url, headers={"Authorization": f"Bearer {token()}"})
    assert shown.status_code == 200 and shown.text == PAGE and shown.headers["content-type"].startswith("text/html")
    airflow_api.cookies.set("_token", token())
    script = airflow_api.get("/league-import/reports/assets/plotly-6.0.0.min.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert 'href="health_manual__1.html"' in airflow_api.get("/league-import/reports/").text
    # Nothing outside the folder, however the path is spelled.
    for path in (
        "../secret.html",
        "..%2Fsecret.html",
        "%2E%2E/secret.html",
        "link.html",
        "assets/..%2F..%2Fsecret.html",
    ):
        response = airflow_api.get(f"/league-import/reports/{path}")
        assert response.status_code == 404 and "outside" not in response.text, path
