"""Load benchmark: what the app sees while a whole run repairs the old system's churn on 1 M user rows.

A simulated app (bench/app.py: writers of polls, captain messages, practice times and
memberships; readers of a team's page) runs at a fixed rate on connections of its own, before,
during and after night 2 (every task, as the DAG runs them, in a process of its own) on the
churned state of bench_repair (bench/churn.py). Reports the app's p50/p99/max latency and failed
operations, per kind and per task, and every moment an app session waited on a lock.
A measurement, not a test: it exits non-zero only on errors (tests/db/test_app_load.py is the test).
Run: .venv/bin/python bench/bench_app_load.py [--rows 100000] [--rate 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import churn
import psycopg
from app import KINDS, App
from common import BenchDatabase, clone_database, database_name, drop_database, expect, positive, run, with_database
from pipeline import TASKS, in_child, night
from psycopg import sql

ROWS = 1_000_000
RATE = 40.0  # operations per second, half of them reads
SETTLE = 3.0  # seconds of app load before and after the run
TARGET_MAX_MS = 200.0


class Bench(BenchDatabase):
    def __init__(self, uri: str, rows: int):
        super().__init__(uri)
        self.rows = rows
        self.template = f"{database_name(uri)}_churned"

    def prepare(self) -> dict:
        drop_database(self.uri, self.template)
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        return churn.prepare(with_database(self.uri, self.template), self.rows)

    def close(self) -> None:
        super().close()
        drop_database(self.uri, f"{self.template}_run")
        drop_database(self.uri, self.template)


def measure(bench: Bench, args: argparse.Namespace) -> dict:
    facts = bench.prepare()
    print(
        f"  set-up: {facts['rows']:,} user rows, {facts['orphans']:,} orphaned by the churn; {facts['prepare_s']:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    uri = clone_database(bench.uri, bench.template, f"{bench.template}_run")
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    app = App(uri, rate=args.rate).start()
    time.sleep(SETTLE)
    result = in_child(night, uri, churn.NIGHT_2, str(churn.DEMO_DATA))
    time.sleep(SETTLE)
    seen = app.stop()
    tasks = result["tasks"]
    repair = tasks["restore_mapping"]["report"]
    expect(repair["orphans"] == facts["orphans"], f"restore_mapping found {repair['orphans']} of {facts['orphans']}")
    with psycopg.connect(uri) as conn:
        wrong = churn.misplaced(conn, facts["teams"], facts["rows_by_table"])
        left = churn.orphan_count(conn)
    expect(not any(wrong.values()) and left == 0, f"after the run: {wrong}, {left} orphans")
    first, last = tasks[TASKS[0]]["started"], tasks[TASKS[-1]]["ended"]
    phases = {"before the run": (0.0, first), **{t: (tasks[t]["started"], tasks[t]["ended"]) for t in TASKS}}
    phases["after the run"] = (last, float("inf"))
    return {
        **{k: v for k, v in facts.items() if k != "prepare_s"},
        "rate": args.rate,
        "run_s": last - first,
        "app": seen.summary(),
        "during_run": seen.summary([o for o in seen.ops if first <= o.due <= last]),
        "by_kind": seen.by_kind(),
        "by_phase": {
            name: {
                "seconds": min(end, seen.ops[-1].due) - max(start, seen.ops[0].due) if seen.ops else 0.0,
                **seen.summary([o for o in seen.ops if start <= o.due < end]),
            }
            for name, (start, end) in phases.items()
        },
        "lock_waits": [list(w) for w in seen.lock_waits],
        "tasks": {t: {"seconds": tasks[t]["seconds"]} for t in TASKS},
        "health": {k: tasks["health_check"]["report"].get(k) for k in ("status", "failed_checks")},
        "batches": repair.get("batches"),
    }


def print_table(r: dict) -> None:
    print(
        f"app at {r['rate']:g} operations/s ({', '.join(KINDS)}; half reads) on its own connections, before, during "
        f"and after night 2 ({r['run_s']:.1f} s) repairing {r['orphans']:,} of {r['rows']:,} user rows"
    )
    print()
    header = ("", "ops", "failed", "p50 ms", "p99 ms", "max ms")
    rows = [("all", r["app"]), ("during the run", r["during_run"])]
    rows += [(kind, r["by_kind"][kind]) for kind in KINDS]
    rows += [
        (name if name in ("before the run", "after the run") else f"during {name}", x)
        for name, x in r["by_phase"].items()
    ]
    cells = [
        (
            label,
            f"{x['operations']:,}",
            f"{x['failed']}",
            f"{x['p50_ms']:.1f}",
            f"{x['p99_ms']:.1f}",
            f"{x['max_ms']:.1f}",
        )
        for label, x in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    for line in (header, *cells):
        print(line[0].ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(line[1:], widths[1:])))
    print()
    errors = sorted({e for x in (r["app"],) for e in x["errors"]})
    print(f"errors: {'; '.join(errors) if errors else 'none'}")
    health = r["health"]
    failed = [c.lstrip("- ").split(":")[0] for c in health["failed_checks"] or []]
    print(f"night 2's health check: {health['status']}" + (f" ({', '.join(failed)})" if failed else ""))
    if failed:
        print(
            "  (growth alarms of this set-up: the last successful run, night 1, saw no user rows and no repair;"
            " the DAG would fail the run at its last task, after every step's work)"
        )
    waits = r["lock_waits"]
    print(f"app sessions seen waiting on a lock (polled every 20 ms): {len(waits)}")
    for w in waits[:5]:
        print(f"  at {w[0]:.2f} s: {w[2]} on '{w[3]}', blocked by {w[4]} ({w[5]})")


def targets(r: dict, _peak: float) -> list[dict]:
    app = r["app"]
    return [
        {
            "target": "no failed app operation",
            "value": f"{app['failed']}",
            "status": "PASS" if not app["failed"] else "MISS",
        },
        {
            "target": f"no app operation waits {TARGET_MAX_MS:g} ms or more",
            "value": f"max {app['max_ms']:.0f} ms",
            "status": "PASS" if app["max_ms"] < TARGET_MAX_MS else "MISS",
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive, default=ROWS, help=f"user rows in all (default {ROWS:,})")
    parser.add_argument("--rate", type=float, default=RATE, help=f"app operations per second (default {RATE:g})")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    args.repeat, args.profile = 1, False
    return run(
        args,
        "bench_app_load",
        make_bench=lambda uri: Bench(uri, args.rows),
        measure=lambda bench: measure(bench, args),
        print_table=print_table,
        profile=lambda bench: {},
        print_profile=lambda runs: None,
        targets=targets,
    )


if __name__ == "__main__":
    sys.exit(main())
