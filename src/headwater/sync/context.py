"""What a source's ``sync`` is asked to do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

Progress = Callable[[str, int, int | None], None]  # (table, rows done so far, rows expected or None)


@dataclass
class SyncContext:
    con: duckdb.DuckDBPyConnection  # the build database; the caller holds the project's writer lock
    log: Callable[[str], None] = lambda _: None
    tables: list[str] | None = None  # only these tables of the source (default: every configured table)
    full_refresh: bool = False  # ignore saved state and reload every selected table
    progress: Progress | None = None
    prune: bool = False  # drop raw tables the source no longer has (or no longer selects), with their state
    memory_limit: str | None = None  # warehouse.memory_limit: the sync's DuckDB limit too (default: `sync.sql.sync_memory_limit`)

    def report(self, table: str, done: int, expected: int | None = None) -> None:
        if self.progress is not None:
            self.progress(table, done, expected)
