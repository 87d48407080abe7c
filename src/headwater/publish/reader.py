"""Read published data: what exports and dashboards see, and nothing else."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from headwater.errors import NotFound
from headwater.warehouse import WarehouseEngine

BATCH_ROWS = 64_000
_OWN = "database_name = current_database() AND schema_name = 'main' AND NOT internal"  # the snapshot's tables


@dataclass(frozen=True)
class Column:
    name: str
    type: str


class PublishedData:
    """Read-only access to the current published snapshot.

    One DuckDB connection per snapshot is kept and shared by threads through cursors; when a run
    switches the pointer, the next query opens the new snapshot and the old connection is dropped.

    The connection can read its snapshot and nothing else: DuckDB's file system access
    (``read_csv``, ``ATTACH``, ``COPY``, extension loading) and its scans of Python variables are
    switched off when it opens. A dashboard's SQL is its author's, and on an install with many
    organisations that author must not reach another organisation's files, nor the server's.
    """

    def __init__(self, warehouse: WarehouseEngine) -> None:
        self.warehouse = warehouse
        self._lock = threading.Lock()
        self._snapshot: Path | None = None
        self._con: duckdb.DuckDBPyConnection | None = None

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._connection()
        cursor = con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def _connection(self) -> duckdb.DuckDBPyConnection:
        snapshot = self.warehouse.current_snapshot()
        if snapshot is None:
            raise NotFound("Nothing has been published yet", why="published data appears only after a run succeeds", fix="Run `headwater run`.")
        with self._lock:
            if snapshot != self._snapshot or self._con is None:
                con = self.warehouse.open_snapshot(snapshot)
                con.execute("SET python_enable_replacements = false")
                con.execute("SET enable_external_access = false")  # cannot be switched back on
                self._con, self._snapshot = con, snapshot
            return self._con

    @property
    def is_open(self) -> bool:
        return self._con is not None

    def release(self) -> None:
        """Let go of the snapshot's connection to free its memory (the next query opens it again).
        Unlike `close`, queries in flight finish: their cursors keep the database open until they end."""
        with self._lock:
            self._con, self._snapshot = None, None

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con, self._snapshot = None, None

    def tables(self) -> list[str]:
        """The published tables: the snapshot's own, never DuckDB's catalog views (``sqlite_master``,
        ``pragma_database_list``, ``duckdb_settings``...), which also answer to a bare name."""
        with self.cursor() as cur:
            return [r[0] for r in cur.execute(f"SELECT table_name FROM duckdb_tables() WHERE {_OWN} ORDER BY 1").fetchall()]

    def columns(self, table: str) -> list[Column]:
        """A published table's columns; NotFound for any other name (see `tables`)."""
        with self.cursor() as cur:
            rows = cur.execute(
                f"SELECT column_name, data_type FROM duckdb_columns() WHERE {_OWN} AND table_name = ? ORDER BY column_index", [table]
            ).fetchall()
        if not rows:
            raise NotFound(f"No published table named '{table}'", fix=f"Published tables: {', '.join(self.tables()) or 'none yet'}.")
        return [Column(n, t) for n, t in rows]

    @contextmanager
    def stream(self, sql: str, params: Sequence[object] = ()) -> Iterator[pa.RecordBatchReader]:
        """A query's result as Arrow batches: memory stays bounded whatever the row count."""
        with self.cursor() as cur:
            yield cur.execute(sql, list(params)).fetch_record_batch(BATCH_ROWS)

    def table_query(self, table: str) -> str:
        self.columns(table)  # raises NotFound for unknown names; the name is then safe to quote
        return f'SELECT * FROM "{table}"'
