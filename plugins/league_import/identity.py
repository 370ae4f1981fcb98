"""Canonical team identity from team names and series labels as written in league files.

The same team is spelled differently across files and seasons ("Butterfield - 15 SW" in
"Chicago 15 SW", "Butterfield 15 SW" in "Series 15 SW"), and look-alike names are different
teams ("Wilmette PD I 11", "Wilmette PD II 11"). Every spelling of one team must give the same
(series_key, team_key); a name that parses to nothing is an error, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WS = re.compile(r"\s+")
_SERIES_PREFIX = re.compile(r"^(series|chicago|division)(?:\s+|$)", re.IGNORECASE)
_GLUED_PAREN = re.compile(r"(?<=\S)\((?=\d+\))")
_DASH_TAIL = re.compile(r"^(?P<head>.*?\S)\s*-\s*(?P<tail>[^-]+)$")
_LEADING_DASHES = re.compile(r"^[\s-]+")
_MARKER = re.compile(r"^(?:\((?P<num>\d+)\)|(?P<roman>I{1,3}|IV)|(?P<letter>[A-Z]))$")
_LETTER = re.compile(r"[^\W\d_]")  # a club name has at least one letter


class TeamNameError(ValueError):
    """A team name or series label that cannot be turned into an identity."""


def clean(text: str) -> str:
    """Strip and collapse whitespace runs, so double spaces never make a new team."""
    return _WS.sub(" ", text).strip()


def _key_or_empty(label: str) -> str:
    """Series key without raising, for testing whether a text fragment names a series."""
    return clean(_SERIES_PREFIX.sub("", clean(label), count=1)).upper()


def series_key(label: str) -> str:
    """Canonical series key: "Chicago 15 SW", "Series 15 SW", "Division 15 SW" -> "15 SW"."""
    key = _key_or_empty(label or "")
    if not key:
        raise TeamNameError(f"series label {label!r} names no series")
    return key


def _names_series(text: str, key: str) -> bool:
    """Whether text is the series label again, in any form.

    "Chicago" only counts as a series prefix in the documented "Chicago N SW" form: in
    "Midtown - Chicago 10" it is part of the club (Midtown's Chicago site), not a label.
    """
    prefix = _SERIES_PREFIX.match(clean(text))
    if prefix and prefix.group(1).lower() == "chicago" and not key.endswith(" SW"):
        return False
    return _key_or_empty(text) == key


def _is_label_only(name: str, key: str) -> bool:
    """Whether a name is nothing but a series label (a BYE placeholder such as " - 9 SW").

    A bare name equal to the key counts only for numbered or single-letter series: in
    "Series Legends" the team really is called "Legends".
    """
    rest = _LEADING_DASHES.sub("", clean(name))
    if not rest:
        return True
    if not _names_series(rest, key):
        return False
    return bool(_SERIES_PREFIX.match(rest)) or any(c.isdigit() for c in key) or len(key) == 1


def _drop_series_tokens(tokens: list[str], key: str) -> list[str]:
    """Rule 2: drop trailing tokens repeating the series ("99", "15 SW", "S2B"), keeping one.

    The compact NSTF form is matched as written ("S2B", "SSN"), so a word like "Sc" ending a
    club name in Series C is not taken for it.
    """
    ktoks = key.split(" ")
    while True:
        n = len(ktoks)
        if len(tokens) > n and [t.upper() for t in tokens[-n:]] == ktoks:
            tokens = tokens[:-n]
        elif len(tokens) > 1 and tokens[-1] == "S" + key:
            tokens = tokens[:-1]
        else:
            return tokens


@dataclass(frozen=True)
class TeamIdentity:
    """One team within one series; equal (series_key, team_key) means the same team."""

    club: str
    sub_team: str
    series_key: str
    team_key: str
    display: str


def parse_team(name: str, series_label: str) -> TeamIdentity:
    """Turn a (team name, series label) pair as written into a canonical identity."""
    key = series_key(series_label)

    def fail(reason: str) -> TeamNameError:
        return TeamNameError(f"team name {name!r} in series {series_label!r}: {reason}")

    text = _GLUED_PAREN.sub(" (", clean(name or ""))
    if not text:
        raise fail("empty team name")
    if _is_label_only(text, key):
        raise fail("only a series label, not a team")

    dash = _DASH_TAIL.match(text)
    if dash and _names_series(dash.group("tail"), key):
        text = dash.group("head")

    tokens = _drop_series_tokens(text.split(" "), key)
    sub_team = ""
    marker = _MARKER.match(tokens[-1])
    if marker and not (marker.group("letter") and tokens[-1] == key):
        sub_team = marker.group("num") or tokens[-1]
        tokens = _drop_series_tokens(tokens[:-1], key) if len(tokens) > 1 else []

    club = " ".join(tokens).strip(" -")
    if not _LETTER.search(club):
        raise fail("no club name left after removing series and sub-team parts")
    team_key = club.casefold() + (f" #{sub_team.casefold()}" if sub_team else "")
    display = f"{club} {sub_team}" if sub_team else club
    return TeamIdentity(club, sub_team, key, team_key, display)


def is_bye(team_name: str, location: str | None, series_label: str) -> bool:
    """Whether a schedule side is a BYE placeholder rather than a team."""
    if location is not None and clean(location).casefold() == "bye":
        return True
    return _is_label_only(team_name or "", series_key(series_label))
