"""DuckDB's own verdict on text a project file holds: SQL (charts, measures), RE2 regexes (file
columns' rules) and memory limits. The one module of config/ that imports DuckDB; it opens no
database, only DuckDB's parser and settings.

Opening a DuckDB connection per check cost ~8 ms, and a project with dashboards checks dozens of
expressions on every load, so each process parses with one in-memory connection, opened on first
use. It is this module's one piece of state: `sql_parser()` hands it out, `SqlParser` owns the
connection, a lock (a connection is used by one thread at a time) and the process id it was opened
in (a forked child opens its own rather than share its parent's).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any


class ParseError(ValueError):
    """DuckDB could not parse the SQL (its message)."""


class SqlParser:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._con: Any = None  # a duckdb connection, opened by the process whose id is _pid
        self._pid: int | None = None

    def statements(self, sql: str) -> list[Any]:
        """DuckDB's parse of ``sql``: its statements (ParseError when it does not parse)."""
        import duckdb

        with self._lock:
            try:
                return self._connection().extract_statements(sql)  # type: ignore[no-any-return]
            except duckdb.Error as exc:
                raise ParseError(str(exc)) from None

    def regex_error(self, pattern: str) -> str | None:
        """Why DuckDB's RE2 refuses ``pattern`` (None when it is valid): rules run there, not in Python's re."""
        import duckdb

        with self._lock:
            try:
                self._connection().execute("SELECT regexp_full_match('', ?)", [pattern]).fetchone()
            except duckdb.Error as exc:
                return str(exc).splitlines()[0]
        return None

    def _connection(self) -> Any:
        import duckdb  # loaded when the first text is checked, not when config is imported

        if self._pid != os.getpid():
            self._con, self._pid = duckdb.connect(config={"threads": 1}), os.getpid()
        return self._con


@functools.cache
def sql_parser() -> SqlParser:
    """This process's parser (one per process: see the module's docstring)."""
    return SqlParser()


def is_select(statement: Any) -> bool:
    import duckdb

    return bool(statement.type == duckdb.StatementType.SELECT)  # type: ignore[attr-defined]  # the stubs lack the enum members


def memory_limit_error(value: str) -> str | None:
    """Why DuckDB refuses ``value`` as its memory limit (None when it takes it)."""
    import duckdb

    try:
        duckdb.connect(config={"memory_limit": value}).close()
    except duckdb.Error as exc:
        return str(exc).splitlines()[0]
    return None
