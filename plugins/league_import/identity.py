"""Canonical team identity from team names and series labels as written in league files.

A team is (league, series, team). The same team is spelled differently across files and seasons
and different teams look alike, so every spelling of one team must give the same
(series_key, team_key), and a name that parses to nothing is an error, never a guess.

The rules read the structure of the record itself, never a list of clubs or leagues:

- A series label is a prefix and a designator. The designator runs from the first token with a
  digit to the end ("Chicago 15 SW" -> "15 SW", "Division 2B" -> "2B"), or, with no digit, is the
  last word ("Series A" -> "A", "Sunday A" -> "A", "Series Legends" -> "LEGENDS", "SN" -> "SN").
  The prefix (Series, Chicago, Division, Div, Flight, Sunday, or none) is not identity. A label
  that is only a generic series word ("Series", "Flight") names no series.
- A team name is a club, an optional sub-team marker, and the series again, in any of the forms
  seen: the designator ("Butterfield 15 SW"), a dash tail with the label's own prefix or a
  generic one ("Westmoreland A - Series A", "Butterfield - 15 SW"), the compact form ("Tennaqua
  S2B"), or nothing ("Middlefork" in Series A). Sub-teams: roman numerals ("Wilmette PD II"),
  a number in parentheses ("Winnetka B(2)"), a letter after a numbered series ("Winnetka 99 A"),
  or glued to the number ("Hinsdale 1a").
- The club's key ignores case, punctuation, separators (space, hyphen, en dash, dot, apostrophe,
  slash, ampersand...) and diacritics; abbreviations stay as written (no expansion). Roman
  numerals and parenthesised numbers name the same sub-team ("I" is "(1)").

The club's last word is read as a sub-team or series marker when it is a lone roman numeral,
a number, (in a numbered series) a lone letter, or a series word (the label's own prefix, a
generic series word): such clubs cannot be told from their teams.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Identity rules version: a change of any rule below that changes a key bumps it, and the next
# run re-keys existing teams (league_import.history.rekey_teams).
KEY_VERSION = 3  # 3: a roman-numeral sub-team in any case ("ii" is "II")

# Words that introduce a series and name none by themselves. Generic English, not data names.
GENERIC_SERIES_WORDS = frozenset({"series", "division", "div", "flight", "league"})
MAX_NAME_LENGTH = 200  # characters of a team name, series label or location (index entries stay small)

_WS = re.compile(r"\s+")
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")  # hyphen, en dash, em dash, minus -> "-"
_GLUED_PAREN = re.compile(r"(?<=\S)\((?=\d+\))")
_DASH_TAIL = re.compile(r"^(?P<head>.*?\S)\s*-\s*(?P<tail>[^-]+)$")
_LEADING_DASHES = re.compile(r"^[\s-]+")
_ROMAN = {"I": "1", "II": "2", "III": "3", "IV": "4", "V": "5", "VI": "6", "VII": "7", "VIII": "8"}
_PAREN_NUMBER = re.compile(r"^\((\d{1,2})\)$")
_LETTER = re.compile(r"^[A-Za-z]$")
_HAS_LETTER = re.compile(r"[^\W\d_]")  # a club name has at least one letter
_NOT_KEY = re.compile(r"[\W_]+")


class TeamNameError(ValueError):
    """A team name or series label that cannot be turned into an identity."""


def clean(text: str) -> str:
    """One space between words, dashes as "-": spacing and dash style never make a new team."""
    return _WS.sub(" ", _DASHES.sub("-", text)).strip()


def fold(text: str) -> str:
    """The invariant form of a club name: letters and digits only, casefolded, no diacritics."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NOT_KEY.sub("", plain.casefold())


@dataclass(frozen=True)
class SeriesLabel:
    """A series label split into its prefix (not identity) and its designator (the key)."""

    prefix: tuple[str, ...]
    designator: tuple[str, ...]

    @property
    def key(self) -> str:
        return " ".join(self.designator).upper()

    @property
    def compact(self) -> str:
        """The compact form teams carry in some leagues: "2B" -> "S2B", "SN" -> "SSN"."""
        return "S" + "".join(self.designator).upper()


@lru_cache(maxsize=65_536)
def parse_label(label: str) -> SeriesLabel:
    """Split a series label; the one definition of a series label, for files and free text."""
    tokens = clean(label or "").split(" ") if clean(label or "") else []
    digit = next((i for i, t in enumerate(tokens) if any(c.isdigit() for c in t)), None)
    if digit is not None:
        return SeriesLabel(tuple(tokens[:digit]), tuple(tokens[digit:]))
    if not tokens or tokens[-1].casefold() in GENERIC_SERIES_WORDS:
        raise TeamNameError(f"series label {label!r} names no series")
    return SeriesLabel(tuple(tokens[:-1]), (tokens[-1],))


def series_key(label: str) -> str:
    """Canonical series key: "Chicago 15 SW", "Series 15 SW", "Division 15 SW" -> "15 SW"."""
    return parse_label(label).key


def _upper(tokens) -> list[str]:
    return [t.upper() for t in tokens]


def _is_prefix(words: list[str], label: SeriesLabel) -> bool:
    """Whether words introduce a series: the label's own prefix, or a generic series word."""
    if not words:
        return True
    if _upper(words) == _upper(label.prefix):
        return True
    return len(words) == 1 and words[0].casefold() in GENERIC_SERIES_WORDS


def _names_series(text: str, label: SeriesLabel) -> bool:
    """Whether a text fragment is the series again: designator, with an optional prefix."""
    tokens = clean(text).split(" ")
    n = len(label.designator)
    if len(tokens) < n or _upper(tokens[-n:]) != _upper(label.designator):
        return tokens == [label.compact]
    return _is_prefix(tokens[:-n], label)


def _is_label_only(name: str, label: SeriesLabel) -> bool:
    """Whether a name is nothing but a series label (a BYE placeholder such as " - 9 SW").

    A bare word equal to a word-designator counts only when it is one letter: in "Series
    Legends" the team really is called "Legends".
    """
    rest = _LEADING_DASHES.sub("", clean(name))
    if not rest:
        return True
    if not _names_series(rest, label):
        return False
    bare = _upper(clean(rest).split(" ")) == _upper(label.designator)
    wordy = not any(c.isdigit() for c in label.key) and len(label.key) > 1
    return not (bare and wordy)


def _drop_series(tokens: list[str], label: SeriesLabel) -> list[str]:
    """Drop trailing tokens repeating the series ("99", "15 SW", "Series A", "S2B"); a club word
    is kept. The compact form is matched as written ("S2B", "SSN"), so a word such as "Sc"
    ending a club name in Series C is not taken for it."""
    n = len(label.designator)
    while True:
        if len(tokens) > n and _upper(tokens[-n:]) == _upper(label.designator):
            tokens = tokens[:-n]
            for k in range(len(label.prefix), 0, -1):  # the label's prefix before it, or its tail
                if len(tokens) > k and _upper(tokens[-k:]) == _upper(label.prefix[-k:]):
                    tokens = tokens[:-k]
                    break
            else:
                if len(tokens) > 1 and tokens[-1].casefold() in GENERIC_SERIES_WORDS:
                    tokens = tokens[:-1]
        elif len(tokens) > 1 and tokens[-1] == label.compact:
            tokens = tokens[:-1]
        else:
            return tokens


def _sub_team(token: str, label: SeriesLabel) -> str | None:
    """The canonical sub-team a token names, or None: roman numeral or (n) -> n; a letter after a
    numbered series -> the letter; a numbered series' number with a letter ("1a") -> the letter."""
    if token.upper() in _ROMAN:  # "II" and "ii" alike: case never makes a new team
        return _ROMAN[token.upper()]
    paren = _PAREN_NUMBER.match(token)
    if paren:
        return str(int(paren.group(1)))
    numbered = label.key[:1].isdigit()
    if _LETTER.match(token) and numbered:
        return token.upper()
    if numbered and len(label.designator) == 1:
        d = label.designator[0]
        if len(token) == len(d) + 1 and token[:-1].upper() == d.upper() and token[-1].isalpha():
            return token[-1].upper()
    return None


@dataclass(frozen=True)
class TeamIdentity:
    """One team within one series; equal (series_key, team_key) means the same team."""

    club: str  # as written, series and sub-team parts removed
    club_key: str  # fold(club)
    sub_team: str  # canonical: "2" for "II" or "(2)", "A" for "99 A"; "" for none
    series_key: str
    team_key: str
    display: str


@lru_cache(maxsize=262_144)
def parse_team(name: str, series_label: str) -> TeamIdentity:
    """Turn a (team name, series label) pair as written into a canonical identity."""
    label = parse_label(series_label)

    def fail(reason: str) -> TeamNameError:
        return TeamNameError(f"team name {name!r} in series {series_label!r}: {reason}")

    text = _GLUED_PAREN.sub(" (", clean(name or ""))
    if not text:
        raise fail("empty team name")
    if _is_label_only(text, label):
        raise fail("only a series label, not a team")

    dash = _DASH_TAIL.match(text)
    if dash and _names_series(dash.group("tail"), label):
        text = dash.group("head")

    tokens = _drop_series(text.split(" "), label)
    sub_team, marker = "", ""
    sub = _sub_team(tokens[-1], label) if len(tokens) > 1 else None
    if sub is not None:
        sub_team, marker = sub, tokens[-1]
        tokens = _drop_series(tokens[:-1], label)
    elif len(tokens) == 1 and _sub_team(tokens[0], label) is not None:
        tokens = []  # "II", "(2)": a sub-team of no club

    club = " ".join(tokens).strip(" -")
    club_key = fold(club)
    if not _HAS_LETTER.search(club):
        raise fail("no club name left after removing series and sub-team parts")
    team_key = club_key + (f"#{sub_team.casefold()}" if sub_team else "")
    display = f"{club} {marker.strip('()')}" if marker else club
    return TeamIdentity(club, club_key, sub_team, label.key, team_key, display)


def is_bye(team_name: str, location: str | None, series_label: str) -> bool:
    """Whether a schedule side is a BYE placeholder rather than a team."""
    if location is not None and clean(location).casefold() == "bye":
        return True
    return _is_label_only(team_name or "", parse_label(series_label))


# Series named in free text (captain messages, poll questions), for restore_mapping. The same
# designators as labels; introduced by a generic series word or a prefix the league's own labels
# use ("Chicago 22 SW"), or in the compact form ("S2B"). A bare number, a time ("moved to 7:22")
# or a date is never a series; a letter designator counts only as a capital ("Series A").
_TEXT_DESIGNATOR = r"(\d{1,3}[A-Za-z]?(?:\s+[A-Za-z]{1,3}\b)?|[A-Z]{1,2}\b)"
_COMPACT = re.compile(r"(?<![\w:/.])S(\d{1,3}[A-Z]?|[A-Z]{1,2})(?![\w/]|:\d)")


@lru_cache(maxsize=256)
def _mention_pattern(prefixes: frozenset[str]) -> re.Pattern:
    words = sorted({*GENERIC_SERIES_WORDS, *(p.casefold() for p in prefixes)}, key=len, reverse=True)
    alternatives = "|".join(re.escape(w) for w in words)
    return re.compile(rf"(?<!\w)(?i:{alternatives})\s+{_TEXT_DESIGNATOR}(?![\w/]|:\d)")


def mentions(text: str | None, known_keys: frozenset[str], prefixes: frozenset[str] = frozenset()) -> set[str]:
    """The series keys of `known_keys` that a free text names, by the label definition above.

    A designator with a trailing word ("22 SW") names that series when the league has it, else
    the number alone ("Series 22 please" names series 22).
    """
    if not text:
        return set()
    found: set[str] = set()
    for match in _mention_pattern(prefixes).finditer(text):
        designator = clean(match.group(1)).upper()
        head = designator.split(" ")[0]
        if designator in known_keys:
            found.add(designator)
        elif head in known_keys and head[:1].isdigit():
            found.add(head)
    for match in _COMPACT.finditer(text):
        if match.group(1) in known_keys:
            found.add(match.group(1))
    return found
