"""DuckDB's SQL parser, for checking the SQL a project file holds (config/model.py).

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


class SqlParser:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._con: Any = None  # a duckdb connection, opened by the process whose id is _pid
        self._pid: int | None = None

    def statements(self, sql: str) -> list[Any]:
        """DuckDB's parse of ``sql``: its statements (duckdb.Error when it does not parse)."""
        import duckdb  # loaded when the first SQL is checked, not when config is imported

        with self._lock:
            if self._pid != os.getpid():
                self._con, self._pid = duckdb.connect(config={"threads": 1}), os.getpid()
            return self._con.extract_statements(sql)  # type: ignore[no-any-return]


@functools.cache
def sql_parser() -> SqlParser:
    """This process's parser (one per process: see the module's docstring)."""
    return SqlParser()
