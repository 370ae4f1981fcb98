"""Benchmark team identity: parsing 100,000 distinct team names as the read path does (docs/benchmarks.md).

`sources.read_league` parses each distinct (name, series label) of a league once, with
`identity.parse_team` unwrapped from its module cache; this times that call on the names of
`bench/synth.py`'s league folders, and again on a spelling variant of each name (case, dash,
spacing, dots, apostrophes, diacritics: the variants `identity` promises to ignore), checking
that every variant gives its name's key. The floor, in the same run: one whitespace split and a
casefold per name, the least any normalization of a name costs. No database is involved.

A measurement, not a test: it exits non-zero only on errors (a variant with another key is one).
Run: .venv/bin/python bench/bench_identity.py [--teams 100000] [--repeat 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import expect, finish, peak_rss_mib, positive  # noqa: E402
from synth import TEAMS_PER_LEAGUE, league  # noqa: E402

from league_import.identity import parse_label, parse_team  # noqa: E402

PARSE = parse_team.__wrapped__  # as sources.read_league calls it: its own cache per league
REPEAT = 3


def _accent(text: str) -> str:
    """The first vowel with a combining acute accent, as a keyboard might add it."""
    for i, c in enumerate(text):
        if c in "aeiou":
            return text[:i] + unicodedata.normalize("NFC", c + "\u0301") + text[i + 1 :]
    return text


def _glue(separator: str):
    """The first two words of the club joined by `separator` ("Lake Forest" -> "LakeForest",
    "Lake-Forest", "Lake.Forest"), where both are words of the club (letters, no sub-team)."""

    def variant(text: str) -> str:
        words = text.split(" ")
        if len(words) > 2 and words[0].isalpha() and words[1].isalpha() and words[1] not in ("I", "II", "III"):
            return separator.join(words[:2]) + " " + " ".join(words[2:])
        return text

    return variant


# Spelling variants of one team that identity must not tell apart (DOMAIN.md, issue 9).
VARIANTS = (
    str.upper,
    str.lower,
    lambda s: s.replace(" - ", " \u2013 "),  # en dash
    lambda s: s.replace(" ", "  "),
    _glue(""),
    _glue("-"),
    _glue("."),
    _glue("/"),
    _accent,
)


def names(teams: int) -> list[tuple[str, str]]:
    """`teams` distinct (team name, series label) pairs of synth's league folders, in file order."""
    pairs: dict[tuple[str, str], None] = {}  # two leagues may both have a team of one name
    i = 0
    while len(pairs) < teams:
        i += 1
        stats, _ = league(f"BENCH_{i:02d}", TEAMS_PER_LEAGUE, 14)
        pairs.update(((r["team"], r["series"]), None) for r in stats)
    return list(pairs)[:teams]


def respelt(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    rng = random.Random(9)
    return [(rng.choice(VARIANTS)(name), label) for name, label in pairs]


def floor(pairs: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    for name, label in pairs:
        " ".join(name.split()).casefold()
        " ".join(label.split()).casefold()
    return time.perf_counter() - start


def parse(pairs: list[tuple[str, str]]) -> tuple[float, list]:
    parse_label.cache_clear()
    start = time.perf_counter()
    found = [PARSE(name, label) for name, label in pairs]
    return time.perf_counter() - start, found


def measure(teams: int, repeat: int) -> dict:
    pairs = names(teams)
    variants = respelt(pairs)
    samples: dict[str, list[float]] = {"floor": [], "names": [], "variants": []}
    for rep in range(repeat):
        samples["floor"].append(floor(pairs))
        seconds, keys = parse(pairs)
        samples["names"].append(seconds)
        seconds, again = parse(variants)
        samples["variants"].append(seconds)
        differ = sum((a.series_key, a.team_key) != (b.series_key, b.team_key) for a, b in zip(keys, again))
        expect(differ == 0, f"{differ} spelling variants gave another key")
        print(
            f"  run {rep + 1}/{repeat}: floor {samples['floor'][-1]:.3f}s, names {samples['names'][-1]:.3f}s, "
            f"variants {samples['variants'][-1]:.3f}s",
            file=sys.stderr,
            flush=True,
        )
    medians = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "teams": teams,
        "distinct_keys": len({(k.series_key, k.team_key) for k in keys}),
        **{f"{k}_s": v for k, v in medians.items()},
        "names_over_floor": medians["names"] / medians["floor"],
        "samples": samples,
    }


def print_table(r: dict) -> None:
    print(f"{r['teams']:,} distinct (name, series label) pairs, {r['distinct_keys']:,} distinct (series, team) keys")
    print(f"floor: a whitespace split and a casefold of each name and label: {r['floor_s']:.3f} s")
    print()
    print("              parse (s)  µs per name  /floor")
    for key, label in (("names", "as written"), ("variants", "re-spelt")):
        seconds = r[f"{key}_s"]
        per = seconds / r["teams"] * 1e6
        print(f"{label:<12} {seconds:10.3f} {per:12.1f} {seconds / r['floor_s']:6.1f}x")
    print("every re-spelt name gave its name's key")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=positive, default=100_000, help="distinct team names (default 100,000)")
    parser.add_argument("--repeat", type=positive, default=REPEAT, help="runs of each; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    started, load_before = time.perf_counter(), os.getloadavg()
    print(f"no database; {os.cpu_count()} cores; Python {platform.python_version()}; median of {args.repeat} run(s)")
    result = measure(args.teams, args.repeat)
    print()
    print_table(result)
    print()
    peak = peak_rss_mib()
    print(f"peak RSS of the benchmark process: {peak:.0f} MiB")
    per = result["names_s"] / result["teams"] * 1e6
    check = {
        "target": f"parse {result['teams']:,} team names (measured and reported; no target)",
        "value": f"{result['names_s']:.2f} s, {per:.1f} µs per name, {result['names_over_floor']:.1f}x",
        "status": "REPORTED",
    }
    document = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "repeat": args.repeat,
        "result": result,
        "peak_rss_mib": peak,
    }
    return finish(args, check, document, started, load_before)


if __name__ == "__main__":
    sys.exit(main())
