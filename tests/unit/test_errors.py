"""The one error policy: every error is terminal (no retry) or transient (retried), decided on the
two bases alone; database errors are sorted by SQLSTATE in one place."""

from __future__ import annotations

import psycopg
import pytest

from league_import import errors
from league_import.errors import (
    ConcurrentRunError,
    ConfigError,
    ConstraintError,
    CountMismatchError,
    DecisionError,
    GuardError,
    HealthCheckError,
    LockBusyError,
    SourceError,
    TerminalDatabaseError,
    TerminalError,
    TransientDatabaseError,
    TransientError,
    from_database,
    is_transient,
)


@pytest.mark.parametrize(
    "error",
    [SourceError, ConfigError, GuardError, ConstraintError, CountMismatchError, ConcurrentRunError, DecisionError],
)
def test_domain_errors_are_terminal(error):
    assert issubclass(error, TerminalError) and not issubclass(error, TransientError)


def test_health_errors_are_terminal_and_keep_their_report():
    failed = HealthCheckError("1 check failed", {"status": "error"})
    assert isinstance(failed, TerminalError) and failed.report == {"status": "error"}


def test_a_busy_lock_is_transient():
    assert issubclass(LockBusyError, TransientError)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (psycopg.errors.SerializationFailure(), True),
        (psycopg.errors.DeadlockDetected(), True),
        (psycopg.errors.LockNotAvailable(), True),
        (psycopg.errors.QueryCanceled(), True),
        (psycopg.errors.AdminShutdown(), True),
        (psycopg.errors.TooManyConnections(), True),
        (psycopg.errors.UniqueViolation(), True),  # a race with the app's own writes
        (psycopg.OperationalError("connection lost"), True),
        (psycopg.InterfaceError("connection already closed"), True),
        (psycopg.errors.ProgramLimitExceeded(), False),  # an index row too large: fails again
        (psycopg.errors.NumericValueOutOfRange(), False),
        (psycopg.errors.UndefinedTable(), False),
        (psycopg.errors.NotNullViolation(), False),
        (psycopg.errors.CharacterNotInRepertoire(), False),
    ],
)
def test_database_errors_are_sorted_by_sqlstate(exc, transient):
    assert is_transient(exc) is transient
    sorted_exc = from_database(exc)
    assert isinstance(sorted_exc, TransientDatabaseError if transient else TerminalDatabaseError)


def test_sorted_database_errors_keeps_the_cause():
    with pytest.raises(TerminalDatabaseError) as caught, errors.sorted_database_errors():
        raise psycopg.errors.UndefinedColumn("column x does not exist")
    assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedColumn)
    assert "UndefinedColumn (42703)" in str(caught.value)
