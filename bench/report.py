"""Run every benchmark and write docs/benchmarks.md from what they print (`make bench`).

The page quotes each benchmark's output as it was printed, with the date, the machine and the
server's settings; nothing in it is typed by hand. Each benchmark also leaves its --json file
(every sample) in the results folder.
Run: .venv/bin/python bench/report.py [--quick] [--results DIR] [--from DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH.parent / "docs" / "benchmarks.md"

# (name, script, full-size arguments, quick arguments, what it measures: the page's prose)
BENCHES = (
    (
        "upsert",
        "bench_upsert.py",
        ["--profile"],
        ["--teams", "10000", "--repeat", "1"],
        """The team load as the DAG runs it, on league folders written to disk by `bench/synth.py`:
10 leagues of 10,000 teams (about 10 per series and 9 per club, names as the scraper writes
them: "Hinsdale PC II - 9 SW", "Winnetka 12", a few BYE rows), a stats record per team and 9
schedule rows per team (each team plays 18 matches, home and away, as in the bundled season),
every file under `sources.MAX_FILE_BYTES`. Night 1 runs every task of the DAG on an empty
database (`bench/pipeline.py`: the operators' own calls, each task on a connection of its own,
in a fresh process as a task runs); after `VACUUM (ANALYZE)` and a checkpoint, night 2 runs
them again on the same files (the unchanged re-import). Timed: `steps.validate` (read, check
and stage every file, check the constraints) and `steps.upsert`, with the WAL each wrote
(`pg_current_wal_lsn()` before and after) and the peak memory of the process while it ran (a
process that has imported the operators, Airflow's SDK and the Postgres hook, as a task's has).

Floor, measured in the same run on its own empty database (keys and foreign keys present, the
leagues and series seeded untimed): every file read with `json.load`, every row the step writes
(teams, matches, standings) sent by COPY to unlogged tables and inserted with one `INSERT` per
table, the foreign keys dropped and added again around the load as the step does, the tables
analyzed, and the commit. The targets are on what a night costs: `validate_constraints` (which
reads and checks every file) plus `upsert_teams`, against that floor.""",
    ),
    (
        "adoption",
        "bench_adoption.py",
        [],
        ["--teams", "10000", "--repeat", "1"],
        """The first night on the league app's own database (CONTRACT section 7): the app's schema
(`include/targets/league_app.schema.sql`) filled the way its older importer filled it from the
same league folders as `bench_upsert` (one team per club and series, names as the files spell
them, every match and standings row), `target apply` run, then `validate_constraints` and
`upsert_teams` as the DAG runs them: every existing team, match and standings row adopted under
its id, the refused sub-teams created. Against the upsert's floor, measured in the same run on
the same folders.""",
    ),
    (
        "dedup",
        "bench_dedup.py",
        ["--profile"],
        ["--rows", "347011", "--repeat", "1"],
        """The `deduplicate` task (every natural key, as the operator runs it) on the
`practice_times` incident, 3,470,114 rows that are 41 sessions copied about 85,000 times, in the
state the DAG leaves: the bundled season imported by a whole night, `practice_times` with its
foreign keys to `teams` and `leagues` present and valid (only its natural key missing), night 2's
`validate_constraints` run, then each measurement on a byte-identical copy of that database.
Both plans: `truncate_reload` (nothing points at the table: the survivors copied aside, the
removed rows archived, the table truncated and the survivors put back) and `delete` (an empty
table points at it, so it is never truncated: the removed rows archived and deleted). Each
against a floor doing its work, on a copy of the same database: one scan that finds each
session's survivor and `CREATE TABLE AS` of the removed rows; for `delete`, also the one
`DELETE` of those rows (the foreign key pointing at the table in place) and the `UNIQUE` key on
what remains. The `delete` plan against the first floor is reported beside.""",
    ),
    (
        "repair",
        "bench_repair.py",
        ["--profile"],
        ["--rows", "100000", "--repeat", "1"],
        """The `restore_mapping` task on 1,000,000 user rows (practice times 60 %, polls 15 %, captain
messages 15 %, memberships 10 %), 10 % of them orphaned by the old ETL's churn (`bench/churn.py`:
night 1 imports the season; the app writes 10 % of the rows; `demo.replay_old_etl_churn`
re-creates every team under a new id, triggers off; the app writes the other 90 % on the new
ids; night 2 runs `validate_constraints`, `deduplicate`, `backup` and `upsert_teams`). Each
measurement runs on a byte-identical copy of that database, and every row is checked to be on
its own team afterwards.
Floor, on a copy of the same database: one `UPDATE ... FROM` per user table over a ready
old-to-new id map (built untimed), and the commit.""",
    ),
    (
        "app_load",
        "bench_app_load.py",
        [],
        ["--rows", "100000"],
        """What the app sees during a whole run: the simulated app of `bench/app.py` (writers of
polls, captain messages, practice times and memberships, readers of a team's page: the team,
its schedule, its latest messages; 40 operations a second, half reads, on 8 connections of its
own, each operation one transaction, timed from when it was due) runs before, during and after
night 2 of `bench_repair`'s churned state, every task as the DAG runs them, in a process of its
own, three times, each on a copy of the same state. On top of the churn, the old system's
duplicates: every membership three times (deduplicate's `truncate_reload`) and a thousand users
signed up twice, their polls on the second account (its `delete`, the polls moved to the
survivor); the app's growth since night 1 answered "expected" by a person first (a night that
failed on it), so night 2 passes its health check. A watcher polls `pg_stat_activity` every
20 ms for app sessions waiting on a lock. `tests/db/test_app_load.py` is the short form that
runs in `make test`.""",
    ),
    (
        "health",
        "bench_health.py",
        [],
        ["--rows", "200000", "--repeat", "1"],
        """The checks of the `health_check` task (`health.run_checks`, read-only session) on the
bundled season and 3,500,000 user rows (20,000 users, their memberships and polls, the rest
practice sessions spread over every team), after the run's backup.""",
    ),
    (
        "identity",
        "bench_identity.py",
        [],
        ["--teams", "20000", "--repeat", "1"],
        """Team identity as the read path calls it (`identity.parse_team` unwrapped from its cache,
once per distinct name and series label, as `sources.read_league` does) on 100,000 distinct
names of `bench/synth.py`'s leagues, then on a spelling variant of each (upper or lower case,
en dash, doubled spaces, two club words glued or joined by a hyphen, dot or slash, an accent),
checking that every variant gives its name's key. No database. The issue sets no target: the
figure is reported. Floor, same run: a whitespace split and a casefold of each name and label.""",
    ),
    (
        "lineage",
        "bench_lineage.py",
        [],
        ["--repeat", "1"],
        """What OpenLineage costs a night: whole `airflow dags test league_import` runs (a process
each, Airflow's start included) on the bundled season, an unchanged re-import after a first night
untimed, with the OpenLineage provider installed and no lineage settings (the default), against
the floor measured in the same run, alternating with it (the order rotated each repetition): the
same night with `AIRFLOW__OPENLINEAGE__DISABLED=true`, the provider's own switch. The target is on
the CPU time of the run's processes (user + system, from getrusage), steadier than the wall time
on a machine other work shares; the wall time is printed beside it. A third mode, the file
transport writing every event, is reported; then the operators' lineage methods alone
(`lineage.of_step` on each task's report of the last run, and the events' JSON) against a night.""",
    ),
)


def run_all(results: Path, quick: bool) -> None:
    results.mkdir(parents=True, exist_ok=True)
    for name, script, full, small, _ in BENCHES:
        args = small if quick else full
        command = [sys.executable, str(BENCH / script), *args, "--json", str(results / f"{name}.json")]
        print(f"== {' '.join(command[1:])}", file=sys.stderr, flush=True)
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=BENCH.parent)
        (results / f"{name}.txt").write_text(done.stdout)
        print(done.stdout, file=sys.stderr, flush=True)
        if done.returncode:
            raise SystemExit(f"{script} failed (exit {done.returncode}); its output is in {results / name}.txt")


def machine(results: list[dict]) -> list[str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "unknown processor",
    )
    mem = next((int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    server = results[0]["server"]
    settings = ", ".join(f"`{k}` {v}" for k, v in server.get("settings", {}).items())
    loads = [r["load_average"]["start"][0] for r in results] + [r["load_average"]["end"][0] for r in results]
    return [
        f"- {os.cpu_count()} cores ({cpu}), {mem / 2**20:.0f} GiB RAM; {platform.system()} {platform.release()}",
        f"- PostgreSQL {server['version']}, {server['source']}; {settings}",
        f"- Python {platform.python_version()}, psycopg {version('psycopg')}, msgspec {version('msgspec')}",
        f"- load average (1 min) at the start and end of each benchmark: {min(loads):.2f} to {max(loads):.2f} "
        "(on 2 cores, anything above about 1 is other work sharing the machine)",
    ]


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def write(results: Path, out: Path, quick: bool) -> None:
    docs = {name: json.loads((results / f"{name}.json").read_text()) for name, *_ in BENCHES}
    printed = {name: (results / f"{name}.txt").read_text().rstrip() for name, *_ in BENCHES}
    when = max(d["finished_at"] for d in docs.values())
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `bench/report.py` from the benchmarks' own output, {when}"
        + (" (the quick sizes of `--quick`, not the targets' sizes)" if quick else "")
        + ". Nothing here is typed by hand: `make bench` runs every benchmark and writes this page again; "
        "how to run one alone is in [bench/README.md](../bench/README.md).",
        "",
        "Every ratio divides by a floor measured in the same run, on the same machine, so a slower or busier "
        "machine moves both. The benchmarks measure; they exit non-zero only on an error (a wrong row count "
        "stops a benchmark rather than report it).",
        "",
        "## Machine",
        "",
        *machine(list(docs.values())),
        "",
        "## Targets",
        "",
        "| benchmark | target | measured | |",
        "| --- | --- | --- | --- |",
    ]
    for name, doc in docs.items():
        for check in doc.get("targets") or [doc["target"]]:
            lines.append(f"| {name} | {check['target']} | {check.get('value', '')} | {check['status']} |")
    for name, script, full, small, prose in BENCHES:
        args = " ".join(small if quick else full)
        lines += [
            "",
            f"## {name}: `bench/{script}`",
            "",
            prose,
            "",
            f"`.venv/bin/python bench/{script}{' ' + args if args else ''}`:",
            "",
            "```",
            printed[name],
            "```",
        ]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the machinery (minutes)")
    parser.add_argument("--results", type=Path, default=None, help="where the --json and output files go")
    parser.add_argument("--from", dest="source", type=Path, default=None, help="write the page from earlier results")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the page (default {OUT.relative_to(BENCH.parent)})")
    args = parser.parse_args(argv)
    results = args.source or args.results or Path(tempfile.mkdtemp(prefix="bench-results-"))
    if args.source is None:
        started = time.perf_counter()
        run_all(results, args.quick)
        print(f"all benchmarks: {time.perf_counter() - started:.0f}s; results in {results}", file=sys.stderr)
    write(results, args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
