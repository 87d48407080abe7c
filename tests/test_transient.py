"""Which errors of a run's own machinery (the system database, the warehouse, the operating system)
are transient — retried, exit 75 — and which are terminal: by type or driver code, the way dlt sorts
terminal and transient exceptions; DuckDB's lock and time-out errors are recognised by their text,
the one place that is so (orchestrate/transient.py). Sources classify their own errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg
import pymysql
import pytest
from sqlalchemy import exc as sa

from headwater.orchestrate.transient import is_transient


def wrapped(orig: BaseException) -> sa.DBAPIError:
    """The error as SQLAlchemy raises it around the driver's."""
    return sa.OperationalError("INSERT INTO runs ...", {}, orig)  # type: ignore[arg-type]


def sqlite_busy(tmp_path: Path) -> sqlite3.OperationalError:
    holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # another process writing to the system database
    try:
        sqlite3.connect(tmp_path / "s.db", timeout=0).execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        holder.close()
    raise AssertionError("the write was not refused")


def duckdb_lock(tmp_path: Path) -> duckdb.Error:
    """What DuckDB raises when another process holds the database file."""
    path = str(tmp_path / "held.duckdb")
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({path!r}); print('held', flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        duckdb.connect(path)
    except duckdb.Error as exc:
        return exc
    finally:
        holder.kill()
        holder.wait()
    raise AssertionError("the file was not locked")


def test_a_busy_sqlite_database_is_transient_by_its_code(tmp_path: Path) -> None:
    busy = sqlite_busy(tmp_path)
    assert is_transient(busy) and is_transient(wrapped(busy))


def test_a_duckdb_file_held_by_another_process_is_transient(tmp_path: Path) -> None:
    held = duckdb_lock(tmp_path)
    assert "Could not set lock" in str(held) and is_transient(held)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        sa.TimeoutError("QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00"),
        sa.DisconnectionError("the connection was dropped"),
        wrapped(psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")),
        wrapped(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")),
        wrapped(psycopg.OperationalError("connection timeout expired")),  # at connect: no SQLSTATE
        wrapped(psycopg.OperationalError("server closed the connection unexpectedly: connection reset")),
        wrapped(pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction")),
        wrapped(pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query ([Errno 104] Connection reset by peer)")),
        duckdb.IOException("IO Error: Could not set lock on file \"/x/build.duckdb\": Conflicting lock is held in python (PID 7)"),
        duckdb.HTTPException("HTTP GET error on 'https://x/y.parquet': timeout"),
    ],
    ids=repr,
)
def test_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(2, "No such file or directory"),
        PermissionError(13, "Permission denied"),
        IsADirectoryError(21, "Is a directory"),
        sqlite3.OperationalError("no such table: runs"),
        wrapped(sqlite3.OperationalError("no such table: runs")),
        sa.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        sa.ArgumentError("Could not parse SQLAlchemy URL"),
        wrapped(psycopg.errors.InvalidPassword("password authentication failed for user \"etl\"")),
        wrapped(psycopg.OperationalError("connection failed: password authentication failed for user \"etl\"")),
        wrapped(psycopg.errors.UndefinedTable("relation \"runs\" does not exist")),
        wrapped(pymysql.err.OperationalError(1045, "Access denied for user 'etl'@'x'")),
        duckdb.IOException("IO Error: Cannot open file \"/x/build.duckdb\": Permission denied"),
        duckdb.CatalogException("Catalog Error: Table with name t does not exist!"),
        duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block"),
        ValueError("timeout"),  # not an error of the run's machinery: never by its words
    ],
    ids=repr,
)
def test_terminal(error: BaseException) -> None:
    assert not is_transient(error)


def test_the_run_turns_a_transient_error_into_exit_75(tmp_path: Path) -> None:
    from headwater.errors import ExitCode, TransientFailure
    from headwater.orchestrate.run import _environment_failure

    class Recorder:
        id, current_step = 7, "sync:crm"

    failure = _environment_failure(wrapped(sqlite_busy(tmp_path)), Recorder())  # type: ignore[arg-type]
    assert isinstance(failure, TransientFailure) and failure.exit_code == ExitCode.TRANSIENT
    assert "Run 7 failed in step sync:crm" in failure.what and "database is locked" in (failure.why or "")
    assert not isinstance(_environment_failure(FileNotFoundError(2, "No such file"), Recorder()), TransientFailure)  # type: ignore[arg-type]
