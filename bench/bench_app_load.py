"""Load benchmark: what the app sees while a whole run deduplicates and repairs the old system's
churn on 1 M user rows.

A simulated app (bench/app.py: writers of polls, captain messages, practice times and
memberships; readers of a team's page) runs at a fixed rate on connections of its own, before,
during and after night 2 (every task, as the DAG runs them, in a process of its own) on the
churned state of bench_repair (bench/churn.py), with the old system's duplicates on top: every
membership written three times (no key: deduplicate copies the survivors and truncates, plan
truncate_reload; the memberships the churn orphaned joined again first) and a thousand users
signed up twice, their polls on the second account
(pointed at: plan delete, the polls moved to the survivor). A person answered "expected" to the
app's growth since night 1 (bench-night-1b, a night that failed on it, as README's Decisions
describe), so night 2 passes its health check. Reports the app's p50/p99/max latency and failed
operations, per kind and per task, and every moment an app session waited on a lock; the worst
over --repeat runs, each on a copy of the same state.
A measurement, not a test: it exits non-zero only on errors (tests/db/test_app_load.py is the test).
Run: .venv/bin/python bench/bench_app_load.py [--rows 100000] [--rate 40] [--repeat 3] [--json PATH]
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
REPEAT = 3
TARGET_MAX_MS = 200.0
COPIES = 3  # each membership written this many times: most rows go (plan truncate_reload)
TWICE = 1_000  # users signed up twice, their polls on the second account (plan delete)
NIGHT_1B = "bench-night-1b"

# The old system's duplicates (untimed set-up): its tables had no natural keys. The memberships
# the churn orphaned were joined again by their users (on the new ids) before they were copied:
# deduplicate reloads a table only when its survivors keep its foreign keys.
DUPLICATES = (
    "UPDATE public.team_memberships m SET team_id = s.new_id FROM bench.slots s WHERE m.team_id = s.old_id",
    "ALTER TABLE public.team_memberships DROP CONSTRAINT team_memberships_natural_key",
    f"INSERT INTO public.team_memberships SELECT m.* FROM public.team_memberships m, generate_series(2, {COPIES})",
    "ALTER TABLE public.users DROP CONSTRAINT users_natural_key",
    f"""INSERT INTO public.users (id, email) OVERRIDING SYSTEM VALUE
        SELECT (SELECT max(id) FROM public.users) + id, email FROM public.users WHERE id <= {TWICE} ORDER BY id""",
    "SELECT setval(pg_get_serial_sequence('public.users', 'id'), (SELECT max(id) FROM public.users))",
    f"""UPDATE public.polls p SET created_by = d.id
        FROM public.users d JOIN public.users o ON o.email = d.email AND o.id <= {TWICE}
        WHERE d.id > o.id AND p.created_by = o.id""",
)


class Bench(BenchDatabase):
    def __init__(self, uri: str, rows: int):
        super().__init__(uri)
        self.rows = rows
        self.template = f"{database_name(uri)}_churned"

    def prepare(self) -> dict:
        drop_database(self.uri, self.template)
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        uri = with_database(self.uri, self.template)
        facts = churn.prepare(uri, self.rows)
        with psycopg.connect(uri, autocommit=True) as conn:
            for statement in DUPLICATES:
                conn.execute(statement)
            facts["orphans"] -= facts["rows_by_table"]["team_memberships"] // churn.ORPHAN_EVERY
            expect(churn.orphan_count(conn) == facts["orphans"], "orphaned memberships left after they joined again")
            facts["memberships_removed"] = facts["rows_by_table"]["team_memberships"] * (COPIES - 1)
            facts["users_removed"] = TWICE
            facts["accepted"] = accept_growth(conn)
            conn.execute("VACUUM (ANALYZE)")
        return facts

    def close(self) -> None:
        super().close()
        drop_database(self.uri, f"{self.template}_run")
        drop_database(self.uri, self.template)


def accept_growth(conn: psycopg.Connection) -> list[str]:
    """Night 1b: the health check fails on the app's growth since night 1 and asks; a person
    answers "expected" to each (league_import.review), as the README's Decisions describe."""
    from league_import.health import ask_growth, record, run_checks
    from league_import.review import EXPECTED, decide, pending
    from league_import.runs import finish_run, start_run

    start_run(conn, NIGHT_1B, False, "league_import")
    checks = run_checks(conn, NIGHT_1B)
    ask_growth(conn, NIGHT_1B, checks)
    record(conn, NIGHT_1B, checks)
    finish_run(conn, NIGHT_1B, "failed", "health_check: the app's growth since night 1")
    asked = [item for item in pending(conn) if item.kind == "growth"]
    for item in asked:
        decide(conn, item.id, EXPECTED, by="bench set-up", via="cli")
    return [item.evidence["table"] for item in asked]


def measure(bench: Bench, args: argparse.Namespace) -> dict:
    facts = bench.prepare()
    print(
        f"  set-up: {facts['rows']:,} user rows, {facts['orphans']:,} orphaned by the churn, "
        f"{facts['memberships_removed']:,} duplicate memberships, {facts['users_removed']:,} users twice; "
        f"growth accepted for {', '.join(facts['accepted'])}; {facts['prepare_s']:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    runs = []
    for rep in range(args.repeat):
        last = one_night(bench, facts, args)
        runs.append(last)
        print(
            f"  run {rep + 1}/{args.repeat}: night {last['run_s']:.1f} s, app max {last['app']['max_ms']:.0f} ms,"
            f" {len(last['lock_waits'])} lock waits seen, health {last['health']['status']}",
            file=sys.stderr,
            flush=True,
        )
    worst = max(runs, key=lambda r: r["app"]["max_ms"])
    return {
        **{k: v for k, v in facts.items() if k != "prepare_s"},
        **worst,
        "runs": [
            {"run_s": r["run_s"], "max_ms": r["app"]["max_ms"], "failed": r["app"]["failed"],
             "max_ms_dedup": r["by_phase"]["deduplicate"]["max_ms"],
             "max_ms_outside_dedup": max(x["max_ms"] for name, x in r["by_phase"].items() if name != "deduplicate"),
             "lock_waits": len(r["lock_waits"]), "health": r["health"]["status"]}
            for r in runs
        ],
    }  # fmt: skip


def one_night(bench: Bench, facts: dict, args: argparse.Namespace) -> dict:
    """The app on its own connections before, during and after night 2, on a copy of the state."""
    uri = clone_database(bench.uri, bench.template, f"{bench.template}_run")
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    app = App(uri, rate=args.rate, users=(1, facts["users"])).start()  # not the second accounts deduplicate removes
    time.sleep(SETTLE)
    result = in_child(night, uri, churn.NIGHT_2, str(churn.DEMO_DATA))
    time.sleep(SETTLE)
    seen = app.stop()
    tasks = result["tasks"]
    repair = tasks["restore_mapping"]["report"]
    expect(repair["orphans"] == facts["orphans"], f"restore_mapping found {repair['orphans']} of {facts['orphans']}")
    dedup = tasks["deduplicate"]["report"]["tables"]
    plans = {t: (dedup[t]["plan"], dedup[t]["duplicates"]) for t in ("team_memberships", "users")}
    expect(
        plans == {
            "team_memberships": ("truncate_reload", facts["memberships_removed"]),
            "users": ("delete", facts["users_removed"]),
        },
        f"deduplicate: {plans}",
    )  # fmt: skip
    with psycopg.connect(uri) as conn:
        wrong = churn.misplaced(conn, facts["teams"], facts["rows_by_table"])
        left = churn.orphan_count(conn)
        on_twice = conn.execute("SELECT count(*) FROM public.polls WHERE created_by > %s", (facts["users"],)).fetchone()
    expect(not any(wrong.values()) and left == 0, f"after the run: {wrong}, {left} orphans")
    expect(on_twice[0] == 0, f"{on_twice[0]} polls still on a removed second account")
    first, last = tasks[TASKS[0]]["started"], tasks[TASKS[-1]]["ended"]
    phases = {"before the run": (0.0, first), **{t: (tasks[t]["started"], tasks[t]["ended"]) for t in TASKS}}
    phases["after the run"] = (last, float("inf"))
    return {
        "rate": args.rate,
        "run_s": last - first,
        "plans": plans,
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
        f"and after night 2 ({r['run_s']:.1f} s): deduplicating team_memberships ({r['plans']['team_memberships'][0]},"
        f" {r['plans']['team_memberships'][1]:,} removed) and users ({r['plans']['users'][0]},"
        f" {r['plans']['users'][1]:,} removed), repairing {r['orphans']:,} of {r['rows']:,} user rows"
    )
    print()
    print(f"{len(r['runs'])} runs, each on a copy of the same state; the table is the run with the worst wait")
    for i, x in enumerate(r["runs"], 1):
        print(
            f"  run {i}: night {x['run_s']:.1f} s, worst app operation {x['max_ms_dedup']:.0f} ms during deduplicate, "
            f"{x['max_ms_outside_dedup']:.0f} ms outside it, {x['failed']} failed, {x['lock_waits']} lock waits seen, "
            f"health check {x['health']}"
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
    waits = r["lock_waits"]
    print(f"app sessions seen waiting on a lock (polled every 20 ms): {len(waits)}")
    for w in waits[:5]:
        print(f"  at {w[0]:.2f} s: {w[2]} on '{w[3]}', blocked by {w[4]} ({w[5]})")


def targets(r: dict, _peak: float) -> list[dict]:
    """Over every run: no failed operation; no wait of 200 ms or more outside deduplicate; the
    worst wait during deduplicate reported (it locks a table while it rewrites it, on the one
    night a key is missing: the app's writes to that table wait for it)."""
    runs = r["runs"]
    failed = sum(x["failed"] for x in runs)
    outside = max(x["max_ms_outside_dedup"] for x in runs)
    during = max(x["max_ms_dedup"] for x in runs)
    healthy = sum(x["health"] != "error" for x in runs)
    return [
        {
            "target": f"no failed app operation, over {len(runs)} runs",
            "value": f"{failed}",
            "status": "PASS" if not failed else "MISS",
        },
        {
            "target": f"no app operation waits {TARGET_MAX_MS:g} ms or more outside deduplicate, over {len(runs)} runs",
            "value": f"worst {outside:.0f} ms",
            "status": "PASS" if outside < TARGET_MAX_MS else "MISS",
        },
        {
            "target": f"the worst app operation during deduplicate (a table locked while rewritten), {len(runs)} runs",
            "value": f"{during:.0f} ms",
            "status": "REPORTED",
        },
        {
            "target": "the night deduplicates (both plans) and passes its health check, every run",
            "value": f"{healthy} of {len(runs)}",
            "status": "PASS" if healthy == len(runs) else "MISS",
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive, default=ROWS, help=f"user rows in all (default {ROWS:,})")
    parser.add_argument("--rate", type=float, default=RATE, help=f"app operations per second (default {RATE:g})")
    parser.add_argument("--repeat", type=positive, default=REPEAT, help=f"nights measured (default {REPEAT})")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    args.profile = False
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
