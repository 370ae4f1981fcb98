"""Read and validate league folders of scraper JSON: every problem found before the first write.

A file is read only if it is a regular file, with its size capped while it is read (a FIFO or a
file that grows is refused, never read whole), decoded by a typed decoder (msgspec: exact
locations, bounded nesting), and checked record by record against what the tables will need:
types and integer ranges, text PostgreSQL refuses (NUL) or cannot index (over MAX_NAME_LENGTH),
labels and names that parse to no team, the folder's league, and duplicates by natural key.
Every problem is reported at once, with its file, record index and field, capped and counted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import lru_cache
from operator import attrgetter
from pathlib import Path
from typing import Annotated

import msgspec

from league_import.display import is_hidden
from league_import.errors import SourceError
from league_import.identity import MAX_NAME_LENGTH, TeamIdentity, TeamNameError, clean, is_bye, parse_label, parse_team

STATS_FILE = "series_stats.json"
SCHEDULE_FILE = "schedules.json"
# Reading holds the file's bytes and its decoded records at once (about 4x a file's size): 50 MB
# keeps a run's memory bounded, 40x the size of a real season's file.
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_LISTED = 20  # problems listed in one error; the rest are counted
_CHUNK = 1024 * 1024

Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]  # a number of matches, lines, sets, games or points


class _Matches(msgspec.Struct, gc=False):
    won: Count
    lost: Count
    tied: Count


class _Lines(msgspec.Struct, gc=False):
    won: Count
    lost: Count
    for_: Count = msgspec.field(name="for")
    ret: Count = msgspec.field(name="ret")


class _WonLost(msgspec.Struct, gc=False):
    won: Count
    lost: Count


class _MatchesFull(msgspec.Struct, gc=False):
    won: object
    lost: object
    tied: object
    percentage: object


class _LinesFull(msgspec.Struct, gc=False):
    won: object
    lost: object
    for_: object = msgspec.field(name="for")
    ret: object = msgspec.field(name="ret")
    percentage: object = msgspec.field(name="percentage")


class _WonLostFull(msgspec.Struct, gc=False):
    won: object
    lost: object
    percentage: object


class _FullStats(msgspec.Struct, gc=False):
    """A standings record with every key the scraper writes (the percentages too): the shape whose
    keys _keys_once counts."""

    series: object
    team: object
    league_id: object
    points: object
    matches: _MatchesFull
    lines: _LinesFull
    sets: _WonLostFull
    games: _WonLostFull


class StatsRecord(msgspec.Struct, gc=False):
    series: str
    team: str
    league_id: str
    points: Count
    matches: _Matches
    lines: _Lines
    sets: _WonLost
    games: _WonLost

    def numbers(self) -> tuple[int, ...]:
        m, ln, s, g = self.matches, self.lines, self.sets, self.games
        return (self.points, m.won, m.lost, m.tied, ln.won, ln.lost, ln.for_, ln.ret, s.won, s.lost, g.won, g.lost)


class ScheduleRecord(msgspec.Struct, gc=False):
    date: str
    time: str
    home_team: str
    away_team: str
    location: str
    series: str
    League: str  # noqa: N815 (the scraper's field name)


# A league's identities are cached by read_league itself, for that league only: the module-wide
# lru cache of parse_team would keep every team of every league alive to the end of the read.
_parse_team = parse_team.__wrapped__
_UNSEEN = object()  # not looked up yet
_BYE = object()  # a schedule side that is a BYE placeholder

STATS_NUMBERS = (
    "points",
    "matches_won",
    "matches_lost",
    "matches_tied",
    "lines_won",
    "lines_lost",
    "lines_for",
    "lines_ret",
    "sets_won",
    "sets_lost",
    "games_won",
    "games_lost",
)
TEXT_FIELDS = {StatsRecord: ("series", "team", "league_id"), ScheduleRecord: ScheduleRecord.__struct_fields__}
_KIND = {"int": "a whole number", "str": "a string", "object": "an object", "array": "an array"}
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?:\[(?P<index>\d+)\])?(?P<path>[^`]*)`)?$", re.DOTALL)
_DATE = re.compile(r"^\d{2}/\d{2}/\d{4}$")


@dataclass(frozen=True)
class SourceFile:
    """What was read: for the report, and for freshness (size, modification time, content hash)."""

    name: str
    path: str
    size: int
    mtime: datetime
    sha256: str
    records: int
    first_date: date | None = None
    last_date: date | None = None


@dataclass
class Team:
    series_key: str
    series_label: str
    club: str
    club_key: str
    team_key: str
    sub_team: str
    team_name: str
    seen_in: str = ""  # the file and record it was first read from, for errors naming it
    in_stats: bool = False
    in_schedule: bool = False


@dataclass
class LeagueSource:
    """One league's validated rows, ready for the stage."""

    code: str
    teams: list[Team]
    # series_key, match_date, match_time, home_key, away_key, location, series, home_team, away_team
    schedule: list[tuple]
    stats: list[tuple]  # series_key, team_key, *STATS_NUMBERS, series, team
    files: list[SourceFile] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class Problems:
    """Every problem found, for one error naming each (capped, and counted past the cap)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: Path | str, message: str, record: int | None = None, fld: str | None = None) -> None:
        parts = [str(where)]
        if record is not None:
            parts.append(f"record {record}")
        if fld is None:
            self.items.append(": ".join([*parts, message]))
            return
        joined = " " if message.split(" ", 1)[0] in ("is", "must", "contains") else ": "
        self.items.append(": ".join([*parts, f"field '{fld}'{joined}{message}"]))

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self, what: str = "problems in the sources") -> SourceError:
        if len(self.items) == 1:
            return SourceError(self.items[0])
        listed = self.items[:MAX_LISTED]
        more = len(self.items) - len(listed)
        return SourceError(
            f"{len(self.items)} {what}, nothing was written:\n"
            + "\n".join(f"- {p}" for p in listed)
            + (f"\n- ... and {more} more" if more else "")
        )


def select_leagues(source_dir: str | Path, leagues: list[str] | None) -> list[str]:
    """The league codes to import: the `leagues` param, or every subfolder when it is empty."""
    root = Path(source_dir)
    if not root.is_dir():
        raise SourceError(f"param source_dir: '{root}' is not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_case: dict[str, list[str]] = {}
    for name in found:
        by_case.setdefault(name.casefold(), []).append(name)
    twins = [names for names in by_case.values() if len(names) > 1]
    if twins:
        listed = "; ".join(", ".join(names) for names in twins)
        raise SourceError(
            f"param source_dir: league folders {listed} in '{root}' differ only in case: one league twice? Keep one"
        )
    if not leagues:
        if not found:
            raise SourceError(f"param source_dir: '{root}' has no league subfolders")
        return found
    if not isinstance(leagues, list) or not all(isinstance(c, str) for c in leagues):
        raise SourceError(f"param leagues: expected an array of league codes, got {leagues!r}")
    unknown = [c for c in leagues if c not in found]
    if unknown:
        raise SourceError(
            f"param leagues: no folder for {', '.join(unknown)} in '{root}' (found: {', '.join(found) or 'none'})"
        )
    return list(dict.fromkeys(leagues))


def read_leagues(source_dir: str | Path, leagues: list[str] | None, sink=None) -> list[LeagueSource]:
    """Read and check every selected league once; raise one SourceError listing every problem.

    `sink(league)` (the stage) receives each league as soon as it is valid, so only one league's
    rows are held in memory at a time; after the first problem nothing more reaches it (the
    caller drops what the sink took: the stage is scratch, never the data). Returns the leagues
    without their rows when a sink took them.
    """
    problems = Problems()
    out = []
    for code in select_leagues(source_dir, leagues):
        league = read_league(Path(source_dir) / code, problems)
        if league is None or problems:
            continue
        if sink is not None:
            sink(league)
            league = LeagueSource(league.code, [], [], [], league.files, league.counts)
        out.append(league)
    if problems:
        raise problems.error()
    return out


def read_file(path: Path) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes, never more than MAX_FILE_BYTES read: a FIFO, a device or a folder
    is refused without being read, and a file that grows while read is cut off and refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SourceError(f"{path}: cannot be opened ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # before fdopen, which refuses a folder with its own error
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else "special"
        raise SourceError(f"{path}: not a regular file ({kind}); a league file must be a plain file")
    with os.fdopen(fd, "rb", buffering=0) as handle:
        chunks, size = [], 0
        while chunk := handle.read(_CHUNK):
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise SourceError(f"{path}: more than the limit of {MAX_FILE_BYTES:,} bytes per file; refused")
            chunks.append(chunk)
    return b"".join(chunks), info


def _deepest_record(data: bytes, limit: int) -> int | None:
    """The index of the first record nested deeper than `limit` (only on the error path)."""
    depth, record = 0, 0
    for token in re.finditer(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', data):
        t = token.group()
        if t in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return record
        elif t in (b"]", b"}"):
            depth -= 1
        elif t == b"," and depth == 1:
            record += 1
    return None


def _field_path(path: str, message: str) -> str | None:
    missing = re.search(r"missing required field `([^`]+)`", message)
    parts = [p for p in path.lstrip(".").split(".") if p]
    if missing:
        parts.append(missing.group(1))
    return ".".join(parts) or None


def _explain(message: str, value) -> str:
    if "missing required field" in message:
        return "missing"
    expected = re.match(r"Expected `(\w+)`(?: (?P<bound>[<>]=? -?\d+))?", message)
    if expected:
        kind = _KIND.get(expected.group(1), expected.group(1))
        bound = expected.group("bound")
        if bound in (">= 0", ">= -2147483648"):
            low = "0" if bound == ">= 0" else "-2147483648"
            return f"must be {kind} between {low} and 2147483647, got {value!r}"
        if bound:
            return f"must be {kind} between 0 and 2147483647, got {value!r}"
        return f"must be {kind}, got {value!r}"
    return message


def _value_at(raw: msgspec.Raw, dotted: str | None):
    try:
        value = msgspec.json.decode(raw)
        for part in (dotted or "").split("."):
            if part:
                value = value[part]
        return value
    except (msgspec.DecodeError, KeyError, TypeError):
        return None


def _decode(path: Path, data: bytes, record_type: type, problems: Problems) -> list | None:
    """Typed records, or None with every record's problem added."""
    try:
        records = _decode_records(path, data, record_type, problems)
    except RecursionError:  # met by any of the decodes, the per-record ones included
        record = _deepest_record(data, 64)
        problems.add(path, "JSON nested too deeply (a record is a few levels deep)", record)
        return None
    except UnicodeDecodeError:
        problems.add(path, _not_utf8(data))
        return None
    if records is not None and not _keys_once(path, data, record_type, len(records), problems):
        return None
    return records


def _not_utf8(data: bytes) -> str:
    """Where the first bytes that are not UTF-8 are, as a person opens the file."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start
        line = data.count(b"\n", 0, at) + 1
        column = at - (data.rfind(b"\n", 0, at) + 1) + 1
        return f"not UTF-8: byte {at} (line {line} column {column}) is {data[at:at + 1]!r}"
    return "not UTF-8"


# Characters a name may not hold (control and invisible format characters: ESC, a zero-width
# space, a right-to-left override), found raw or as a JSON escape. A file with none, the common
# case, is cleared by two scans of its bytes; only a file with one is checked field by field.
_ESCAPE = re.compile(rb"\\u([0-9a-fA-F]{4})")


@lru_cache(maxsize=1)
def _hidden_raw() -> re.Pattern:
    hidden = (chr(c) for c in range(0x110000) if is_hidden(chr(c)))
    return re.compile("[" + re.escape("".join(c for c in hidden if c not in "\t\n\r")) + "]")


def _may_hide(data: bytes) -> bool:
    """Whether the file may hold a control or invisible format character in a string."""
    escaped = {int(code, 16) for code in _ESCAPE.findall(data)}
    if any(is_hidden(chr(c)) for c in escaped):
        return True
    return not data.isascii() and _hidden_raw().search(data.decode("utf-8", "replace")) is not None


# The keys of a record in full, as the scraper writes it (CONTRACT section 3), nested ones counted.
FULL_KEYS = {"StatsRecord": 23, "ScheduleRecord": 7}
_SPACED_KEY = re.compile(rb'"\s+:')


def _keys_once(path: Path, data: bytes, record_type: type, records: int, problems: Problems) -> bool:
    """Whether no object of the file repeats a key (JSON decoders keep the last one silently: a
    repeated "team" would make another team). Every key ends with `":`; a file of full records
    with exactly that many, written without space before its colons, has no repeat (the common
    case, decided in a scan of the bytes); any other file is read again, object by object."""
    full = _full_records(data, record_type)
    if full and data.count(b'":') == FULL_KEYS[record_type.__name__] * records and not _SPACED_KEY.search(data):
        return True
    repeated = 0
    for i, raw in enumerate(msgspec.json.decode(data, type=list[msgspec.Raw])):
        try:
            json.loads(bytes(raw), object_pairs_hook=_no_repeated_key)
        except _RepeatedKey as exc:
            problems.add(path, f"repeats the key {exc.args[0]!r} in one object (JSON keeps only the last)", i)
            repeated += 1
    return repeated == 0


class _RepeatedKey(ValueError):
    pass


def _no_repeated_key(pairs: list[tuple[str, object]]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen.add(key)
    return dict(pairs)


def _full_records(data: bytes, record_type: type) -> bool:
    """Whether every record has every key of its full shape (the standings' percentages are not
    read but are counted): only then does the count of keys prove that none repeats."""
    if record_type is ScheduleRecord:
        return True
    try:
        msgspec.json.decode(data, type=list[_FullStats])
    except (msgspec.ValidationError, msgspec.DecodeError):
        return False
    return True


def _malformed(data: bytes, message: str) -> str:
    """msgspec names the byte; a person opens the file at a line and column."""
    found = re.search(r"\(byte (\d+)\)", message)
    reason = re.sub(r"^JSON is malformed: | \(byte \d+\)$", "", message)
    if not found:
        return f"malformed JSON: {reason}"
    at = int(found.group(1))
    line = data.count(b"\n", 0, at) + 1
    column = at - (data.rfind(b"\n", 0, at) + 1) + 1
    return f"malformed JSON at line {line} column {column}: {reason}"


def _decode_records(path: Path, data: bytes, record_type: type, problems: Problems) -> list | None:
    try:
        return msgspec.json.decode(data, type=list[record_type])
    except msgspec.ValidationError:
        pass  # below: every record's problem, not only the first
    except msgspec.DecodeError as exc:
        problems.add(path, _malformed(data, str(exc)))
        return None
    try:
        raws = msgspec.json.decode(data, type=list[msgspec.Raw])
    except msgspec.ValidationError as exc:
        found = re.search(r"got `(\w+)`", str(exc))
        problems.add(path, f"expected a JSON array of records, found {found.group(1) if found else 'something else'}")
        return None
    for i, raw in enumerate(raws):
        try:
            msgspec.json.decode(raw, type=record_type)
        except msgspec.ValidationError as exc:
            parts = _AT.match(str(exc))
            dotted = _field_path(parts.group("path") or "", str(exc))
            explained = _explain(parts.group("msg"), _value_at(raw, dotted))
            if dotted is None:
                problems.add(path, f"expected an object, found {_value_at(raw, None).__class__.__name__}", i)
            elif explained == "missing":
                problems.add(path, f"missing field '{dotted}'", i)
            else:
                problems.add(path, explained, i, dotted)
    return None


def _check_text(path: Path, i: int, record, problems: Problems) -> bool:
    ok = True
    for name in TEXT_FIELDS[type(record)]:
        value = getattr(record, name)
        hidden = next((c for c in value if is_hidden(c)), None)
        if "\x00" in value:
            problems.add(path, "contains a NUL character, which PostgreSQL text cannot hold", i, name)
            ok = False
        elif hidden is not None:
            what = "a control character" if unicodedata.category(hidden) == "Cc" else "an invisible format character"
            problems.add(path, f"contains {what} (U+{ord(hidden):04X}): names are printable text", i, name)
            ok = False
        elif len(value) > MAX_NAME_LENGTH:
            problems.add(path, f"is {len(value):,} characters long, over the limit of {MAX_NAME_LENGTH}", i, name)
            ok = False
    return ok


def _read(path: Path, record_type: type, league_field: str, code: str, problems: Problems):
    """(records, file facts), or (None, None) with the problems added; ([], None) when absent."""
    if not path.exists() and not path.is_symlink():
        return [], None
    try:
        data, info = read_file(path)
    except SourceError as exc:  # listed with the other files' problems
        problems.items.append(str(exc))
        return None, None
    records = _decode(path, data, record_type, problems)
    if records is None:
        return None, None
    if not records:
        problems.add(path, "the array holds no records")
        return None, None
    before = len(problems.items)
    # The per-field check runs only for a record that may fail it: text fields read at once, and
    # NUL, control and format characters looked for only when the file may hold one.
    texts, league_of = attrgetter(*TEXT_FIELDS[record_type]), attrgetter(league_field)
    may_hide = _may_hide(data)
    for i, record in enumerate(records):
        values = texts(record)
        if may_hide or max(map(len, values)) > MAX_NAME_LENGTH:
            if not _check_text(path, i, record, problems):
                continue
        if league_of(record) != code:
            problems.add(path, f"is '{league_of(record)}' but the folder is '{code}'", i, league_field)
    facts = SourceFile(
        name=path.name,
        path=str(path),
        size=len(data),
        mtime=datetime.fromtimestamp(info.st_mtime, UTC),
        sha256=hashlib.sha256(data).hexdigest(),
        records=len(records),
    )
    return (records, facts) if len(problems.items) == before else (None, None)


def read_league(folder: Path, problems: Problems) -> LeagueSource | None:
    """One league folder, or None with its problems added."""
    code = folder.name
    stats_path, schedule_path = folder / STATS_FILE, folder / SCHEDULE_FILE
    if not any(p.exists() or p.is_symlink() for p in (stats_path, schedule_path)):
        problems.add(folder, f"league folder has neither {STATS_FILE} nor {SCHEDULE_FILE}")
        return None
    stats, stats_file = _read(stats_path, StatsRecord, "league_id", code, problems)
    schedule, schedule_file = _read(schedule_path, ScheduleRecord, "League", code, problems)
    if stats is None or schedule is None:
        return None

    identities: dict[tuple[str, str], TeamIdentity | None] = {}

    def identity(name: str, label: str, path: Path, i: int, fld: str) -> TeamIdentity | None:
        if (name, label) not in identities:
            try:
                identities[(name, label)] = _parse_team(name, label)
            except TeamNameError as exc:
                identities[(name, label)] = None
                problems.add(path, str(exc), i, fld)
        return identities[(name, label)]

    label_keys: dict[str, str | None] = {}  # label -> series key, None when it names no series

    def label_key(label: str, path: Path, i: int) -> str | None:
        key = label_keys.get(label, _UNSEEN)
        if key is _UNSEEN:
            try:
                key = parse_label(label).key
            except TeamNameError:
                key = None
            label_keys[label] = key
        if key is None:
            try:
                parse_label(label)
            except TeamNameError as exc:  # each record with the label is listed, as it is read
                problems.add(path, str(exc), i, "series")
        return key

    teams: dict[tuple[str, str], Team] = {}

    def note(ident: TeamIdentity, name: str, label: str, from_stats: bool, seen_in: str) -> None:
        team = teams.get((ident.series_key, ident.team_key))
        if team is None:
            team = teams[(ident.series_key, ident.team_key)] = Team(
                ident.series_key,
                clean(label),
                ident.club,
                ident.club_key,
                ident.team_key,
                ident.sub_team,
                clean(name),
                seen_in,
            )
        elif from_stats and not team.in_stats:  # the stats file's spelling wins for display
            team.team_name, team.club, team.series_label = clean(name), ident.club, clean(label)
        team.in_stats |= from_stats
        team.in_schedule |= not from_stats

    stats_rows, first_seen = [], {}
    for i, r in enumerate(stats):
        if label_key(r.series, stats_path, i) is None:
            continue
        ident = identity(r.team, r.series, stats_path, i, "team")
        if ident is None:
            continue
        key = (ident.series_key, ident.team_key)
        if key in first_seen:
            j = first_seen[key]
            problems.add(
                stats_path,
                f"team {r.team!r} is the same team as record {j} ({stats[j].team!r}) in series {r.series!r}",
                i,
                "team",
            )
            continue
        first_seen[key] = i
        note(ident, r.team, r.series, True, f"{stats_path}: record {i}")
        stats_rows.append((ident.series_key, ident.team_key, *r.numbers(), r.series, r.team))

    # A schedule names each team about 18 times: each distinct (name, label) is read once (BYE
    # or team, noted once: noting is idempotent), each distinct label, time and location once;
    # the loop below looks them up inline, without a call per record.
    sides_seen: dict[tuple[str, str], object] = {}

    def side(name: str, label: str, i: int, fld: str):
        """_BYE, the team's key, or None (unreadable, its problem added on first sight)."""
        found = sides_seen.get((name, label), _UNSEEN)
        if found is _UNSEEN:
            if is_bye(name, None, label):
                found = _BYE
            else:
                ident = identity(name, label, schedule_path, i, fld)
                if ident is not None:
                    note(ident, name, label, False, f"{schedule_path}: record {i}")
                found = None if ident is None else ident.team_key
            sides_seen[(name, label)] = found
        return found

    locations: dict[str, str] = {}
    times: dict[str, object] = {}
    schedule_rows, matches, byes, dates, dates_seen = [], {}, 0, set(), {}
    for i, r in enumerate(schedule):
        label = r.series
        series = label_keys.get(label)
        if series is None and (series := label_key(label, schedule_path, i)) is None:
            continue
        home = sides_seen.get((r.home_team, label), _UNSEEN)
        if home is _UNSEEN:
            home = side(r.home_team, label, i, "home_team")
        away = sides_seen.get((r.away_team, label), _UNSEEN)
        if away is _UNSEEN:
            away = side(r.away_team, label, i, "away_team")
        match_date = dates_seen.get(r.date) or dates_seen.setdefault(r.date, _date(r.date, schedule_path, i, problems))
        match_time = times.get(r.time, _UNSEEN)
        if match_time is _UNSEEN or match_time is False:
            match_time = times[r.time] = _time(r.time, schedule_path, i, problems)
        if home is None or away is None:
            continue
        if home is _BYE and away is _BYE:
            problems.add(schedule_path, "neither side names a team", i, "home_team")
            continue
        if match_date is None or match_time is False:
            continue
        if home is _BYE or away is _BYE:
            home, away, byes = (None if home is _BYE else home), (None if away is _BYE else away), byes + 1
        key = (series, match_date, home, away)
        if key in matches:
            match = f"series {r.series!r}, {r.date}, {r.home_team!r} v {r.away_team!r}"
            problems.add(schedule_path, f"the same match as record {matches[key]} ({match})", i)
            continue
        matches[key] = i
        dates.add(match_date)
        location = locations.get(r.location)
        if location is None:
            location = locations[r.location] = clean(r.location)
        schedule_rows.append((series, match_date, match_time, home, away, location, label, r.home_team, r.away_team))

    files = [f for f in (stats_file, schedule_file) if f is not None]
    if schedule_file is not None and dates:
        files[-1] = SourceFile(**{**schedule_file.__dict__, "first_date": min(dates), "last_date": max(dates)})
    return LeagueSource(
        code=code,
        teams=list(teams.values()),
        schedule=schedule_rows,
        stats=stats_rows,
        files=files,
        counts={"stats_records": len(stats), "schedule_records": len(schedule), "bye_rows": byes},
    )


def _date(text: str, path: Path, i: int, problems: Problems) -> date | None:
    try:
        if not _DATE.match(text):
            raise ValueError
        return datetime.strptime(text, "%m/%d/%Y").date()
    except ValueError:
        problems.add(path, f"is {text!r}, expected MM/DD/YYYY", i, "date")
        return None


@lru_cache(maxsize=4096)
def _parse_time(text: str) -> time | None | bool:
    if not text.strip():
        return None
    try:
        return datetime.strptime(text.strip(), "%I:%M %p").time()
    except ValueError:
        return False


def _time(text: str, path: Path, i: int, problems: Problems) -> time | None | bool:
    """The match time, None when empty, False (and a problem) when unreadable."""
    parsed = _parse_time(text)
    if parsed is False:
        problems.add(path, f"is {text!r}, expected like '06:30 pm'", i, "time")
    return parsed
