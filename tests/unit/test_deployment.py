"""docker-compose.yaml and the Dockerfile: parsed, consistent with requirements.txt, and valid
for docker-compose where Debian's docker-compose is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml
from helpers import REPO

COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
SECRETS = {
    "AIRFLOW_DB_PASSWORD": "x",
    "LEAGUE_DB_PASSWORD": "y",
    "AIRFLOW_ADMIN_PASSWORD": "z",
    "AIRFLOW_JWT_SECRET": "w",
}


def pinned_airflow() -> str:
    return re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.MULTILINE).group(1)


def test_compose_has_the_celery_set_up_and_mounts_the_project():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {*AIRFLOW_SERVICES, "airflow-init", "redis", "airflow-db", "league-db"} <= set(services)
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        mounts = {m.split(":")[1] for m in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include"} <= mounts
        assert service["environment"]["AIRFLOW_CONN_LEAGUE_DB"].startswith("postgresql://league:${LEAGUE_DB_PASSWORD")
    assert services["airflow-worker"]["command"] == "celery worker"


def test_airflow_version_matches_requirements():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:(\S+?)-python3\.11$", dockerfile, re.MULTILINE).group(1) == pinned_airflow()
    image = yaml.safe_load(COMPOSE.read_text())["x-airflow-common"]["image"]
    assert image.endswith(f":{pinned_airflow()}")


def test_no_secret_is_written_in_the_file():
    text = COMPOSE.read_text()
    for name in SECRETS:
        assert f"${{{name}" in text
    assert not re.search(r"PASSWORD:\s*['\"]?\w+['\"]?\s*$", text, re.MULTILINE)


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="Debian's docker-compose is not installed")
def test_docker_compose_config_accepts_it():
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env={**os.environ, **SECRETS},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    missing = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k not in SECRETS},
    )
    assert missing.returncode != 0 and "set AIRFLOW_DB_PASSWORD" in missing.stderr


def test_the_worker_shares_the_common_settings_and_runs_one_task_at_a_time():
    """tests/e2e/test_celery.py starts the components with these environments; only the worker's
    concurrency is its own (league_import's tasks take the task lock in turn)."""
    compose = yaml.safe_load(COMPOSE.read_text())
    common = compose["x-airflow-common"]["environment"]
    for name in AIRFLOW_SERVICES:
        env = compose["services"][name]["environment"]
        own = {k: v for k, v in env.items() if common.get(k) != v}
        assert own == ({"AIRFLOW__CELERY__WORKER_CONCURRENCY": "1"} if name == "airflow-worker" else {}), name
