"""The league_review DAG's operators: a person answers each open question in the Airflow UI, and
each answer is applied as soon as it is given.

CollectDecisionsOperator lists the open questions (league_import.review.pending) by item id and
records where each is asked. Per item, a mapped task group asks (DecisionOperator: the standard
provider's HITLOperator, the question read from the database when it is asked) and applies
(ApplyDecisionOperator: review.decide under the task lock), so one answer never waits for
another. The work is done by plain functions (collect, question, apply_answer), testable without
Airflow.

league_review never holds up league_import: it takes no run lease, and takes the task lock only
for one decision's transaction at a time. While an import run holds the lease, applying stops as
transient and Airflow retries it later. Heavy modules are imported inside the functions, so
parsing the DAG stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import BaseOperator, Context, Param
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from league_import.operators import CONN_ID, LineageMethods, airflow_run_state, connect, task_scope

VIA = "airflow"
TEAM_ID, INACTIVE_OK = "team_id", "inactive_team"


def required_actions_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Where the UI asks one mapped HITL task: the mapped task instance's Required Actions tab.

    Not HITLOperator.generate_link_to_ui's ".../tasks/<task>/required_actions?map_index=<i>": the
    Airflow 3.3 UI ignores that map_index and shows "No Task Instance found" for a mapped task.
    """
    run = quote(run_id, safe="")
    return f"/dags/{dag_id}/runs/{run}/tasks/{task_id}/mapped/{map_index}/required_actions"


def collect(conn, *, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    """One {"item": id} per open question, in map-index order; each question's UI link recorded
    (etl.review_links) for the health report. A database the pipeline never migrated has nothing
    to ask; one behind the code waits for league_import."""
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
        asks.append({"item": item.id})
    return asks


def question(conn, item_id: str):
    """The open question `item_id` as it stands now (its evidence read again), or None once it
    was answered elsewhere (the CLI, another run)."""
    from league_import.review import pending

    return next((i for i in pending(conn) if i.id == item_id), None)


def form(item_id: str) -> dict[str, Param]:
    """The fields a question's form has besides its options: a quarantined row takes any team id
    of its league, and the confirmation that an inactive team is meant."""
    if not item_id.startswith("quarantine:"):
        return {}
    return {
        TEAM_ID: Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Team id",
            description="With the option 'the team id typed below': the id of a team of the row's league "
            "(`league-import review list` and the health report name teams with their ids).",
        ),
        INACTIVE_OK: Param(
            False,
            type="boolean",
            title="Inactive team",
            description="Tick to confirm that the team typed is inactive (its league's files no longer name it) "
            "and meant all the same.",
        ),
    }


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
            f"{held.describe()} holds this database; the answer is applied after it ends, on a retry of this task"
        )


def hold_task_lock(conn, run_state: Callable[[str, str], str | None] | None = None) -> None:
    """The task lock for this connection's life, never while an import run holds the lease: the
    lease is checked before waiting (a run's step is never waited for) and again once the lock is
    held (a run may have claimed the lease meanwhile). A live lease raises LockBusyError (transient)."""
    from league_import.runs import lock_task

    _refuse_while_importing(conn, run_state)
    lock_task(conn, wait=True)
    _refuse_while_importing(conn, run_state)


def apply_answer(
    conn,
    answer: dict,
    *,
    dag_run_id: str,
    run_state: Callable[[str, str], str | None] | None = None,
) -> str:
    """Apply one answered question with review.decide() under the task lock, recorded with who
    answered and this run's id; returns the outcome. An answer decide() refuses raises
    DecisionError (the item stays pending, asked again by the next run)."""
    from league_import.review import decide

    hold_task_lock(conn, run_state)
    fields = answer.get("params_input") or {}
    team_id = fields.get(TEAM_ID)
    return decide(
        conn,
        answer["item"],
        answer["chosen_options"][0],
        by=answered_by(answer),
        via=VIA,
        dag_run_id=dag_run_id,
        team_id=int(team_id) if team_id not in (None, "") else None,
        inactive_ok=bool(fields.get(INACTIVE_OK)),
    )


class CollectDecisionsOperator(LineageMethods, BaseOperator):
    """Lists the open questions (quarantined rows, suspected renames, growth alarms) as one
    {"item": id} each, for the question group's `.expand_kwargs()`; records each one's link."""

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
    """One open question in Required Actions, read from the database when it is asked (its
    evidence as it stands then; an item answered elsewhere meanwhile is skipped). No default: past
    its response timeout the task is skipped and the item stays pending (asked again by the next
    run). Its answer (XCom) carries the item it answers.

    The question's subject, body and options are never template fields: they carry text users
    wrote and names read from the league files, shown as written. Rendered,
    "{{ conn.league_db.password }}" in a captain's message would put the password in the UI.
    """

    template_fields: Sequence[str] = ("item", "response_timeout_minutes", "conn_id")
    ui_color = "#fdf1dc"
    lineage_step = "ask"

    def __init__(
        self, *, item: str, response_timeout_minutes: float | str, conn_id: str = CONN_ID, **kwargs: Any
    ) -> None:
        if kwargs.get("defaults"):
            raise ValueError("a decision has no default answer: a timeout leaves it pending")
        kwargs.setdefault("subject", "an open question")  # read from the database when asked
        kwargs.setdefault("options", ["(read when asked)"])
        super().__init__(**kwargs)
        self.item = item
        self.response_timeout_minutes = response_timeout_minutes
        self.conn_id = conn_id

    def execute(self, context: Context):
        from airflow.sdk.definitions.param import ParamsDict

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
            with connect(self.conn_id) as conn:
                asked = question(conn, self.item)
        if asked is None:
            raise AirflowSkipException(f"{self.item} was answered elsewhere since the run began: nothing to ask")
        self.subject, self.body, self.options = asked.subject, asked.body(), list(asked.options)
        self.params = ParamsDict(form(self.item))
        self.response_timeout = timedelta(minutes=minutes)
        return super().execute(context)

    def process_trigger_event_error(self, event: dict[str, Any]) -> None:
        if event.get("error_type") == "timeout":
            raise AirflowSkipException(
                f"{self.item}: no answer within {self.response_timeout_minutes} minutes; it stays pending and is "
                "asked again by the next run (or answer it with league-import review decide)"
            )
        super().process_trigger_event_error(event)

    def validate_chosen_options(self, chosen_options: list[str]) -> None:
        """The options were read when the question was asked; Airflow's API checked the answer
        against them as it was given (this instance, resumed, has not read them)."""
        if len(chosen_options) != 1:
            raise ValueError(f"one option expected, got {chosen_options}")

    def validate_params_input(self, params_input) -> None:
        from airflow.sdk.definitions.param import ParamsDict

        self.params = ParamsDict(form(self.item))
        super().validate_params_input(params_input)
        self.params.validate()

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict:
        return {**super().execute_complete(context, event), "item": self.item}


class ApplyDecisionOperator(LineageMethods, BaseOperator):
    """Applies one answer as soon as it is given (review.decide, one transaction under the task
    lock). An answer that cannot be applied fails the task, named in the log, and the item stays
    pending; an import run holding the database makes it retry later."""

    template_fields: Sequence[str] = ("conn_id", "answer")
    ui_color = "#e8f0fb"
    lineage_step = "apply"

    def __init__(self, *, answer: Any, conn_id: str = CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answer = answer
        self.conn_id = conn_id

    def execute(self, context: Context) -> str:
        from league_import.errors import DecisionError

        with task_scope(), connect(self.conn_id) as conn:
            try:
                outcome = apply_answer(conn, self.answer, dag_run_id=context["run_id"], run_state=airflow_run_state)
            except DecisionError as exc:
                raise AirflowFailException(
                    f"{self.answer['item']}: answer not applied, left pending (asked again by the next run, or answer "
                    f"with league-import review decide): {exc}"
                ) from exc
            self.keep_for_lineage({"applied": {self.answer["item"]: outcome}})
        self.log.info("%s: %s", self.answer["item"], outcome)
        return outcome
