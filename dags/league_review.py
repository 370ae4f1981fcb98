"""league_review: a person decides what the pipeline never guesses.

Runs whenever a league_import run leaves questions (scheduled on the `league_questions` Asset,
published at the end of every import run that was not a dry run, failed runs included) and asks,
under Required Actions, one question per pending decision:

- a quarantined user row: which team is it on? The plausible teams of the row's league, each
  with why it is offered, a field for any other team id of that league, or "leave in quarantine";
- a suspected rename: are the two spellings one team? "same team" (merged, the old id kept) or
  "different teams" (not asked again);
- a table's growth past the health check's threshold: "expected" (tonight's count becomes its
  baseline) or "not expected" (the alarm stands).

Each question shows its evidence as written. Each answer is applied as soon as it is given (its
own `apply` task, in its own transaction under the task lock) and recorded with who answered in
etl.decisions. A question left unanswered past the response timeout (param
`response_timeout_minutes`, default LEAGUE_REVIEW_RESPONSE_TIMEOUT_MINUTES or 20 hours: open
through the working day, closed before the next night's import) is skipped and stays pending: the
next run asks it again. The same answers can be given with `league-import review list` and
`league-import review decide ID OPTION`.

It never holds up league_import: it takes no run lease, holds no worker slot while it waits, and
while an import run holds the database an `apply` task waits for it by retrying.

Wiring only: the work lives in league_import.review and league_import.review_operators.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag, task_group

from league_import.assets import QUESTIONS
from league_import.notifications import failure_notifier
from league_import.operators import retry_defaults, task_timeout
from league_import.review_operators import ApplyDecisionOperator, CollectDecisionsOperator, DecisionOperator

CONN_ID = "league_db"
ASK = "question.ask"
TIMEOUT_MINUTES = float(os.environ.get("LEAGUE_REVIEW_RESPONSE_TIMEOUT_MINUTES", str(20 * 60)))
TASK_TIMEOUT = task_timeout()


@dag(
    dag_id="league_review",
    description="A person answers what league_import never guesses: quarantined rows, suspected renames, growth",
    schedule=[QUESTIONS],
    start_date=pendulum.datetime(2026, 1, 1, tz="America/Chicago"),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["league", "review"],
    doc_md=__doc__,
    default_args=retry_defaults(),  # no DAG-wide execution_timeout: it would cut a question's wait
    params={
        "response_timeout_minutes": Param(
            TIMEOUT_MINUTES,
            type="number",
            exclusiveMinimum=0,
            title="Response timeout (minutes)",
            description="How long each question waits for an answer; unanswered, it stays pending and is "
            "asked again by the next run.",
        ),
    },
)
def league_review():
    collect = CollectDecisionsOperator(
        task_id="collect_decisions",
        conn_id=CONN_ID,
        ask_task_id=ASK,
        execution_timeout=TASK_TIMEOUT,
        on_failure_callback=failure_notifier(),
        doc_md="Reads: the pending decisions (etl.quarantine, etl.rename_suspects, etl.growth_alarms). "
        "Changes: etl.review_links (where each is asked, for the health report). Returns one item id "
        "per question. Recover: read the error in the log; a database behind the code is upgraded by the "
        "next league_import run; then clear the task.",
    )

    @task_group(group_id="question", tooltip="One open question: asked, then applied as soon as it is answered")
    def ask_and_apply(item: str) -> None:
        answer = DecisionOperator(
            task_id="ask",
            item=item,
            conn_id=CONN_ID,
            response_timeout_minutes="{{ params.response_timeout_minutes }}",
            map_index_template="{{ task.item }}",
            retries=0,  # a retry would ask again at once; the next run asks what is still pending
            doc_md="Reads: the question's evidence as it stands when asked. Changes: nothing; waits (no worker "
            "slot) for a person's answer under Required Actions, or `league-import review decide`. Past the "
            "response timeout it is skipped and the item stays pending. Recover: nothing to do; the next run "
            "asks again (or answer with the CLI).",
        )
        ApplyDecisionOperator(
            task_id="apply",
            conn_id=CONN_ID,
            answer=answer.output,
            map_index_template="{{ task.answer['item'] }}",
            retries=8,  # while an import run holds the database
            execution_timeout=TASK_TIMEOUT,
            on_failure_callback=failure_notifier(),
            doc_md="Reads: the answer, and the row or teams it decides, again, under a row lock. Changes: in one "
            "transaction under the task lock: the row re-attached or restored from etl_archive (never a row the "
            "app deleted or changed since: those are recorded as the app's, or refused), or the teams merged, or "
            "the pair recorded as distinct, or the table's baseline; etl.decisions (who, when, this run). "
            "Recover: an import run holding the database makes it retry by itself; an answer it refuses is "
            "named in the log and asked again by the next run.",
        )

    ask_and_apply.expand_kwargs(collect.output)

league_review()
