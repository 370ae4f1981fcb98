"""Benchmark what OpenLineage costs a night (issue 24): a run with no lineage settings takes no
longer than one with OpenLineage turned off.

The provider (apache-airflow-providers-openlineage) is installed with the pipeline. Timed: whole
`airflow dags test league_import` runs, as an operator starts them (a process each, Airflow's
start included), on the bundled season: an unchanged re-import, after a first night untimed, in
a private AIRFLOW_HOME. The modes alternate, their order rotated in each repetition:
- no settings: the default (no transport, no OPENLINEAGE_* variable);
- floor: AIRFLOW__OPENLINEAGE__DISABLED=true, the provider's own switch;
- lineage on: the file transport writing every event (reported, no target).
Each run's wall time, and the CPU time of its processes (user + system of `airflow dags test`
and every process under it, from getrusage): on a machine other work shares, the CPU time is the
steadier measure of what the run itself does, and the target's. Then the operators' lineage
methods alone (league_import.lineage.of_step on each task's report of the last run, and the
events' JSON), against the run.
Target: no settings / floor <= 1.05 in CPU time (medians); the wall time is reported beside it.
Run: .venv/bin/python bench/bench_lineage.py [--repeat 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BenchDatabase, database_name, expect, positive, run, timed
from pipeline import TASKS

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "include" / "demo_data"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
TARGET_RATIO = 1.05
MODES = ("no settings", "floor", "lineage on")
METHOD_CALLS = 20  # lineage built this many times per task; the median is reported


class Bench(BenchDatabase):
    def __init__(self, uri: str):
        super().__init__(uri)
        self.home = Path(tempfile.mkdtemp(prefix="bench-lineage-"))
        self.events = self.home / "events.jsonl"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "OPENLINEAGE", "AIRFLOW_HOME"))}
        self.env = {
            **base,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_LEAGUE_DB": uri,
            "LEAGUE_IMPORT_REPORT_DIR": str(self.home / "reports"),
        }
        subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, env=self.env)

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.home, ignore_errors=True)

    def night(self, mode: str) -> tuple[float, float]:
        """One run in `mode`: its wall seconds and the CPU seconds of its processes."""
        env = dict(self.env)
        if mode == "floor":
            env["AIRFLOW__OPENLINEAGE__DISABLED"] = "true"
        elif mode == "lineage on":
            transport = {"type": "file", "log_file_path": str(self.events), "append": True}
            env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(transport)
        conf = json.dumps({"source_dir": str(DEMO)})
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds, done = timed(
            lambda: subprocess.run(
                [AIRFLOW, "dags", "test", "league_import", "-c", conf], capture_output=True, text=True, env=env
            )
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        expect(done.returncode == 0, f"{mode}: the run failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
        return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def methods(bench: Bench) -> dict[str, float]:
    """Seconds to build each task's lineage from its report of the last run, and its JSON."""
    from openlineage.client.serde import Serde

    from league_import import lineage, target

    with bench.connect() as conn:
        report = conn.execute("SELECT report FROM etl.runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]
    place = lineage.Place("postgres://bench:5432", database_name(bench.uri))
    chosen = target.configured()

    def build(task: str) -> list[str]:
        found = lineage.of_step(task, report[task], place, chosen, dry_run=False)
        return [Serde.to_json(x) for x in (*found.inputs, *found.outputs, *found.run_facets.values())]

    out = {}
    for task in TASKS:
        out[task] = statistics.median(timed(lambda t=task: build(t))[0] for _ in range(METHOD_CALLS))
    return out


def measure(bench: Bench, args: argparse.Namespace) -> dict:
    bench.night("floor")  # night 1, untimed: the same re-import is timed in every mode
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for rep in range(args.repeat):
        for mode in MODES[rep % 3 :] + MODES[: rep % 3]:  # each mode in each place of the order
            wall, used = bench.night(mode)
            samples[mode].append(wall)
            cpu[mode].append(used)
        line = ", ".join(f"{mode} {samples[mode][-1]:.2f}s ({cpu[mode][-1]:.2f}s CPU)" for mode in MODES)
        print(f"  run {rep + 1}/{args.repeat}: {line}", file=sys.stderr, flush=True)
    events = [json.loads(x) for x in bench.events.read_text().splitlines()]
    expect(len(events) >= len(TASKS) * 2 * args.repeat, f"lineage on wrote {len(events)} events")
    medians = {mode: statistics.median(v) for mode, v in samples.items()}
    cpu_medians = {mode: statistics.median(v) for mode, v in cpu.items()}
    return {
        "medians_s": medians,
        "cpu_medians_s": cpu_medians,
        "no_settings_over_floor": cpu_medians["no settings"] / cpu_medians["floor"],
        "lineage_on_over_floor": cpu_medians["lineage on"] / cpu_medians["floor"],
        "wall_no_settings_over_floor": medians["no settings"] / medians["floor"],
        "wall_lineage_on_over_floor": medians["lineage on"] / medians["floor"],
        "events_per_night": len(events) // args.repeat,
        "methods_s": methods(bench),
        "samples": samples,
        "cpu_samples": cpu,
    }


def print_table(r: dict) -> None:
    print("`airflow dags test league_import`, bundled season, unchanged re-import (medians; /floor)")
    print(f"  {'':<30} {'CPU s':>7}  {'/floor':>6}  {'wall s':>7}  {'/floor':>6}")
    labels = {
        "no settings": "no settings (default)",
        "floor": "floor: OPENLINEAGE disabled",
        "lineage on": "lineage on (file transport)",
    }
    for mode in MODES:
        used, wall = r["cpu_medians_s"][mode], r["medians_s"][mode]
        print(
            f"  {labels[mode]:<30} {used:7.2f}  {used / r['cpu_medians_s']['floor']:5.3f}x"
            f"  {wall:7.2f}  {wall / r['medians_s']['floor']:5.3f}x"
        )
    for mode in MODES:
        runs = ", ".join(f"{w:.2f}/{c:.2f}" for w, c in zip(r["samples"][mode], r["cpu_samples"][mode]))
        print(f"  runs, wall/CPU s, {mode}: {runs}")
    print(f"  events written per night with lineage on: {r['events_per_night']}")
    print()
    print(f"the operators' lineage methods alone (median of {METHOD_CALLS}), built from the run's reports:")
    for task, seconds in r["methods_s"].items():
        print(f"  {task:<22} {seconds * 1000:7.2f} ms")
    total = sum(r["methods_s"].values())
    share = total / r["cpu_medians_s"]["floor"]
    print(f"  {'all six tasks':<22} {total * 1000:7.2f} ms = {share:.4%} of a night's CPU time")


def targets(r: dict) -> list[dict]:
    ratio = r["no_settings_over_floor"]
    return [
        {
            "target": f"a night with no lineage settings <= {TARGET_RATIO}x one with OpenLineage disabled (CPU time)",
            "value": f"{ratio:.3f}x (wall {r['wall_no_settings_over_floor']:.3f}x)",
            "status": "PASS" if ratio <= TARGET_RATIO else "MISS",
        },
        {
            "target": "a night with the file transport on, against the floor (CPU time; reported, no target)",
            "value": f"{r['lineage_on_over_floor']:.3f}x (wall {r['wall_lineage_on_over_floor']:.3f}x)",
            "status": "REPORTED",
        },
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=positive, default=3, help="runs of each mode; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return run(
        args,
        "bench_lineage",
        make_bench=Bench,
        measure=lambda bench: measure(bench, args),
        print_table=print_table,
        profile=lambda bench: {},
        print_profile=lambda runs: None,
        targets=lambda result, _peak: targets(result),
    )


if __name__ == "__main__":
    sys.exit(main())
