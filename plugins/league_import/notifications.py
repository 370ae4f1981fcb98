"""Failure notifications through Airflow's notifier interface.

LEAGUE_IMPORT_NOTIFY chooses: `log` (default) writes the summary to the task log; `smtp` sends it
through the Airflow connection `league_import_smtp` to LEAGUE_IMPORT_NOTIFY_TO; `webhook` posts
JSON to the URL of the Airflow connection `league_import_webhook` (its password, if any, is sent
as a bearer token and never logged).
"""

from __future__ import annotations

import json
import os
import urllib.request

from airflow.sdk import BaseNotifier, Context


def summary(context: Context) -> dict:
    """What a person needs first: which run, which task, and why (the failing checks, for health)."""
    ti = context.get("task_instance")
    return {
        "dag_id": getattr(context.get("dag"), "dag_id", "league_import"),
        "run_id": context.get("run_id"),
        "task_id": getattr(ti, "task_id", None),
        "error": str(context.get("exception") or ""),
    }


class LoggingNotifier(BaseNotifier):
    """The default: the summary in the task log, where the failure already is."""

    def notify(self, context: Context) -> None:
        s = summary(context)
        self.log.error("league_import failed: run %s, task %s\n%s", s["run_id"], s["task_id"], s["error"])


class WebhookNotifier(BaseNotifier):
    """POST the summary as JSON to the URL held by an Airflow connection."""

    def __init__(self, conn_id: str = "league_import_webhook", timeout: float = 10.0) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.timeout = timeout

    def notify(self, context: Context) -> None:
        from airflow.sdk import Connection

        conn = Connection.get(self.conn_id)
        scheme = conn.conn_type if conn.conn_type in ("http", "https") else "https"
        url = f"{scheme}://{conn.host}{f':{conn.port}' if conn.port else ''}/{(conn.schema or '').lstrip('/')}"
        headers = {"Content-Type": "application/json"}
        if conn.password:
            headers["Authorization"] = f"Bearer {conn.password}"
        body = json.dumps({"text": "league_import failed", **summary(context)}).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (operator-set URL)
            self.log.info("failure notification sent to connection %s: HTTP %s", self.conn_id, response.status)


def failure_notifier() -> BaseNotifier:
    """The notifier chosen by LEAGUE_IMPORT_NOTIFY; cheap to build at DAG parse time."""
    kind = os.environ.get("LEAGUE_IMPORT_NOTIFY", "log")
    if kind == "webhook":
        return WebhookNotifier()
    if kind == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(
            to=os.environ["LEAGUE_IMPORT_NOTIFY_TO"],
            smtp_conn_id="league_import_smtp",
            subject="league_import failed: {{ run_id }}",
            html_content="<p>Task {{ ti.task_id }} failed.</p><pre>{{ exception }}</pre>",
        )
    if kind != "log":
        raise ValueError(f"LEAGUE_IMPORT_NOTIFY={kind!r}: use log, smtp or webhook")
    return LoggingNotifier()
