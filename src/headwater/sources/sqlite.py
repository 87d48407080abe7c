"""SQLite files, read through DuckDB's sqlite scanner (no rows pass through Python)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import duckdb

from headwater.config.model import SQLiteSource as Settings
from headwater.errors import ConfigError, HeadwaterError, NotFound, TransientFailure
from headwater.sources.base import SourceTable
from headwater.sync import SYNCED_AT, SyncContext, TableStats, raw_schema
from headwater.warehouse import require_extension


class SQLiteSource:
    def __init__(self, name: str, settings: Settings, root: Path) -> None:
        self.name = name
        self.settings = settings
        self.path = (root / settings.path).resolve()
        self.alias = f"hw_src_{name}"

    def attach(self, con: duckdb.DuckDBPyConnection) -> list[SourceTable]:
        self._check_file()
        require_extension(con, "sqlite")
        con.execute(f"ATTACH '{str(self.path).replace(chr(39), chr(39) * 2)}' AS {self.alias} (TYPE sqlite, READ_ONLY)")
        present = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ? ORDER BY table_name", [self.alias]).fetchall()]
        wanted = present if self.settings.tables == "*" else list(self.settings.tables)
        missing = sorted(set(wanted) - set(present))
        if missing:
            self.detach(con)
            raise NotFound(
                f"Source '{self.name}': table(s) {', '.join(missing)} not found in {self.path}",
                why=f"the file has: {', '.join(present) or 'no tables'}",
                fix=f"Fix sources.{self.name}.tables in headwater.yml.",
            )
        return [SourceTable(t, f'{self.alias}.main."{t}"') for t in wanted]

    def sync(self, ctx: SyncContext) -> list[TableStats]:
        """Full refresh of every table, all in one transaction (replaced by the SQL engine's modes)."""
        con = ctx.con
        schema = raw_schema(self.name)
        tables = self.attach(con)
        if ctx.tables is not None:
            tables = [t for t in tables if t.name in ctx.tables]
        stats: list[TableStats] = []
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            for table in tables:
                started = time.perf_counter()
                con.execute(f'CREATE OR REPLACE TABLE "{schema}"."{table.name}" AS SELECT *, now() AS {SYNCED_AT} FROM {table.relation}')
                rows = con.execute(f'SELECT count(*) FROM "{schema}"."{table.name}"').fetchone()[0]
                stats.append(TableStats(table.name, rows, round(time.perf_counter() - started, 3), rows_read=rows, upserted=rows))
                ctx.log(f"source {self.name}: table {table.name}: {rows:,} rows loaded into {schema}.{table.name}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            self.detach(con)
        return stats

    def detach(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"DETACH DATABASE IF EXISTS {self.alias}")

    def _check_file(self) -> None:
        if not self.path.is_file():
            raise ConfigError(
                f"Source '{self.name}': SQLite file {self.path} does not exist",
                fix=f"Fix sources.{self.name}.path in headwater.yml (relative paths start at the project folder).",
            )
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as probe:
                probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc).lower():
                raise TransientFailure(f"Source '{self.name}': {self.path} is locked by another program", why=str(exc), fix="This usually passes; the run is retried.") from None
            raise HeadwaterError(f"Source '{self.name}': cannot read {self.path}", why=str(exc), fix="Check the file's permissions and that it is a SQLite database.") from None
        except sqlite3.DatabaseError as exc:
            raise HeadwaterError(f"Source '{self.name}': {self.path} is not a readable SQLite database", why=str(exc), fix="Point the source at a SQLite file.") from None
