"""One error policy: every error of the pipeline is terminal or transient.

Terminal errors fail the same way on every try (bad input, a tripped guard, a constraint no step
can make hold, a configuration typo, a bug in SQL): the task fails at once, without retries.
Transient errors may heal (a lost connection, a lock or serialization conflict, a race with the
app): Airflow retries them with backoff. Operators decide on these two bases alone; database
errors are sorted into them here, by SQLSTATE, in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


class LeagueImportError(Exception):
    """Base of every error the pipeline raises on purpose."""


class TerminalError(LeagueImportError):
    """Fails the same way again: no retry."""


class TransientError(LeagueImportError):
    """May heal by itself: retried with backoff."""


class SourceError(TerminalError, ValueError):
    """Bad input: the message names the file or param, the record and the field."""


class ConfigError(TerminalError, ValueError):
    """A setting (Airflow Variable, environment, param) that cannot be used; names the key."""


class GuardError(TerminalError):
    """A run would do something a guard forbids (deactivate too many teams)."""


class ConstraintError(TerminalError):
    """A constraint that no step of the pipeline can make hold."""


class CountMismatchError(TerminalError):
    """A copy (backup, archive) whose row count differs from what it copies: rolled back."""


class ConcurrentRunError(TerminalError):
    """Another run holds this database: this one stops at once and changes nothing."""


class HealthCheckError(TerminalError):
    """Checks at error level: the run fails, with its report kept."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


class DecisionError(TerminalError, ValueError):
    """A decision (release, merge, alias) that cannot be applied as asked; says why."""


class LockBusyError(TransientError):
    """A lock this run needs was held by someone else for longer than the bounded wait."""


class TransientDatabaseError(TransientError):
    """A database error that may heal: a lost connection, a lock timeout, a deadlock, a race."""


class TerminalDatabaseError(TerminalError):
    """A database error that would fail again (a SQL error, a value the column refuses)."""


# SQLSTATE classes and codes that heal by themselves (PostgreSQL Appendix A).
_TRANSIENT_CLASSES = ("08", "40", "53", "57P")  # connection, rollback, resources, shutdown
_TRANSIENT_CODES = {
    "55P03",  # lock_not_available: lock_timeout
    "57014",  # query_canceled: statement or lock timeout, pg_cancel_backend
    "23505",  # unique_violation: a race with the app's own writes, healed by the retry
    "23503",  # foreign_key_violation: likewise
}


def is_transient(exc: BaseException) -> bool:
    """Whether a database error may heal on a retry."""
    if isinstance(exc, (psycopg.InterfaceError, psycopg.errors.ConnectionTimeout)):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:  # no SQLSTATE: the connection itself failed
        return isinstance(exc, psycopg.OperationalError)
    return state in _TRANSIENT_CODES or state.startswith(_TRANSIENT_CLASSES)


def from_database(exc: psycopg.Error) -> LeagueImportError:
    """The taxonomy's error for a database error, with its SQLSTATE in the message."""
    message = f"{type(exc).__name__}{f' ({exc.sqlstate})' if exc.sqlstate else ''}: {exc}".strip()
    return TransientDatabaseError(message) if is_transient(exc) else TerminalDatabaseError(message)


@contextmanager
def sorted_database_errors() -> Iterator[None]:
    """Re-raise database errors as terminal or transient (the original kept as the cause)."""
    try:
        yield
    except psycopg.Error as exc:
        raise from_database(exc) from exc
