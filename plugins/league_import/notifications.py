"""Notifications through Airflow's notifier interface: failures, and warnings that need a person.

LEAGUE_IMPORT_NOTIFY chooses: `log` (default) writes the message to the task log; `smtp` sends it
through the Airflow connection `league_import_smtp` to LEAGUE_IMPORT_NOTIFY_TO; `webhook` posts
JSON to the URL of the Airflow connection `league_import_webhook` (its password, if any, is sent
as a bearer token and never logged). A failure sends one message; a run whose health check
leaves decisions to a person (quarantined rows, suspected renames, stale sources) sends one
message listing them all and where to decide. No message carries personal data.
"""

from __future__ import annotations

import json
import urllib.request

from airflow.sdk import BaseNotifier, Context

from league_import.words import plural, verb

DECISIONS_KEY = "league_import_decisions"


def summary(context: Context) -> dict:
    """What a person needs first: which run, which task, and why; or which decisions wait."""
    ti = context.get("task_instance")
    decisions = context.get(DECISIONS_KEY) or []
    base = {
        "dag_id": getattr(context.get("dag"), "dag_id", "league_import"),
        "run_id": context.get("run_id"),
        "task_id": getattr(ti, "task_id", None),
    }
    if decisions:
        lines = [f"- {d['check']} {d['subject']}: {d['detail']}" for d in decisions]
        need = verb(len(decisions), "needs", "need")
        return {
            **base,
            "text": f"{base['dag_id']}: {plural(len(decisions), 'warning')} {need} a person",
            "decisions": decisions,
            "message": "\n".join(lines),
        }
    error = str(context.get("exception") or "")
    return {**base, "text": f"{base['dag_id']} failed", "error": error, "message": error}


class LoggingNotifier(BaseNotifier):
    """The default: the message in the task log, where the failure or the warning already is."""

    def notify(self, context: Context) -> None:
        s = summary(context)
        self.log.error("%s: run %s, task %s\n%s", s["text"], s["run_id"], s["task_id"], s["message"])


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
        body = json.dumps(summary(context), default=str).encode()
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (operator-set URL)
            self.log.info("notification sent to connection %s: HTTP %s", self.conn_id, response.status)


class SmtpDigestNotifier(BaseNotifier):
    """E-mail through the Airflow connection `league_import_smtp` (the smtp provider's notifier)."""

    def __init__(self, to: str) -> None:
        super().__init__()
        self.to = to

    def notify(self, context: Context) -> None:
        from html import escape

        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        s = summary(context)
        SmtpNotifier(
            to=self.to,
            smtp_conn_id="league_import_smtp",
            subject=f"{s['text']}: {s['run_id']}",
            html_content=f"<p>Task {escape(str(s['task_id']))}</p><pre>{escape(s['message'])}</pre>",
        ).notify(context)


def failure_notifier() -> BaseNotifier:
    """The notifier chosen by LEAGUE_IMPORT_NOTIFY; cheap to build at DAG parse time (the setting
    is checked with a schema by the run's first task, league_import.config)."""
    import os

    kind = os.environ.get("LEAGUE_IMPORT_NOTIFY", "log")
    if kind == "webhook":
        return WebhookNotifier()
    if kind == "smtp":
        return SmtpDigestNotifier(os.environ.get("LEAGUE_IMPORT_NOTIFY_TO", ""))
    return LoggingNotifier()


def notify_decisions(context: Context, checks) -> None:
    """One message for the run's warnings that need a person, listing each and where to decide."""
    from dataclasses import asdict

    decisions = [{k: v for k, v in asdict(c).items() if k != "sample"} for c in checks]
    failure_notifier().notify({**context, DECISIONS_KEY: decisions})
