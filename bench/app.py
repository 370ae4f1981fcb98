"""A simulated app for the load benchmark and its short test: what users do while a run repairs.

Writers insert polls, captain messages, practice times and memberships (a new user and the
user's membership); readers load a team's page (the team, its schedule, its latest messages).
Operations are started at a fixed rate whatever happened to the ones before (an open loop: a
user does not wait for another user), each one short transaction on a connection of the app's
own, and timed from when it was due, so a wait behind a lock or a busy server is counted.
A watcher polls pg_stat_activity and records every moment an app session waits on a lock.
Imports only psycopg, so tests can use it.
"""

from __future__ import annotations

import queue
import random
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field

import psycopg

APP_NAME = "league-app-sim"
KINDS = ("read_page", "poll", "captain_message", "practice_time", "membership")
WEIGHTS = (4, 1, 1, 1, 1)  # half the operations are reads
LOCK_TIMEOUT = "5s"  # an app would rather fail than hang: a wait past this is a failed operation
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

READ_TEAM = """
SELECT t.id, t.team_name, s.name, c.name FROM teams t
JOIN series s ON s.id = t.series_id JOIN clubs c ON c.id = t.club_id WHERE t.id = %(team)s
"""
READ_SCHEDULE = """
SELECT match_date, match_time, home_team_id, away_team_id, location FROM schedule
WHERE home_team_id = %(team)s OR away_team_id = %(team)s ORDER BY match_date
"""
READ_MESSAGES = """
SELECT message, created_at FROM captain_messages WHERE team_id = %(team)s ORDER BY created_at DESC LIMIT 20
"""
WAITS = """
SELECT a.pid, a.wait_event, left(a.query, 80), pg_blocking_pids(a.pid)::text,
       (SELECT string_agg(left(b.query, 80), ' | ') FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid)))
FROM pg_stat_activity a
WHERE a.application_name = %(app)s AND a.wait_event_type = 'Lock'
"""


@dataclass
class Op:
    kind: str
    due: float  # time.monotonic() when it should have started
    started: float = 0.0
    ended: float = 0.0
    error: str | None = None

    @property
    def latency(self) -> float:
        """Seconds from when it was due to its end: its queueing and any wait included."""
        return self.ended - self.due


@dataclass
class Result:
    ops: list[Op]
    lock_waits: list[tuple] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, ops: list[Op] | None = None) -> dict:
        ops = self.ops if ops is None else ops
        done = [o for o in ops if o.ended]
        lat = sorted(o.latency * 1000 for o in done)
        failed = [o for o in done if o.error]
        return {
            "operations": len(done),
            "failed": len(failed),
            "errors": sorted({o.error for o in failed})[:5],
            "p50_ms": statistics.median(lat) if lat else 0.0,
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else 0.0,
            "max_ms": lat[-1] if lat else 0.0,
        }

    def by_kind(self) -> dict[str, dict]:
        return {k: self.summary([o for o in self.ops if o.kind == k]) for k in KINDS}


class App:
    """Start with start(), stop with stop() (returns the Result)."""

    def __init__(
        self, uri: str, *, rate: float = 40.0, workers: int = 8, seed: int = 14, users: tuple[int, int] | None = None
    ):
        self.uri, self.rate, self.workers = uri, rate, workers
        self.rng = random.Random(seed)
        self.todo: queue.Queue[Op | None] = queue.Queue()
        self.ops: list[Op] = []
        self.lock_waits: list[tuple] = []
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        with psycopg.connect(uri, autocommit=True) as conn:
            self.teams = conn.execute("SELECT id, league_id FROM teams WHERE is_active ORDER BY id").fetchall()
            # The accounts the app writes for (by default every user id there is).
            self.users = users or conn.execute("SELECT min(id), max(id) FROM users").fetchone()
        if not self.teams or self.users[0] is None:
            raise ValueError("the app needs teams and users")

    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.uri, application_name=APP_NAME)
        conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        conn.commit()
        return conn

    def start(self) -> App:
        self.started = time.monotonic()
        conns = [self.connect() for _ in range(self.workers)]  # connected before the clock runs
        self.threads = [threading.Thread(target=self._work, args=(c,), daemon=True) for c in conns]
        self.threads.append(threading.Thread(target=self._dispatch, daemon=True))
        self.threads.append(threading.Thread(target=self._watch, daemon=True))
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> Result:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)
        return Result(self.ops, self.lock_waits, time.monotonic() - self.started)

    def _dispatch(self) -> None:
        i, start = 0, time.monotonic()
        while not self.stopping.is_set():
            due = start + i / self.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            op = Op(self.rng.choices(KINDS, WEIGHTS)[0], due)
            self.ops.append(op)
            self.todo.put(op)
            i += 1
        for _ in range(self.workers):
            self.todo.put(None)

    def _work(self, conn: psycopg.Connection) -> None:
        rng = random.Random(self.rng.random())
        with conn:
            while (op := self.todo.get()) is not None:
                op.started = time.monotonic()
                try:
                    getattr(self, f"_{op.kind}")(conn, rng)
                    conn.commit()
                except psycopg.Error as exc:
                    op.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                    conn.rollback()
                op.ended = time.monotonic()

    def _watch(self) -> None:
        with psycopg.connect(self.uri, autocommit=True) as conn:
            while not self.stopping.wait(0.02):
                for row in conn.execute(WAITS, {"app": APP_NAME}).fetchall():
                    self.lock_waits.append((time.monotonic() - self.started, *row))

    def _team(self, rng: random.Random) -> tuple[int, int]:
        return rng.choice(self.teams)

    def _user(self, rng: random.Random) -> int:
        return rng.randint(*self.users)

    def _read_page(self, conn: psycopg.Connection, rng: random.Random) -> None:
        args = {"team": self._team(rng)[0]}
        for query in (READ_TEAM, READ_SCHEDULE, READ_MESSAGES):
            conn.execute(query, args).fetchall()

    def _poll(self, conn: psycopg.Connection, rng: random.Random) -> None:
        conn.execute(
            "INSERT INTO polls (team_id, created_by, question) VALUES (%s, %s, 'Who can play Saturday?')",
            (self._team(rng)[0], self._user(rng)),
        )

    def _captain_message(self, conn: psycopg.Connection, rng: random.Random) -> None:
        conn.execute(
            "INSERT INTO captain_messages (team_id, captain_user_id, message) VALUES (%s, %s, 'Bring new balls')",
            (self._team(rng)[0], self._user(rng)),
        )

    def _practice_time(self, conn: psycopg.Connection, rng: random.Random) -> None:
        team, league = self._team(rng)
        conn.execute(
            "INSERT INTO practice_times (team_id, day_of_week, start_time, end_time, location, league_id) "
            "VALUES (%s, %s, '19:00', '20:30', %s, %s)",
            (team, rng.choice(DAYS), f"App court {uuid.uuid4().hex[:12]}", league),
        )

    def _membership(self, conn: psycopg.Connection, rng: random.Random) -> None:
        user = conn.execute(
            "INSERT INTO users (email) VALUES (%s) RETURNING id", (f"app-{uuid.uuid4().hex}@example.com",)
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO team_memberships (user_id, team_id, is_primary) VALUES (%s, %s, true)",
            (user, self._team(rng)[0]),
        )
