"""One SQLite source for the SQLite sync tests: a file, its settings, a sync in this process, raw read back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import duckdb
from warehouses import Target

from headwater.config.sources import SQLiteSettings
from headwater.sources.sqlite import SQLiteSource
from headwater.sync import sync_source
from headwater.sync.stats import TableStats
from headwater.warehouse import connect


class Harness:
    """A SQLite file (``file``), synced as source ``app`` in this process into a DuckDB file
    (``warehouse``), or with a PostgreSQL or BigQuery ``target`` into that warehouse through its engine (tests/warehouses.py)."""

    def __init__(self, tmp: Path, target: Target | None = None) -> None:
        self.tmp = tmp
        self.file = tmp / "app.db"
        self.warehouse = tmp / "build.duckdb"
        self.target = target or Target("duckdb")

    def sql(self, *statements: str, rows: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.file) as con:
            for statement in statements[:-1]:
                con.execute(statement)
            if rows is not None:
                con.executemany(statements[-1], rows)
                return []
            return con.execute(statements[-1]).fetchall()

    def sync(self, full_refresh: bool = False, prune: bool = False, **extra: Any) -> dict[str, TableStats]:
        config = SQLiteSettings.model_validate({"type": "sqlite", "path": self.file.name, **extra})
        if self.target.through_engine:
            return {s.table: s for s in self.target.sync(self.tmp, "app", config, full_refresh=full_refresh, prune=prune)}
        con = connect(self.warehouse)
        try:
            return {s.table: s for s in sync_source(con, SQLiteSource("app", config, self.tmp), full_refresh=full_refresh, prune=prune)}
        finally:
            con.close()

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.target.through_engine:
            return self.target.query(self.tmp, sql)
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def raw(self, table: str, columns: str = "* EXCLUDE (_headwater_synced_at)") -> list[tuple[Any, ...]]:
        return self.query(f'SELECT {columns} FROM raw_app."{table}" ORDER BY 1')

    def types(self, table: str) -> dict[str, str]:
        return dict(self.query(f"SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'raw_app' AND table_name = '{table}'"))
