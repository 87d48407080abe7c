"""Which errors of a run's own machinery may pass by themselves (the attempt is retried, exit 75)
and which will not: the system database, the warehouse, the operating system. Sources classify
their own errors where they raise them (sources/*.py).

Decided by the error's type, or the code its driver gives it, the way dlt sorts exceptions into
terminal and transient ones. Only where a driver gives no code is its message read, in one place
(`_DRIVER_WORDS`)."""

from __future__ import annotations

import sqlite3
import sys

import duckdb
from sqlalchemy import exc as sa

# The operating system's and SQLAlchemy's own: a connection reset or refused, a time-out, a
# connection pool with none free in time, a connection found dropped.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, sa.TimeoutError, sa.DisconnectionError)

# Failures of the machine or the data files rather than of Headwater's code: reported as a failed run
# (transient or not, by `is_transient`), never as a bug.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (duckdb.Error, OSError, sa.SQLAlchemyError)

SQLITE_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})  # another connection holds the lock
POSTGRES_TRANSIENT_SQLSTATES = frozenset({"55P03", "57014"})  # lock_not_available (lock timeout), query_canceled (statement timeout)
MYSQL_TRANSIENT_CODES = frozenset({1205})  # ER_LOCK_WAIT_TIMEOUT
MYSQL_CLIENT_CODES = range(2000, 3000)  # raised by the client library, about the connection

# The one place an error's words decide a retry: errors whose driver gives them no code.
# - DuckDB raises a plain IOException when another process holds the database file
#   ('IO Error: Could not set lock on file "...": Conflicting lock is held in ...'), and its
#   httpfs one on a network time-out ("... timeout").
# - psycopg raises OperationalError without a SQLSTATE when the connection itself fails
#   ("connection timeout expired", "... Connection reset by peer").
# - PyMySQL's client-side errors (codes 2000-2999) cover a reset and a wrong host alike
#   ("Lost connection to MySQL server during query ([Errno 104] Connection reset by peer)").
_DRIVER_WORDS = ("could not set lock", "timeout", "connection reset")


def is_transient(exc: BaseException) -> bool:
    """Whether a retry of the run may succeed where ``exc`` stopped it."""
    if isinstance(exc, TRANSIENT_TYPES):
        return True
    if isinstance(exc, sa.DBAPIError):  # SQLAlchemy's wrapper: the driver's error says
        return exc.connection_invalidated or (exc.orig is not None and is_transient(exc.orig))
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in SQLITE_BUSY_CODES  # extended codes keep the primary one in the low byte
    if isinstance(exc, duckdb.Error):
        return _says_transient(exc)
    return _postgres_transient(exc) or _mysql_transient(exc)


def _postgres_transient(exc: BaseException) -> bool:
    psycopg = sys.modules.get("psycopg")  # loaded only when a PostgreSQL database is used
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate is None:
        return isinstance(exc, psycopg.OperationalError) and _says_transient(exc)
    return exc.sqlstate in POSTGRES_TRANSIENT_SQLSTATES


def _mysql_transient(exc: BaseException) -> bool:
    pymysql = sys.modules.get("pymysql")  # loaded only when a MySQL database is used
    if pymysql is None or not isinstance(exc, pymysql.err.MySQLError):
        return False
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in MYSQL_CLIENT_CODES:
        return _says_transient(exc)
    return code in MYSQL_TRANSIENT_CODES


def _says_transient(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(words in text for words in _DRIVER_WORDS)
