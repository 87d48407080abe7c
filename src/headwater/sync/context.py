"""What a source's ``sync`` is asked to do."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import duckdb

from headwater.errors import HeadwaterError
from headwater.sqltext import ident, one_value

DELETED_AT = "_headwater_deleted_at"  # raw's column marking rows deleted in the source (deletes: tombstone)

Progress = Callable[[str, int, int | None], None]  # (table, rows done so far, rows expected or None)
Reader = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection | None]]  # see `RawTarget.load_full`


class RawTarget:
    """How the warehouse's raw tables hold the DuckDB types the sync reads, where that differs by
    engine: DuckDB holds them as they are. A server warehouse the sync writes through a DuckDB
    scanner (warehouse/postgres/) says which type each becomes there, so raw's columns are compared
    with what the warehouse reports back, and values are cast exactly before they leave DuckDB."""

    # Whether the sync checkpoints the build database when it is done (DuckDB's file). A server
    # warehouse's commits are durable by themselves, and DuckDB's CHECKPOINT of an attached
    # PostgreSQL catalog is PostgreSQL's own: a forced flush of the whole server.
    checkpoints = True
    # The longest name (in bytes) the warehouse keeps as written; None: no limit that matters.
    # PostgreSQL cuts longer names to 63 bytes, so two tables alike in their first 63 would be one.
    max_identifier: int | None = None

    def stored_type(self, duck_type: str) -> str:
        """The DuckDB type a column of ``duck_type`` has in raw, as the warehouse reports it back."""
        return duck_type

    def store(self, value: str, duck_type: str) -> str:
        """A DuckDB expression turning ``value``, of ``duck_type``, into its `stored_type` (when that differs)."""
        return f"CAST(({value}) AS {self.stored_type(duck_type)})"

    def refused(self, stored_type: str) -> list[tuple[str, str]]:
        """Values of ``stored_type`` (a `stored_type` answer) this warehouse would store as other
        values, or fail on: for each kind, a DuckDB condition over ``{c}`` true for such a value, and
        what it is (the sync stops with an error naming table, column and key). Empty: every value
        is stored as it is."""
        return []

    def load_full(self, con: duckdb.DuckDBPyConnection, schema: str, table: str, rows: str, reader: Reader) -> int:
        """Replace raw's ``schema.table`` with ``rows`` (a DuckDB SELECT), inside the table's
        transaction; returns the rows written (the count the table was made with: no second pass).
        ``reader`` opens a second connection reading the source in the same snapshot, when the
        source offers one (`SqlSource.snapshot_reader`), for a warehouse that writes better apart."""
        return int(one_value(con.execute(f"CREATE OR REPLACE TABLE {ident(schema)}.{ident(table)} AS {rows}")))

    def alter_type(self, con: duckdb.DuckDBPyConnection, target: str, column: str, duck_type: str) -> None:
        """Widen raw's ``column`` of ``target`` (a quoted schema.table) to ``duck_type``, inside the table's transaction."""
        con.execute(f"ALTER TABLE {target} ALTER COLUMN {ident(column)} SET DATA TYPE {duck_type}")

    def delete_matching(self, con: duckdb.DuckDBPyConnection, target: str, rows: str, key: list[str]) -> None:
        """Delete from raw's ``target`` every row whose ``key`` (NULLs matching NULLs) is that of a row of ``rows`` (a DuckDB table)."""
        match = " AND ".join(f"{target}.{ident(k)} IS NOT DISTINCT FROM c.{ident(k)}" for k in key)
        con.execute(f"DELETE FROM {target} USING {rows} c WHERE {match}")

    def count(self, con: duckdb.DuckDBPyConnection, target: str, where: str = "") -> int:
        """The rows of raw's ``target`` (a quoted schema.table) matching ``where`` (a condition both
        DuckDB and the warehouse read alike), as the table's transaction sees them."""
        return int(one_value(con.execute(f"SELECT count(*) FROM {target}" + (f" WHERE {where}" if where else ""))))

    def delete_gone(self, con: duckdb.DuckDBPyConnection, target: str, keys_table: str, key: list[str], *, tombstone: bool) -> int:
        """Delete (or with ``tombstone`` mark deleted) every row of raw's ``target`` whose ``key`` is
        not in ``keys_table`` (the source's keys, NULLs matching NULLs); returns how many."""
        gone = gone_condition(target, keys_table, key)
        if tombstone:
            return int(one_value(con.execute(f"UPDATE {target} SET {DELETED_AT} = now() WHERE {DELETED_AT} IS NULL AND {gone}")))
        return int(one_value(con.execute(f"DELETE FROM {target} WHERE {gone}")))

    def before_commit(self, con: duckdb.DuckDBPyConnection, change: Change) -> None:
        """Called once a table's rows are written, inside its transaction, just before its state is
        saved and it commits: a warehouse that keeps raw elsewhere too sends the change there now,
        so that a failure rolls the table's transaction back with it. DuckDB's raw is here already."""

    def after_commit(self, con: duckdb.DuckDBPyConnection, change: Change) -> None:
        """Called once the table's transaction committed (``change`` as `before_commit` saw it): work
        that reads the committed table, for a warehouse whose state (`before_commit` saved it) says
        it is not done until then. An error here fails the table, its local rows committed."""

    def dropped(self, con: duckdb.DuckDBPyConnection, source: str, schema: str, table: str) -> None:
        """Called inside the transaction that drops raw's ``schema.table`` and its state (prune)."""

    def rolled_back(self, con: duckdb.DuckDBPyConnection) -> None:
        """Called after a table's transaction was rolled back, on the same connection."""

    def failure(self, exc: duckdb.Error, schema: str) -> HeadwaterError | None:
        """The warehouse's own error for ``exc``, met syncing a table into ``schema``, when it was the
        warehouse that failed (a write refused); None: the source's to explain. DuckDB's warehouse
        shares the process: its failures are told apart where they happen (`sync.sql`)."""
        return None


def gone_condition(target: str, keys_table: str, key: list[str]) -> str:
    """True for a row of raw's ``target`` whose ``key`` is not in ``keys_table`` (NULLs matching NULLs)."""
    return f"NOT EXISTS (SELECT 1 FROM {keys_table} k WHERE " + " AND ".join(f"k.{ident(c)} IS NOT DISTINCT FROM {target}.{ident(c)}" for c in key) + ")"


@dataclass
class Change:
    """One table's transaction, as it is about to commit (`RawTarget.before_commit`)."""

    source: str
    schema: str  # raw_<source>
    table: str
    key: list[str]  # empty: no key (a full load, or rows only appended)
    previous: dict[str, Any] | None  # the table's state when the transaction began (None: none, or a full refresh)
    state: dict[str, Any]  # the state about to be saved with the rows; a target may add to it
    full: bool  # the table was replaced as a whole (else: rows written now, keys deleted now)
    also: list[str] = field(default_factory=list)  # tables of the same schema replaced with it (a file's quarantine)
    log: Callable[[str], None] = lambda _: None


@dataclass
class SyncContext:
    con: duckdb.DuckDBPyConnection  # the build database; the caller holds the project's writer lock
    log: Callable[[str], None] = lambda _: None
    tables: list[str] | None = None  # only these tables of the source (default: every configured table)
    full_refresh: bool = False  # ignore saved state and reload every selected table
    progress: Progress | None = None
    prune: bool = False  # drop raw tables the source no longer has (or no longer selects), with their state
    memory_limit: str | None = None  # warehouse.memory_limit: the sync's DuckDB limit too (default: `sync.sql.sync_memory_limit`)
    target: RawTarget = field(default_factory=RawTarget)  # the warehouse's raw tables (DuckDB's own: types as they are)

    def report(self, table: str, done: int, expected: int | None = None) -> None:
        if self.progress is not None:
            self.progress(table, done, expected)
