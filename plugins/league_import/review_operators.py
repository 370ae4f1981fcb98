"""The league_review DAG's operators: a person answers each open question in the Airflow UI.

CollectDecisionsOperator lists league_import.review.pending() as one set of arguments per item
(for dynamic task mapping) and records where each is asked; DecisionOperator is the standard
provider's HITLOperator that also names its item, so that its answer says what it answers;
ApplyDecisionsOperator applies the answers with review.decide(). The work is done by the plain
functions collect() and apply_answers(), testable without Airflow.

league_review never holds up league_import: it takes no run lease, and takes the task lock only
for one decision's transaction at a time. While an import run holds the lease, applying stops as
transient and Airflow retries it later. Heavy modules are imported inside the functions, so
parsing the DAG stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from league_import.operators import CONN_ID, LineageMethods, airflow_run_state, connect, task_scope

VIA = "airflow"


def required_actions_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Where the UI asks one mapped HITL task: the mapped task instance's Required Actions tab.

    Not HITLOperator.generate_link_to_ui's ".../tasks/<task>/required_actions?map_index=<i>": the
    Airflow 3.3 UI ignores that map_index and shows "No Task Instance found" for a mapped task.
    """
    run = quote(run_id, safe="")
    return f"/dags/{dag_id}/runs/{run}/tasks/{task_id}/mapped/{map_index}/required_actions"


def collect(conn, *, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    """One dict of DecisionOperator arguments per open question, in map-index order; each
    question's UI link recorded (etl.review_links) for the health report. A database the
    pipeline never migrated has nothing to ask; one behind the code waits for league_import."""
    from league_import.errors import TerminalError
    from league_import.review import pending, record_link
    from league_import.schema import current, head

    revision = current(conn)
    if revision is None:
        return []
    if revision != head():
        raise TerminalError(
            f"the database is at schema revision {revision}, the code at {head()}: the next league_import run "
            "upgrades it (its first task); nothing asked"
        )
    asks = []
    for index, item in enumerate(pending(conn)):
        record_link(conn, item.id, run_id, task_id, index, required_actions_path(dag_id, run_id, task_id, index))
        asks.append({"item": item.id, "subject": item.subject, "body": item.body(), "options": list(item.options)})
    return asks


def answered_by(answer: dict) -> str:
    """The Airflow user who answered, as etl.decisions records it ("airflow:<user name>")."""
    user = answer.get("responded_by_user") or {}
    return f"{VIA}:{user.get('name') or user.get('id') or 'unknown user'}"


def _refuse_while_importing(conn, run_state) -> None:
    from league_import.errors import LockBusyError
    from league_import.runs import dead_reason, lease

    held = lease(conn)
    if held is not None and dead_reason(held, run_state) is None:
        raise LockBusyError(
            f"{held.describe()} holds this database; answers are applied after it ends, on a retry of this task"
        )


def hold_task_lock(conn, run_state: Callable[[str, str], str | None] | None = None) -> None:
    """The task lock for this connection's life, never while an import run holds the lease: the
    lease is checked before waiting (a run's step is never waited for) and again once the lock is
    held (a run may have claimed the lease meanwhile). A live lease raises LockBusyError (transient)."""
    from league_import.runs import lock_task

    _refuse_while_importing(conn, run_state)
    lock_task(conn, wait=True)
    _refuse_while_importing(conn, run_state)


def apply_answers(
    open_connection: Callable[[], Any],
    asked: Iterable[dict],
    answers: Iterable[dict],
    *,
    dag_run_id: str,
    run_state: Callable[[str, str], str | None] | None = None,
) -> dict:
    """Apply each answered question with review.decide(), each on its own connection and in its
    own transaction under the task lock, recorded with who answered and this run's id.

    Returns {"applied": {item: outcome}, "unanswered": [item], "refused": {item: why}}: an
    unanswered (timed-out) question is left pending, to be asked again by the next run; an answer
    decide() refuses (the evidence changed since it was asked) is left pending too.
    """
    from league_import.errors import DecisionError
    from league_import.review import decide

    by_item = {a["item"]: a for a in answers if a and a.get("chosen_options")}
    report: dict = {"applied": {}, "unanswered": [], "refused": {}}
    for ask in asked:
        item = ask["item"]
        answer = by_item.get(item)
        if answer is None:
            report["unanswered"].append(item)
            continue
        with open_connection() as conn:
            hold_task_lock(conn, run_state)
            try:
                outcome = decide(
                    conn, item, answer["chosen_options"][0], by=answered_by(answer), via=VIA, dag_run_id=dag_run_id
                )
            except DecisionError as exc:
                report["refused"][item] = str(exc)
                continue
        report["applied"][item] = outcome
    return report


class CollectDecisionsOperator(LineageMethods, BaseOperator):
    """Lists the open questions (quarantined rows, suspected renames) as DecisionOperator
    arguments, one per item, for `.expand_kwargs()`; records each item's Required Actions link."""

    template_fields: Sequence[str] = ("conn_id", "ask_task_id")
    ui_color = "#e8f0fb"
    lineage_step = "collect_decisions"

    def __init__(self, *, ask_task_id: str, conn_id: str = CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ask_task_id = ask_task_id
        self.conn_id = conn_id

    def execute(self, context: Context) -> list[dict]:
        with task_scope(), connect(self.conn_id) as conn:
            asks = collect(conn, dag_id=context["dag"].dag_id, run_id=context["run_id"], task_id=self.ask_task_id)
            self.keep_for_lineage(asks)
        self.log.info("%s open questions asked: %s", len(asks), ", ".join(a["item"] for a in asks) or "none")
        return asks


class DecisionOperator(LineageMethods, HITLOperator):
    """One open question in Required Actions. No defaults: past its response timeout the task
    fails with HITLTimeoutError and the item stays pending (asked again by the next run). Its
    answer (XCom) carries the item it answers.

    subject, body and options are not template fields, unlike HITLOperator's: they carry text
    users wrote and names read from the league files, which must be shown as written. Rendered,
    "{{ conn.league_db.password }}" in a captain's message would put the password in the UI
    (values given by expand_kwargs from XCom are rendered like any other).
    """

    template_fields: Sequence[str] = ("item", "response_timeout_minutes")
    ui_color = "#fdf1dc"
    lineage_step = "ask"

    def __init__(self, *, item: str, response_timeout_minutes: float | str, **kwargs: Any) -> None:
        if kwargs.get("defaults"):
            raise ValueError("a decision has no default answer: a timeout leaves it pending")
        super().__init__(**kwargs)
        self.item = item
        self.response_timeout_minutes = response_timeout_minutes

    def execute(self, context: Context):
        from league_import.errors import ConfigError

        try:
            minutes = float(self.response_timeout_minutes)
        except (TypeError, ValueError):
            minutes = 0.0
        with task_scope():
            if not minutes > 0:
                raise ConfigError(
                    "param response_timeout_minutes: expected a number of minutes above 0, "
                    f"got {self.response_timeout_minutes!r}"
                )
        self.response_timeout = timedelta(minutes=minutes)
        return super().execute(context)

    def process_trigger_event_error(self, event: dict[str, Any]) -> None:
        if event.get("error_type") == "timeout":
            minutes = self.response_timeout_minutes
            self.log.warning("%s: no answer within %s minutes; it stays pending", self.item, minutes)
        super().process_trigger_event_error(event)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict:
        return {**super().execute_complete(context, event), "item": self.item}


class ApplyDecisionsOperator(LineageMethods, BaseOperator):
    """Applies every answered question (review.decide, one transaction each under the task lock);
    unanswered ones are reported and stay pending. An answer that cannot be applied fails the
    task after the others are applied; an import run holding the database makes it retry later."""

    template_fields: Sequence[str] = ("conn_id", "asked", "answers")
    ui_color = "#e8f0fb"
    lineage_step = "apply_decisions"

    def __init__(self, *, asked: Any, answers: Any, conn_id: str = CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked = asked
        self.answers = answers
        self.conn_id = conn_id

    def execute(self, context: Context) -> dict:
        # By index: iterating a mapped task's results asks for one past the end (a logged 404).
        asked, answers = (list(v[i] for i in range(len(v))) if v else [] for v in (self.asked, self.answers))
        with task_scope():
            report = apply_answers(
                lambda: connect(self.conn_id),
                asked,
                answers,
                dag_run_id=context["run_id"],
                run_state=airflow_run_state,
            )
            self.keep_for_lineage(report)
        for item, outcome in report["applied"].items():
            self.log.info("%s: %s", item, outcome)
        if report["unanswered"]:
            self.log.warning("not answered, left pending: %s", ", ".join(report["unanswered"]))
        if report["refused"]:
            refused = "; ".join(f"{item}: {why}" for item, why in report["refused"].items())
            raise AirflowFailException(f"answers not applied, left pending (answer again next run): {refused}")
        return report
