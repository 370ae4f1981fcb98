"""Every command the README shows that does not deploy anything, run verbatim as a user would in
this checkout, against a database of its own (AIRFLOW_CONN_LEAGUE_DB, which the commands honour)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from helpers import REPO, one

pytestmark = pytest.mark.dag

# Lines shown in the README that this test does not run, and why.
NOT_RUN = {
    "make test": "the suite itself",
    "make bench": "minutes of benchmarks on 100,000 teams; bench/README.md has their quick modes",
    "make ui": "runs until Ctrl-C: tests/e2e/test_ui.py runs it, in chromium, and stops it",
    "docker compose up -d --build": "deploys a stack (needs a Docker engine)",
    "export LEAGUE_IMPORT_TARGET=include/targets/league_app.toml": "points at the app's database (tests/db/test_target.py)",
    ".venv/bin/league-import target check --source-dir /data/leagues": "the app's database and its league folders "
    "(tests/db/test_target.py runs it on the app's schema)",
    ".venv/bin/league-import target apply": "changes the app's database (tests/db/test_target.py)",
}


def readme_blocks() -> list[list[str]]:
    """The README's ```sh blocks, as lists of command lines (a heredoc's body belongs to its line)."""
    text = (REPO / "README.md").read_text()
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        lines, heredoc = [], None
        for line in block.splitlines():
            if heredoc is not None:
                lines[-1] += "\n" + line
                heredoc = None if line.strip() == heredoc else heredoc
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            lines.append(line.strip())
            found = re.search(r"<<'?(\w+)'?", line)
            heredoc = found.group(1) if found else None
        blocks.append(lines)
    return blocks


def command(line: str) -> str:
    return line.split("#")[0].strip() if not line.startswith("cat >") else line


def deploys(line: str) -> bool:
    return command(line) in NOT_RUN or line.startswith("cat > .env")


def test_the_readme_shows_the_commands_it_should():
    lines = [command(line) for block in readme_blocks() for line in block]
    assert lines[:2] == ["make demo", "make test"]  # the quick start: exactly two commands
    assert {"make health", "make ui", ".venv/bin/league-import review list", ".venv/bin/league-import unlock"} <= set(lines)
    assert any(line.startswith(".venv/bin/airflow dags test league_import -c") for line in lines)


def test_every_readme_command_runs(db_uri):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "LEAGUE_IMPORT_"))}
    env.pop("AIRFLOW_HOME", None)
    env["AIRFLOW_CONN_LEAGUE_DB"] = db_uri
    ran = []
    for block in readme_blocks():
        script = [line for line in block if not deploys(line)]
        if not script:
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{script}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        ran += script
    assert "make demo" in [command(line) for line in ran]
    import psycopg

    with psycopg.connect(db_uri) as conn:  # the demo's story and the dry run ran on this database
        assert one(conn, "SELECT count(*) FROM etl.runs WHERE status = 'success'") >= 3
        assert one(conn, "SELECT count(*) FROM etl.runs WHERE dry_run") >= 1
