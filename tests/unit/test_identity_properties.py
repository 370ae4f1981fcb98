"""Property-based tests of team identity: every documented spelling of one team gives one key, and
different teams, sub-teams, series and clubs never meet. The generators stay within the limits
stated in league_import.identity's docstring; where a documented rule is ambiguous by itself, the
generator avoids the case and says why."""

from __future__ import annotations

import re
import string
import tempfile
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from league_import.identity import fold, is_bye, mentions, parse_label, parse_team, series_key

# Deterministic in CI, about 5 s for the file, and nothing written into the repository: with no
# example database Hypothesis still caches Unicode tables and source constants in its home
# directory, by default ./.hypothesis.
SETTINGS = settings(max_examples=250, derandomize=True, database=None, deadline=None)
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "league-import-hypothesis")

PREFIXES = ("Series", "Chicago", "Division", "Div", "Flight", "Sunday", "")
GENERIC = ("Series", "Division", "Div", "Flight", "League")
ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV"}
ROMAN_TOKENS = {"I", "II", "III", "IV", "V", "VI", "VII", "VIII"}  # identity reads these as sub-teams

ASCII_WORDS = tuple(
    "Lake Forest Glen Ellyn Oak Park Hinsdale Winnetka Butterfield Salt Creek Midtown Tennaqua Evanston"
    " Birchwood Ridge Prairie Skokie Mix Xi".split()
)
SHORT_WORDS = ("A", "B", "I", "II", "IV", "V", "X", "Ii", "iv")  # fine anywhere but last
ABBREVIATIONS = ("CC", "RC", "PC", "PD", "TC", "AC", "St.", "Mt.")
SYMBOL_WORDS = ("O'Hare", "D'Arcy", "L'Étoile", "Land's", "B&W", "A&M", "R&R", "Smith&Co")
NON_ASCII_WORDS = tuple(
    "Zürich Mañana Crème Åsgård Łódź Øresund Straße Česko İzmir Ελλάς Αθήνα Москва Київ Ñandú".split()
)
LETTERS = (
    string.ascii_letters
    + "àáâäãåçèéêëìíîïñòóôöøùúûüýÿßčšžřěůőűł"
    + "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώ"
    + "абвгдежзийклмнопрстуфхцчшщыэюяёїє"
)
ACCENTS = ("\u0300", "\u0301", "\u0302", "\u0308", "\u0303")  # grave, acute, circumflex, diaeresis, tilde
SEPARATORS = (" ", "-", " - ", "\u2013", " \u2013 ", ".", ". ", "'", "\u2019", "/", " / ", "", " & ")
WHITESPACE = (" ", "  ", "\t", " \u00a0", "   ")
DASHES = (" - ", " \u2013 ", " \u2014 ", "-", " -", "- ")
WORD_DESIGNATORS = ("Legends", "Masters", "Open", "Seniors", "Platinum", "Mixed")
SUFFIXES = ("SW", "NW", "NE", "SE", "NS")
SUB_LETTERS = tuple(c for c in string.ascii_uppercase if c not in ROMAN_TOKENS)


@cache
def _choices(options: tuple) -> st.SearchStrategy:
    return st.sampled_from(options)


def pick(draw, *options):
    """One of options; strategies are cached because building them costs more than drawing."""
    return draw(_choices(options))


def plain(text: str) -> str:
    """Text without diacritics, as fold sees it."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class Series:
    prefix: str
    designator: str  # as the label writes it: "15 SW", "2B", "A", "SN", "Legends"
    kind: str  # number, suffix ("15 SW"), glued ("2B"), letter ("A", "SN"), word

    @property
    def key(self) -> str:
        return self.designator.upper()

    @property
    def numbered(self) -> bool:
        return self.kind in ("number", "suffix", "glued")

    @property
    def compact(self) -> str | None:
        """The NSTF form, only where identity documents it: number(+letter) or capital letters."""
        return None if self.kind in ("suffix", "word") else "S" + self.designator.upper()


@dataclass(frozen=True)
class Team:
    words: tuple[str, ...]
    series: Series
    sub: str  # canonical sub-team: "" none, "1".."4" (roman or parenthesised), or a letter

    @property
    def club_key(self) -> str:
        return fold(" ".join(self.words))


@st.composite
def series(draw) -> Series:
    kind = pick(draw, "number", "suffix", "glued", "letter", "letter", "word")
    n = draw(st.integers(1, 120))
    designator = {
        "number": str(n),
        "suffix": f"{n} {pick(draw, *SUFFIXES)}",
        "glued": f"{n}{pick(draw, *string.ascii_uppercase)}",
        "letter": pick(draw, *string.ascii_uppercase) + pick(draw, "", "", *string.ascii_uppercase),
        "word": pick(draw, *WORD_DESIGNATORS),
    }[kind]
    return Series(pick(draw, *PREFIXES), designator, kind)


words = st.one_of(
    st.sampled_from(ASCII_WORDS),
    st.sampled_from(SHORT_WORDS),
    st.sampled_from(ABBREVIATIONS),
    st.sampled_from(SYMBOL_WORDS),
    st.sampled_from(NON_ASCII_WORDS),
    st.text(LETTERS, min_size=1, max_size=9),
)


def forbidden_last_words(s: Series) -> frozenset[str]:
    found = {fold(w) for w in PREFIXES + GENERIC if w} | {fold(t) for t in s.designator.split()}
    return frozenset(found | ({fold(s.compact)} if s.compact else set()))


def can_end_club(word: str, s: Series) -> bool:
    """identity's documented limit: a club's last word is never a lone roman numeral, a number or a
    single letter. Nor is it a series word (any prefix, a generic word, the designator or its
    compact form): "Lake Sunday" in "Sunday A" cannot be told from "Lake" and the label."""
    bare = plain(word)
    return (
        sum(c.isalpha() for c in bare) >= 2
        and bare.upper() not in ROMAN_TOKENS
        and (fold(word) not in forbidden_last_words(s))
    )


@cache
def last_words(s: Series) -> st.SearchStrategy[str]:
    return words.filter(lambda w: can_end_club(w, s))


@st.composite
def clubs(draw, s: Series) -> tuple[str, ...]:
    if s.kind == "word" and draw(st.integers(0, 3)) == 0:
        return (s.designator,)  # documented: in "Series Legends" a team may be called "Legends"
    head = draw(st.lists(words, max_size=2))
    return (*head, draw(last_words(s)))


def sub_team(draw, s: Series, other_than: str | None = None) -> str:
    """A sub-team the series can hold. Letters only in a numbered series, where they are documented,
    and never I or V: "Winnetka 99 I" reads as roman numeral one, "Winnetka 99i" as the letter."""
    kinds = [("",), tuple(ROMAN), *([SUB_LETTERS] if s.numbered else [])]
    options = tuple(o for o in pick(draw, *kinds) if o != other_than)
    return pick(draw, *options) if options else pick(draw, *(o for o in ROMAN if o != other_than))


@st.composite
def teams(draw, s: Series | None = None) -> Team:
    s = s or draw(series())
    return Team(draw(clubs(s)), s, sub_team(draw, s))


# Spellings: each helper writes single spaces; `spaced` varies the whitespace last.


def random_case(draw, text: str) -> str:
    how = pick(draw, "keep", "lower", "upper", "title", "chars")
    if how == "chars":
        flips = draw(st.integers(0, 2 ** len(text) - 1))
        return "".join(c.upper() if flips >> i & 1 else c.lower() for i, c in enumerate(text))
    return {"keep": text, "lower": text.lower(), "upper": text.upper(), "title": text.title()}[how]


def accented(draw, word: str) -> str:
    """Diacritics removed, kept, or added to some plain letters, composed or decomposed."""
    how = pick(draw, "keep", "strip", "add")
    if how == "keep":
        return word
    if how == "strip":
        return plain(word)
    rnd = draw(st.randoms(use_true_random=False))
    out = "".join(c + rnd.choice(ACCENTS) if c.isascii() and c.isalpha() and rnd.random() < 0.5 else c for c in word)
    return unicodedata.normalize(pick(draw, "NFC", "NFD"), out)


def club_spelling(draw, words: tuple[str, ...]) -> str:
    spelled = [accented(draw, w) for w in words]
    text = spelled[0] + "".join(pick(draw, *SEPARATORS) + w for w in spelled[1:])
    return random_case(draw, text)


def series_words(draw, label: Series) -> str:
    """The series as a team name repeats it: the designator, after nothing, the label's own prefix
    or a generic series word."""
    intro = random_case(draw, pick(draw, "", label.prefix, *GENERIC))
    return f"{intro} {random_case(draw, label.designator)}".strip()


def marker(draw, s: Series, sub: str) -> str:
    """A number sub-team as written: " II", " (2)" or glued "(2)". Not II in Series II: "Club II"
    is the club in that series as much as its sub-team two."""
    forms = ("paren", "glued") + (("roman",) if ROMAN[sub] != s.key else ())
    return {"roman": f" {random_case(draw, ROMAN[sub])}", "paren": f" ({sub})", "glued": f"({sub})"}[pick(draw, *forms)]


def spaced(draw, text: str) -> str:
    """Repeated and odd whitespace between words and around the text."""
    if draw(st.booleans()):
        return text
    rnd = draw(st.randoms(use_true_random=False))
    parts = text.split(" ")
    inner = "".join(p + rnd.choice(WHITESPACE) for p in parts[:-1]) + parts[-1]
    return rnd.choice(["", " ", "  "]) + inner + rnd.choice(["", "\t"])


def forms(team: Team) -> tuple[str, ...]:
    """The documented ways a team name carries its series (and a letter sub-team)."""
    s = team.series
    if team.sub and team.sub not in ROMAN:  # a letter after a numbered series, or glued to its number
        return ("after", "twice", "letter-dash") + (("glued",) if s.kind == "number" else ())
    return ("append", "dash") + (("compact",) if s.compact else ()) + (() if s.numbered else ("none",))


@st.composite
def spellings(draw, team: Team, form: str | None = None) -> tuple[str, str]:
    """One (team name, series label) pair that documents this team."""
    s, sub = team.series, team.sub
    form = form or pick(draw, *forms(team))
    label = Series(pick(draw, *PREFIXES), s.designator, s.kind)  # the prefix is not identity
    label_text = f"{random_case(draw, label.prefix)} {random_case(draw, label.designator)}".strip()
    club = club_spelling(draw, team.words)
    designator = random_case(draw, s.designator)

    if form in ("after", "twice", "letter-dash", "glued"):
        letter = random_case(draw, sub)
        name = {
            "glued": lambda: f"{club} {s.designator}{letter}",  # "Hinsdale 1a"
            "after": lambda: f"{club} {designator} {letter}",  # "Winnetka 99 A"
            "twice": lambda: f"{club} {designator} {letter} {designator}",  # "Winnetka 99 A 99"
            "letter-dash": lambda: f"{club} {designator} {letter}{pick(draw, *DASHES)}{series_words(draw, label)}",
        }[form]()
        return spaced(draw, name), spaced(draw, label_text)

    tail = {
        "append": lambda: " " + series_words(draw, label),  # "Butterfield 15 SW", "Lake Forest Sunday A"
        "dash": lambda: pick(draw, *DASHES) + series_words(draw, label),  # "Westmoreland A - Series A"
        "compact": lambda: f" {s.compact}",  # "Tennaqua S2B"
        "none": lambda: "",  # "Middlefork" in Series A
    }[form]()
    mark = marker(draw, s, sub) if sub else ""
    if mark and tail and form != "dash" and draw(st.booleans()):
        name = club + tail + mark  # "Winnetka B(2)", "Wilmette H (1)"
    else:
        name = club + mark + tail  # "Wilmette PD II 11", "Hinsdale PC II - 9 SW"
    return spaced(draw, name), spaced(draw, label_text)


def key(name: str, label: str) -> tuple[str, str]:
    ident = parse_team(name, label)
    return ident.series_key, ident.team_key


@SETTINGS
@given(st.data())
def test_every_spelling_of_a_team_gives_one_key(data) -> None:
    team = data.draw(teams())
    for form in forms(team):
        name, label = data.draw(spellings(team, form))
        ident = parse_team(name, label)
        assert (ident.series_key, ident.club_key, ident.sub_team) == (team.series.key, team.club_key, team.sub)
        assert ident.team_key == team.club_key + (f"#{team.sub.lower()}" if team.sub else "")
        assert not is_bye(name, None, label)


@SETTINGS
@given(st.data())
def test_different_sub_teams_never_meet(data) -> None:
    a = data.draw(teams())
    b = Team(a.words, a.series, sub_team(data.draw, a.series, other_than=a.sub))
    assert key(*data.draw(spellings(a))) != key(*data.draw(spellings(b)))


@SETTINGS
@given(st.data())
def test_different_series_never_meet(data) -> None:
    a = data.draw(teams())
    other = data.draw(series().filter(lambda s: s.key != a.series.key))
    assume(can_end_club(a.words[-1], other))
    b = Team(a.words, other, a.sub if a.sub in ROMAN or other.numbered else "")
    name_a, label_a = data.draw(spellings(a))
    name_b, label_b = data.draw(spellings(b))
    assert series_key(label_a) != series_key(label_b)
    assert key(name_a, label_a) != key(name_b, label_b)


@SETTINGS
@given(st.data())
def test_different_clubs_never_meet(data) -> None:
    a = data.draw(teams())
    b = data.draw(teams(a.series))
    assume(a.club_key != b.club_key)
    ia, ib = parse_team(*data.draw(spellings(a))), parse_team(*data.draw(spellings(b)))
    assert ia.club_key != ib.club_key
    assert (ia.series_key, ia.team_key) != (ib.series_key, ib.team_key)


@SETTINGS
@given(series(), st.sampled_from(PREFIXES), st.data())
def test_the_label_prefix_is_not_identity(s: Series, other: str, data) -> None:
    a = spaced(data.draw, f"{random_case(data.draw, s.prefix)} {s.designator}".strip())
    b = spaced(data.draw, f"{other} {random_case(data.draw, s.designator)}".strip())
    assert parse_label(a).key == parse_label(b).key == series_key(a) == series_key(b) == s.key
    assert [t.upper() for t in parse_label(a).designator] == s.key.split(" ")


# Free text. Designators as identity reads them there: up to three digits with an optional letter or
# short word, or one or two capitals. Filler words have four letters or more, so none is taken for
# a designator's trailing word ("Series 22 ok" names "22 OK" when the league has such a series).
FILLERS = tuple(
    "practice moved please lineup captains tonight match subs needed Court rained schedule thanks Monday"
    " home away games".split()
)
TEXT_PREFIXES = frozenset({"Chicago", "Sunday"})


@st.composite
def text_designators(draw) -> str:
    n = draw(st.integers(1, 999))
    return pick(
        draw,
        str(n),
        f"{n}{pick(draw, *string.ascii_uppercase)}",
        f"{n} {pick(draw, *SUFFIXES)}",
        pick(draw, *string.ascii_uppercase) + pick(draw, "", *string.ascii_uppercase),
    )


def filler(draw, max_size: int = 4) -> str:
    return " ".join(draw(st.lists(_choices(FILLERS), max_size=max_size)))


@st.composite
def times_dates_numbers(draw) -> tuple[str, set[str]]:
    """A time, a date or a bare number, and the keys a careless reading would take from it. A time
    or a date may follow a series word ("Flight 7:22"); a bare number may not, as then it is one."""
    h, m, d = draw(st.integers(1, 12)), draw(st.integers(0, 59)), draw(st.integers(1, 31))
    kind = pick(draw, "time", "date", "number")
    if kind == "number":
        return pick(draw, "", "we play ", "about ") + str(d), {str(d)}
    intro = pick(draw, "", "at ", "on ", *(f"{w} " for w in GENERIC + tuple(TEXT_PREFIXES)))
    if kind == "time":
        return intro + f"{h}:{m:02d}" + pick(draw, "", "pm", " am"), {str(h), str(m), f"{m:02d}"}
    return intro + f"{h}/{d}" + pick(draw, "", "/24", "/2025"), {str(h), str(d)}


@SETTINGS
@given(text_designators(), st.data())
def test_a_series_named_in_free_text_is_found(designator: str, data) -> None:
    key_ = designator.upper()
    intro = random_case(data.draw, pick(data.draw, *GENERIC, *TEXT_PREFIXES))
    mention = f"{intro} {designator}"
    if re.fullmatch(r"\d{1,3}[A-Z]?|[A-Z]{1,2}", designator):  # the NSTF form: "S2B", "SSN"
        mention = pick(data.draw, mention, f"S{designator}")
    noise, numbers = data.draw(times_dates_numbers())
    known = frozenset({key_, *numbers, *data.draw(st.lists(text_designators(), max_size=3))})
    opener = pick(data.draw, "", "(")
    # Not ":" or "/" after it: identity takes those for a time or a date ("Series 22: subs" names none).
    text = " ".join(
        [
            noise,
            filler(data.draw),
            f"{opener}{mention}{')' if opener else ''}{pick(data.draw, '', ',', '.', '!', '?', ';')}",
            filler(data.draw),
        ]
    )
    assert key_ in mentions(text, known, TEXT_PREFIXES)


@SETTINGS
@given(st.lists(times_dates_numbers(), min_size=1, max_size=4), st.data())
def test_times_dates_and_bare_numbers_are_never_series(items, data) -> None:
    text = " ".join(f"{filler(data.draw, 2)} {item}" for item, _ in items)
    known = frozenset().union(*(keys for _, keys in items))
    assert mentions(text, known, TEXT_PREFIXES) == set()
