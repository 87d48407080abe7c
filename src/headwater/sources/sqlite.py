"""SQLite files, read through DuckDB's sqlite scanner (no rows pass through Python).

A SQLite file is local and cheap to read in full, so tables with a key sync by comparison (read
everything, write only rows that differ, delete keys that are gone): exact whatever the application
does with its timestamps. A cursor can still be set per table for very large files.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import duckdb

from headwater.config.sources import SQLiteSource as Settings
from headwater.errors import ConfigError, HeadwaterError, TransientFailure
from headwater.sync.sql import Column, SqlSource, TableInfo, ql
from headwater.warehouse import require_extension


class SQLiteSource(SqlSource):
    kind = "sqlite"
    settings: Settings

    def __init__(self, name: str, settings: Settings, root: Path) -> None:
        super().__init__(name, settings)
        self.path = (root / settings.path).resolve()

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        self._check_file()
        require_extension(con, "sqlite")
        con.execute(f"ATTACH {ql(str(self.path))} AS {self.alias} (TYPE sqlite, READ_ONLY)")

    def discover(self, con: duckdb.DuckDBPyConnection, names: list[str] | None) -> dict[str, TableInfo]:
        tables: dict[str, TableInfo] = {}
        with self._catalog() as catalog:
            present = catalog.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name").fetchall()
            for name, kind in present:
                if names is not None and name not in names:
                    continue
                try:  # a view over a table that is gone fails here: that view fails, the rest sync
                    described = con.execute(f"DESCRIBE SELECT * FROM {self.alias}.main.{self.quote(name)}").fetchall()
                    declared = {row[1]: (row[2] or "", row[5]) for row in catalog.execute(f"PRAGMA table_info({self.quote(name)})")}
                except (duckdb.Error, sqlite3.Error) as exc:
                    error = self.connection_error(exc)
                    tables[name] = TableInfo(name, [], kind=kind, error=type(error)(f"{error.what} (reading {kind} {name})", why=error.why, fix=error.fix))
                    continue
                columns = [Column(r[0], r[1], declared.get(r[0], ("", 0))[0] or r[1]) for r in described]
                key = [c for c, _ in sorted(((n, pk) for n, (_, pk) in declared.items() if pk), key=lambda item: item[1])]
                tables[name] = TableInfo(name, columns, key, [], kind, parallel_ok=True)
        return tables

    def connection_error(self, exc: Exception) -> HeadwaterError:
        text = str(exc)
        if "locked" in text.lower() or "busy" in text.lower():
            return TransientFailure(f"Source '{self.name}': {self.path} is locked by another program", why=_first_line(text), fix="This usually passes; the run is retried.")
        return HeadwaterError(
            f"Source '{self.name}': SQLite error reading {self.path}", why=_first_line(text), fix="See SQLite's message above: fix the table or view in the file, or leave it out with tables: exclude."
        )

    def size_expr(self, info: TableInfo, column: Column) -> str:
        return f"length(CAST({self.quote(column.name)} AS BLOB))"

    def greatest(self, values: str) -> str:
        return f"max({values}, 0)"  # max() of two or more arguments is SQLite's greatest (of one, an aggregate)

    def qualified(self, table: str) -> str:
        return self.quote(table)

    def query(self, con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
        """A SELECT in SQLite's own dialect, on a read-only connection of its own."""
        try:
            with self._catalog() as catalog:
                return catalog.execute(sql).fetchall()
        except sqlite3.Error as exc:
            raise self.connection_error(exc) from None

    def relation(self, con: duckdb.DuckDBPyConnection, table: TableInfo, *, where: str | None = None, columns: list[str] | None = None, parallel: bool = True) -> str:
        wanted = ", ".join(self.quote(c.name) for c in table.columns if columns is None or c.name in columns)
        return f"(SELECT {wanted} FROM {self.alias}.main.{self.quote(table.name)}" + (f" WHERE {where})" if where else ")")

    def count_relation(self, table: TableInfo) -> str:
        return f"(SELECT count(*) FROM {self.alias}.main.{self.quote(table.name)})"

    def _catalog(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)

    def _check_file(self) -> None:
        if not self.path.is_file():
            raise ConfigError(
                f"Source '{self.name}': SQLite file {self.path} does not exist",
                fix=f"Fix sources.{self.name}.path in headwater.yml (relative paths start at the project folder).",
            )
        try:
            with self._catalog() as probe:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc).lower():
                raise TransientFailure(f"Source '{self.name}': {self.path} is locked by another program", why=str(exc), fix="This usually passes; the run is retried.") from None
            raise HeadwaterError(f"Source '{self.name}': cannot read {self.path}", why=str(exc), fix="Check the file's permissions and that it is a SQLite database.") from None
        except sqlite3.DatabaseError as exc:
            raise HeadwaterError(f"Source '{self.name}': {self.path} is not a readable SQLite database", why=str(exc), fix="Point the source at a SQLite file.") from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)[:500]
