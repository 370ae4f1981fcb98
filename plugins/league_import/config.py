"""Configuration, parsed with a schema in the first task: a typo fails the run before anything is
written, once, naming the key.

- Health thresholds: the Airflow Variable `league_import_health_thresholds` (JSON) over the
  defaults of Thresholds.
- Notifications: LEAGUE_IMPORT_NOTIFY (log, smtp, webhook) and LEAGUE_IMPORT_NOTIFY_TO.
- The source folder of a run without `source_dir` in its conf (every scheduled run): the Airflow
  Variable `league_import_source_dir`, else the environment variable LEAGUE_IMPORT_SOURCE_DIR.
"""

from __future__ import annotations

import json
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from league_import.errors import ConfigError

THRESHOLDS_VARIABLE = "league_import_health_thresholds"
SOURCE_DIR_VARIABLE = "league_import_source_dir"
SOURCE_DIR_ENV = "LEAGUE_IMPORT_SOURCE_DIR"


class Thresholds(BaseModel):
    """What the health check calls a warning or an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    growth_warn: float = Field(2.0, gt=1, description="rows now / max(rows before, min_baseline): a warning from")
    growth_error: float = Field(10.0, gt=1, description="the same ratio: an error from (41 -> 3,470,114 is far past)")
    drop_warn: float = Field(0.10, ge=0, le=1, description="share of the pipeline's own history tables lost")
    drop_error: float = Field(0.50, ge=0, le=1)
    min_baseline: int = Field(100, ge=1, description="the floor growth is measured against (+3 rows on 2 is fine)")
    quarantine_warn: int = Field(1, ge=1, description="rows waiting in quarantine: a warning from")
    renames_warn: int = Field(1, ge=1, description="suspected renames waiting for a person: a warning from")
    stale_hours: float = Field(36.0, gt=0, description="source files older than this: a warning")
    unchanged_nights: int = Field(2, ge=1, description="files identical for more nights than this: a warning")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.growth_error < self.growth_warn:
            raise ValueError("growth_error must be at least growth_warn")
        if self.drop_error < self.drop_warn:
            raise ValueError("drop_error must be at least drop_warn")
        return self


class NotifySettings(BaseModel):
    """How warnings and failures reach a person."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notify: Literal["log", "smtp", "webhook"] = "log"
    notify_to: str | None = None

    @model_validator(mode="after")
    def _recipients(self) -> NotifySettings:
        if self.notify == "smtp" and not self.notify_to:
            raise ValueError("LEAGUE_IMPORT_NOTIFY=smtp needs LEAGUE_IMPORT_NOTIFY_TO (comma-separated addresses)")
        return self


def _explain(where: str, exc: ValidationError) -> ConfigError:
    problems = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(value)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"key '{key}': {message}")
    return ConfigError(f"{where}: " + "; ".join(problems))


def thresholds(raw: str | dict | None) -> Thresholds:
    """The thresholds from the Variable's value (JSON text or a dict); refused with the key named."""
    where = f"Airflow Variable {THRESHOLDS_VARIABLE}"
    if raw in (None, ""):
        return Thresholds()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object of thresholds, got {type(raw).__name__}")
    try:
        return Thresholds(**raw)
    except ValidationError as exc:
        raise _explain(where, exc) from None


def notify_settings(environ: dict | None = None) -> NotifySettings:
    env = os.environ if environ is None else environ
    try:
        return NotifySettings(
            notify=env.get("LEAGUE_IMPORT_NOTIFY", "log"), notify_to=env.get("LEAGUE_IMPORT_NOTIFY_TO") or None
        )
    except ValidationError as exc:
        raise _explain("environment LEAGUE_IMPORT_NOTIFY*", exc) from None


def airflow_variable(name: str) -> str | None:
    """An Airflow Variable's text, or None when it is not set (or no Airflow is reachable)."""
    try:
        from airflow.sdk import Variable

        return Variable.get(name, default=None)
    except ImportError:
        return None


def source_dir(from_conf: str | None, variable: str | None = None) -> str:
    """The folder a run reads: its conf's source_dir, else the Variable, else the environment."""
    for value in (from_conf, variable, os.environ.get(SOURCE_DIR_ENV)):
        if value not in (None, "", "None"):
            return str(value)
    raise ConfigError(
        f"no source folder: this run has no source_dir in its conf, and neither the Airflow Variable "
        f"{SOURCE_DIR_VARIABLE} nor the environment variable {SOURCE_DIR_ENV} is set. Set one of them to the "
        'folder with one subfolder per league (or trigger with {"source_dir": "..."}).'
    )
