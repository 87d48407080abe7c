"""Run a check's query on the warehouse or, read-only, on a source in the source's own SQL dialect.

One function per kind of source, registered by the settings class it serves; adding PostgreSQL or
MySQL sources means adding one `@source_runner(PostgresSettings)` function that opens a read-only
connection (e.g. ``SET TRANSACTION READ ONLY``), runs the SQL and turns the driver's errors into
`QueryError`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import duckdb

from headwater.config.model import LoadedProject
from headwater.config.sources import MySQLSettings, PostgresSettings, SQLiteSettings
from headwater.errors import HeadwaterError
from headwater.warehouse.base import WarehouseEngine
from headwater.warehouse.duckdb.warehouse import rows_rolled_back

Rows = tuple[list[str], list[tuple[Any, ...]]]  # column names, rows
Runner = Callable[[LoadedProject, str, Any, str], Rows]  # (project, source name, settings, sql)

_RUNNERS: dict[type, Runner] = {}


class QueryError(Exception):
    """The database could not run the query; the text is the database's own message."""


def source_runner(settings_type: type) -> Callable[[Runner], Runner]:
    def register(function: Runner) -> Runner:
        _RUNNERS[settings_type] = function
        return function

    return register


def describe_source(project: LoadedProject, name: str | None) -> str:
    """Where a query runs, for messages: "the warehouse" or "source 'app' (sqlite)"."""
    if name is None:
        return "the warehouse"
    settings = project.config.sources.get(name)
    kind = getattr(settings, "type", None)
    return f"source '{name}' ({kind})" if kind else f"source '{name}'"


def query_source(project: LoadedProject, name: str, sql: str) -> Rows:
    settings = project.config.sources.get(name)
    if settings is None:  # the project file's validation prevents this
        raise QueryError(f"source '{name}' is not defined under sources: in headwater.yml")
    runner = _RUNNERS.get(type(settings))
    if runner is None:
        raise QueryError(f"checks cannot query {getattr(settings, 'type', type(settings).__name__)} sources yet")
    return runner(project, name, settings, sql)


def query_warehouse(build: duckdb.DuckDBPyConnection, sql: str, warehouse: WarehouseEngine | None = None) -> Rows:
    """The project's SQL on the warehouse, in the warehouse's dialect (`WarehouseEngine.project_rows`:
    DuckDB runs it itself, PostgreSQL gets it passed through, BigQuery runs it), on a session of its
    own, changing nothing: a check never changes the warehouse it gates."""
    try:
        if warehouse is None:
            return rows_rolled_back(build.cursor(), sql)
        return warehouse.project_rows(build, sql)
    except duckdb.Error as exc:
        raise QueryError(_message_before_line_pointer(str(exc))) from None
    except HeadwaterError as exc:
        raise QueryError(f"{exc.what} ({exc.why})" if exc.why else exc.what) from None


@source_runner(SQLiteSettings)
def _query_sqlite(project: LoadedProject, name: str, settings: SQLiteSettings, sql: str) -> Rows:
    path = project.path(settings.path).resolve()  # as headwater.sources.sqlite.SQLiteSource resolves it
    if not path.is_file():
        raise QueryError(f"the SQLite file {path} does not exist (fix sources.{name}.path in headwater.yml)")
    try:
        # mode=ro: SQLite itself refuses every write; as_uri() percent-encodes '?', '#' and '%' in the path.
        con = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise QueryError(f"cannot open {path}: {exc}") from None
    try:
        con.execute("PRAGMA query_only = ON")
        if project.confinement is not None:  # an organisation's SQL reads its own file, never ATTACHes the install's
            con.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        cursor = con.execute(sql)
        if cursor.description is None:
            raise QueryError("the query returned no rows and no columns (is it a SELECT?)")
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
    except sqlite3.Error as exc:
        raise QueryError(str(exc)) from None
    finally:
        con.close()
    return columns, rows


def _message_before_line_pointer(text: str) -> str:
    """DuckDB's message on one line: its first four non-blank lines before the "LINE 1: ... ^" pointer
    (which means nothing on one line), joined with spaces (unlike `errors.first_line`, which keeps only the first)."""
    lines: list[str] = []
    for line in text.strip().splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines[:4])


def _query_through_duckdb(project: LoadedProject, name: str, settings: Any, sql: str) -> Rows:
    """PostgreSQL and MySQL: the source's own SQL sent through DuckDB's scanner (``postgres_query`` /
    ``mysql_query``) on an in-memory connection: read-only, and no driver of our own to install."""
    from headwater.errors import HeadwaterError
    from headwater.sources import open_source
    from headwater.warehouse import connect, lock_down

    source = open_source(name, settings, project.root)
    con = connect(":memory:")
    try:
        try:
            source.attach(con)  # type: ignore[attr-defined]
        except HeadwaterError as exc:
            raise QueryError(exc.what + (f" ({exc.why})" if exc.why else "")) from None
        if project.confinement is not None:  # the SQL goes to the source; DuckDB itself reads no file
            lock_down(con, project.confinement)
        try:
            cursor = con.execute(f"SELECT * FROM {source.query_relation(sql)}")  # type: ignore[attr-defined]
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        except duckdb.Error as exc:
            raise QueryError(_message_before_line_pointer(str(exc))) from None
        finally:
            source.detach(con)  # type: ignore[attr-defined]
    finally:
        con.close()
    return columns, rows


source_runner(PostgresSettings)(_query_through_duckdb)
source_runner(MySQLSettings)(_query_through_duckdb)
