"""league_review: a person decides what the pipeline never guesses.

Runs after every successful league_import run (scheduled on its `league_teams` Asset) and asks,
under Required Actions, one question per pending decision:

- a quarantined user row: which team is it on? Each candidate team by its display name, or
  "leave in quarantine";
- a suspected rename: are the two spellings one team? "same team" (merged, the old id kept) or
  "different teams" (not asked again).

Each question shows its evidence. `apply_decisions` applies every answer in its own transaction
under the task lock and records who answered in etl.decisions. A question left unanswered past
the response timeout (param `response_timeout_minutes`, default LEAGUE_REVIEW_RESPONSE_TIMEOUT_MINUTES
or 20 hours: open through the working day, closed before the next night's import) fails its task
and stays pending: the next run asks it again. The same answers can be given with
`league-import review list` and `league-import review decide ID OPTION`.

It never holds up league_import: it takes no run lease, holds no worker slot while it waits, and
while an import run holds the database `apply_decisions` waits for it by retrying.

Wiring only: the work lives in league_import.review and league_import.review_operators.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, TriggerRule, dag

from league_import.assets import TEAMS
from league_import.notifications import failure_notifier
from league_import.operators import retry_defaults, task_timeout
from league_import.review_operators import ApplyDecisionsOperator, CollectDecisionsOperator, DecisionOperator

CONN_ID = "league_db"
ASK = "ask"
TIMEOUT_MINUTES = float(os.environ.get("LEAGUE_REVIEW_RESPONSE_TIMEOUT_MINUTES", str(20 * 60)))
TASK_TIMEOUT = task_timeout()


@dag(
    dag_id="league_review",
    description="A person answers what league_import never guesses: quarantined rows and suspected renames",
    schedule=[TEAMS],
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
        doc_md="Reads: the pending decisions (etl.quarantine, etl.rename_suspects) and their evidence. "
        "Changes: etl.review_links (where each is asked, for the health report). Returns one question "
        "per item. Recover: read the error in the log; a database behind the code is upgraded by the "
        "next league_import run; then clear the task.",
    )
    ask = DecisionOperator.partial(
        task_id=ASK,
        response_timeout_minutes="{{ params.response_timeout_minutes }}",
        map_index_template="{{ task.item }}",
        retries=0,  # a retry would ask again at once; the next run asks what is still pending
        doc_md="Reads: nothing. Changes: nothing; waits (no worker slot) for a person's answer under "
        "Required Actions, or `league-import review decide`. Past the response timeout it fails and the "
        "item stays pending. Recover: nothing to do; the next run asks again (or answer with the CLI).",
    ).expand_kwargs(collect.output)
    ApplyDecisionsOperator(
        task_id="apply_decisions",
        conn_id=CONN_ID,
        asked=collect.output,
        answers=ask.output,
        trigger_rule=TriggerRule.ALL_DONE,  # unanswered questions never stop the answered ones
        retries=8,  # while an import run holds the database
        execution_timeout=TASK_TIMEOUT,
        on_failure_callback=failure_notifier(),
        doc_md="Reads: the answers. Changes: per answer, in one transaction under the task lock: the row "
        "re-attached or restored from etl_archive, or the teams merged, or the pair recorded as distinct; "
        "etl.decisions (who, when, this run). Unanswered items stay pending. Recover: an import run "
        "holding the database makes it retry by itself; an answer it refuses (the evidence changed) is "
        "named in the log and asked again by the next run.",
    )


league_review()
