"""Benchmark the adoption of a populated app database (CONTRACT section 7): the league app's own
schema, filled the way its older importer filled it (one team per club and series, names as the
files spell them, every match and standings row), is adopted by the first night as the DAG runs
it (validate_constraints + upsert_teams: every existing team, match and standings row becomes the
pipeline's under its id), against the upsert's floor (bench_upsert.py) measured in the same run
on the same league folders (docs/benchmarks.md).

A measurement, not a test: it exits non-zero only on errors and prints PASS/MISS for the target.
Run: .venv/bin/python bench/bench_adoption.py [--teams 10000] [--repeat 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from bench_upsert import Bench as UpsertBench
from common import BenchDatabase, clone_database, database_name, drop_database, expect, positive, run, with_database
from pipeline import in_child, night
from psycopg import sql
from synth import write_leagues

from league_import import app_demo, target, targetplan

TEAMS = 100_000
REPEAT = 3
TARGET_FIRST = 2.0  # the first import's target: validate + upsert within 2x of the floor
LOAD = ("validate_constraints", "upsert_teams")


class Bench(BenchDatabase):
    """The server; the old importer's state is built once in a template database (the app's
    schema, filled, `target apply` made), each measurement runs on a byte-identical copy."""

    def __init__(self, uri: str, source: Path):
        super().__init__(uri)
        self.source = source
        self.template = f"{database_name(uri)}_app"
        self.upsert = UpsertBench(uri, source)

    def prepare(self) -> dict:
        started = time.perf_counter()
        drop_database(self.uri, self.template)
        self.admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        uri = with_database(self.uri, self.template)
        app_demo.load_schema(uri)
        mapping = target.load(app_demo.APP_MAPPING)
        with psycopg.connect(uri) as conn, target.active(mapping):
            filled = app_demo.fill_like_old_importer(conn, self.source)
            targetplan.apply(conn, mapping, by="bench")
            teams = conn.execute("SELECT count(*) FROM teams").fetchone()[0]
            matches = conn.execute("SELECT count(*) FROM schedule").fetchone()[0]
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")  # a database the app has been using: statistics, hint bits
        return {"existing_teams": teams, "existing_matches": matches, "dropped": filled["teams_dropped"],
                "prepare_s": time.perf_counter() - started}  # fmt: skip

    def ours(self) -> dict:
        """The first night on a copy, as the DAG runs it on the app's database; checked."""
        uri = clone_database(self.uri, self.template, f"{self.template}_run")
        with psycopg.connect(uri, autocommit=True) as conn:
            before = dict(conn.execute("SELECT id, team_name FROM teams").fetchall())
            conn.execute("CHECKPOINT")
        os.environ[target.TARGET_ENV] = str(app_demo.APP_MAPPING)  # the child process's target
        try:
            result = in_child(night, uri, "bench-adopt-1", str(self.source))
        finally:
            os.environ.pop(target.TARGET_ENV)
        with psycopg.connect(uri) as conn:
            after = dict(conn.execute("SELECT id, team_name FROM teams").fetchall())
        report = result["tasks"]["upsert_teams"]["report"]
        expect({i: after.get(i) for i in before} == before, "an existing team lost its id or changed its name")
        expect(
            report["adopted"]["teams"] == len(before), f"adopted {report['adopted']['teams']} of {len(before)} teams"
        )
        health = result["tasks"]["health_check"]["report"]["status"]
        expect(health != "error", f"the night's health check: {health}")
        return result

    def close(self) -> None:
        super().close()
        drop_database(self.uri, f"{self.template}_run")
        drop_database(self.uri, self.template)


def measure(bench: Bench, args: argparse.Namespace) -> dict:
    source = Path(tempfile.mkdtemp(prefix="bench-leagues-"))
    atexit.register(shutil.rmtree, source, ignore_errors=True)
    facts = write_leagues(source, args.teams)
    bench.source = bench.upsert.source = source
    setup = bench.prepare()
    print(
        f"  set-up: {facts['teams']:,} teams in the files, {setup['existing_teams']:,} teams and "
        f"{setup['existing_matches']:,} matches in the app's database ({setup['dropped']:,} sub-teams its old "
        f"importer dropped); {setup['prepare_s']:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    samples: dict[str, list] = {"floor": [], "adoption": []}
    adopted = {}
    for rep in range(args.repeat):
        samples["floor"].append(bench.upsert.floor(facts["teams"]))
        result = bench.ours()
        samples["adoption"].append({t: result["tasks"][t]["seconds"] for t in LOAD})
        adopted = result["tasks"]["upsert_teams"]["report"]["adopted"]
        last = samples["adoption"][-1]
        print(
            f"  run {rep + 1}/{args.repeat}: floor {samples['floor'][-1]:.2f}s; adoption: validate "
            f"{last['validate_constraints']:.2f}s, upsert {last['upsert_teams']:.2f}s",
            file=sys.stderr,
            flush=True,
        )
    floor = statistics.median(samples["floor"])
    load = statistics.median(sum(s.values()) for s in samples["adoption"])
    return {
        "teams": facts["teams"],
        "schedule_rows": facts["schedule_rows"],
        **setup,
        "adopted": adopted,
        "floor_s": floor,
        "tasks": {t: statistics.median(s[t] for s in samples["adoption"]) for t in LOAD},
        "load_s": load,
        "load_over_floor": load / floor,
        "samples": samples,
    }


def print_table(r: dict) -> None:
    print(
        f"{r['teams']:,} teams and {r['schedule_rows']:,} schedule rows in the files; the app's database holds "
        f"{r['existing_teams']:,} teams and {r['existing_matches']:,} matches of them"
    )
    print(f"floor (bench_upsert.py's, on the same files): {r['floor_s']:.3f} s")
    print(
        f"adoption, the first night: validate {r['tasks']['validate_constraints']:.3f} s + upsert "
        f"{r['tasks']['upsert_teams']:.3f} s = {r['load_s']:.3f} s, {r['load_over_floor']:.2f}x of the floor"
    )
    print("adopted: " + ", ".join(f"{k} {v:,}" for k, v in r["adopted"].items()))


def targets(r: dict, _peak: float) -> list[dict]:
    ratio = r["load_over_floor"]
    return [
        {
            "target": f"adoption of the app's database at {r['teams']:,} teams (validate + upsert), within "
            f"{TARGET_FIRST:g}x of the upsert's floor (the first import's target)",
            "value": f"{ratio:.2f}x",
            "status": "PASS" if ratio <= TARGET_FIRST else "MISS",
        }
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=positive, default=TEAMS, help=f"teams in all (default {TEAMS:,})")
    parser.add_argument("--repeat", type=positive, default=REPEAT, help="runs of each; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    args.profile = False
    return run(
        args,
        "bench_adoption",
        make_bench=lambda uri: Bench(uri, Path()),
        measure=lambda bench: measure(bench, args),
        print_table=print_table,
        profile=lambda bench: {},
        print_profile=lambda runs: None,
        targets=targets,
    )


if __name__ == "__main__":
    sys.exit(main())
