# Two commands for users (README): `make demo` and `make test`. Both honour AIRFLOW_CONN_LEAGUE_DB.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo demo-app ui test health lint bench clean

$(INSTALLED): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "league-import needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

demo: $(INSTALLED)
	$(BIN)/league-import demo

# The same story on the league app's own schema (README: The app's own database).
demo-app: $(INSTALLED)
	$(BIN)/league-import demo-app

# Airflow's UI on the demo set-up, in the foreground (README: The UI); Ctrl-C stops it.
ui: $(INSTALLED)
	$(BIN)/league-import ui

test: $(INSTALLED)
	$(BIN)/python -m pytest

# Read-only checks against AIRFLOW_CONN_LEAGUE_DB, else the demo's embedded database.
health: $(INSTALLED)
	$(BIN)/league-import health

lint: $(INSTALLED)
	$(BIN)/ruff check dags plugins tests bench
	$(BIN)/ruff check --select AIR dags plugins

# Every benchmark, then docs/benchmarks.md written again from their output (about 10 minutes).
bench: $(INSTALLED)
	$(BIN)/python bench/report.py

clean:
	-$(BIN)/python -c 'from league_import.embedded import stop_server; stop_server()' 2>/dev/null
	rm -rf .demo
