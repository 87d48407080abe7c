"""The sync engine for SQL databases (PostgreSQL, MySQL/MariaDB, SQLite).

A `SqlSource` subclass says how to reach one kind of database (attach it to DuckDB, read its
catalog, turn a read into a relation DuckDB can SELECT from); this module decides what to read and
merges it into ``raw_<source>.<table>``. Each table is synced in one DuckDB transaction that also
writes its sync state (`headwater.sync.state`), so a sync killed at any instant leaves every table
either as it was or fully synced, state included — the next sync carries on from exactly there.
The modes and why they are exact are argued in docs/sync.md.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from headwater.config.sources import DatabaseSource, TablePatterns, TableSettings
from headwater.diskfull import disk_full
from headwater.errors import ConfigError, ExitCode, HeadwaterError, NotFound, RunFailed, TransientFailure, first_line
from headwater.sqltext import ident, literal, one_row, one_value
from headwater.sync.context import DELETED_AT, Change, RawTarget, SyncContext
from headwater.sync.engine import SYNCED_AT, check_name_fits, fitted_name, quarantine_table, raw_schema
from headwater.sync.state import (
    STATE_SCHEMA,
    drop_state,
    ensure_state_table,
    load_state,
    save_state,
)
from headwater.sync.stats import TableStats
from headwater.sync.types import normalise, reconcile

DEFAULT_TIME_LOOKBACK = dt.timedelta(hours=1)
# A full pass over a table (deletes; PostgreSQL: rows changed without a newer updated_at) costs a scan
# of the whole source table: every sync below this many rows, on this schedule above (unless set).
AUTO_PASS_ROWS = 1_000_000
AUTO_PASS_EVERY = dt.timedelta(hours=1)
# PostgreSQL through the updated_at index: how far before the oldest running transaction's start to
# read, for timestamps written by a client whose clock is a little behind the server's (docs/sync.md).
DEFAULT_INDEX_MARGIN = dt.timedelta(minutes=1)
# Comparison syncs by row hashes (`SqlSource._compare_by_hashes`): the hash column's name, the
# version of the hash's definition (state without it, or an older one, means a full comparison
# first), rows fetched per query by key, and how many changed rows make reading everything cheaper
# (over a fifth of the table, but never under HASH_FETCH_MIN nor over HASH_FETCH_MAX).
HASH_COLUMN = "_hw_hash"
HASH_VERSION = 1
HASH_FETCH_BATCH = 900  # under MariaDB's in_predicate_conversion_threshold (1,000), which makes the list a join
HASH_FETCH_MIN = 10_000
HASH_FETCH_MAX = 200_000
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


# Starts the message of an error raised while reading, by the source or by DuckDB, for a value the
# warehouse's type cannot hold (see `unfit`, `unfit_error`): it names the table, column and key.
UNFIT = "headwater-unfit: "
# The same for a value the warehouse itself would store as another (`RawTarget.refused`, `refused_error`).
REFUSED = "headwater-refused: "
# A raw table's quarantine (`quarantine_table`): the rows left out of raw, one row per value, with
# the rule that set it aside (SQLite's "type"; "refused": a value the warehouse cannot hold).
QUARANTINE_COLUMNS = "key VARCHAR, column_name VARCHAR, original_value VARCHAR, rule VARCHAR, message VARCHAR"
REFUSED_RULE = "refused"
# More rows refused than this in one table is the column's type, not a few bad rows: the table fails.
REFUSED_MAX = 10_000


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the DuckDB type raw stores
    source_type: str  # as the source's catalog names it, for messages
    convert: str = "CAST({c} AS {t})"  # DuckDB expression turning what the read yields into `type`; {key}: the row's key as text
    source_zone: str | None = None  # a naive source timestamp read as local time in this zone (raw: UTC instant)

    def select(self, alias: str = "", key: str = "'(no key)'") -> str:
        ref = (alias + "." if alias else "") + ident(self.name)
        return f"{self.convert.format(c=ref, t=self.type, key=key)} AS {ident(self.name)}"


def unfit(convert: str, condition: str, table: str, column: str, holds: str, marker: str = UNFIT, row: str = "key") -> str:
    """``convert`` (a `Column.convert`), except that a value for which ``condition`` (over ``{c}``)
    holds stops the read with an error naming the table, the column and the row's key: for values a
    source hands over already changed (DuckDB's scanners wrap some out-of-range values around), which
    must never land as another value. ``holds`` says what the column holds, for the message; ``row``
    what ``{key}`` is ("key"; a file's "row": its number and file)."""
    message = literal(f"{marker}column {table}.{column} ").replace("{", "{{").replace("}", "}}")
    tail = literal(f") holds {holds}").replace("{", "{{").replace("}", "}}")
    return f"CASE WHEN {condition} THEN error({message} || {literal(f'({row} ')} || {{key}} || {tail}) ELSE {convert} END"


def key_text(key: list[str], alias: str = "") -> str:
    """A DuckDB expression giving a row's key as ``id=5, part=2``, for messages."""
    if not key:
        return "'(no key)'"
    ref = alias + "." if alias else ""
    return " || ', ' || ".join(f"{literal(k + '=')} || coalesce(CAST({ref}{ident(k)} AS VARCHAR), 'NULL')" for k in key)


def unfit_error(source: str, text: str, fix: str | None = None) -> HeadwaterError | None:
    """The user's error for a read stopped by `unfit` (or a source-side guard), None for any other."""
    match = re.search(re.escape(UNFIT) + r'([^"\n]*)', text)
    if match is None:
        return None
    return HeadwaterError(
        f"Source '{source}': {match.group(1).strip()}, which the warehouse cannot hold",
        why="Loading it would store another value (or fail half-way), so this table's sync stopped and its raw table and state were left as they were. "
        "docs/sync.md's type tables say which values each type can hold.",
        fix=fix or "Change the value in the source (PostgreSQL's 'infinity' syncs as infinity; NULL for 'no value'), or leave the table out of the source's tables: until it is fixed.",
    )


def refused_error(source: str, text: str) -> HeadwaterError | None:
    """The user's error for a read stopped by `RawTarget.refused`, None for any other: the warehouse's
    reason, whatever the source."""
    match = re.search(re.escape(REFUSED) + r'([^"\n]*)', text)
    if match is None:
        return None
    return HeadwaterError(
        f"Source '{source}': {match.group(1).strip()}",
        why="The warehouse would store it as another value, or fail half-way, so this table's sync stopped and its raw table and state were left as they were.",
        fix="Change the value in the source, or leave the table out of the source's tables: until it is fixed (the DuckDB warehouse holds such values).",
    )


def _stored(target: RawTarget, column: Column) -> tuple[str, str, list[tuple[str, str]]]:
    """A column's type in raw, the expression (over ``{c}``) giving it, and what the warehouse refuses of it."""
    stored = target.stored_type(column.type)
    convert = column.convert if stored == column.type else target.store(column.convert, column.type).replace("{t}", column.type)
    return stored, convert, target.refused(stored)


def stored_select(target: RawTarget, table: str, column: Column, alias: str, key: str, row: str = "key") -> str:
    """A column's select item into raw, cast to the type the warehouse stores it as where that
    differs (exactly, or an error), and stopped by an error (`refused_error`) on a value the
    warehouse would store as another. Database and file sources alike (`headwater.clean.load`)."""
    stored, convert, refused = _stored(target, column)
    if stored == column.type and not refused:
        return column.select(alias, key)
    for condition, holds in refused:
        convert = unfit(convert, condition.replace("{c}", f"({convert})"), table, column.name, holds, marker=REFUSED, row=row)
    return Column(column.name, stored, column.source_type, convert, column.source_zone).select(alias, key)


def refused_values(target: RawTarget, column: Column, alias: str, key: str) -> list[tuple[str, str]]:
    """For each kind of value of ``column`` the warehouse refuses (`RawTarget.refused`): a DuckDB
    condition over the row as the source read it (under ``alias``) true for such a value, and what it is."""
    stored, convert, refused = _stored(target, column)
    ref = (alias + "." if alias else "") + ident(column.name)
    return [(condition.replace("{c}", f"({convert})").format(c=ref, t=stored, key=key), holds) for condition, holds in refused]


def set_quarantined(con: duckdb.DuckDBPyConnection, schema: str, quarantine: str, rule: str, rows: str | None) -> int:
    """Replace the rows ``rule`` set aside in a raw table's quarantine ``schema.quarantine`` (see
    `quarantine_table`) with ``rows`` (a SELECT of `QUARANTINE_COLUMNS`; None: none), in the
    caller's transaction. A quarantine left empty is dropped. Returns the rows of ``rule`` it holds."""
    relation = f"{ident(schema)}.{ident(quarantine)}"
    if rows is None and not quarantine_exists(con, schema, quarantine):
        return 0
    con.execute(f"CREATE TABLE IF NOT EXISTS {relation} ({QUARANTINE_COLUMNS})")
    con.execute(f"DELETE FROM {relation} WHERE rule = {literal(rule)}")
    if rows is not None:
        con.execute(f"INSERT INTO {relation} BY NAME {rows}")
    return _tidy_quarantine(con, relation, rule)


def quarantine_exists(con: duckdb.DuckDBPyConnection, schema: str, quarantine: str) -> bool:
    found = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? AND table_name = ?", [schema, quarantine])
    return bool(one_value(found))


def _tidy_quarantine(con: duckdb.DuckDBPyConnection, quarantine: str, rule: str) -> int:
    held, total = one_row(con.execute(f"SELECT count(*) FILTER (WHERE rule = {literal(rule)}), count(*) FROM {quarantine}"))
    if not total:
        con.execute(f"DROP TABLE {quarantine}")
    return int(held)


@dataclass
class TableInfo:
    name: str
    columns: list[Column]
    primary_key: list[str] = field(default_factory=list)
    cursor_candidates: list[str] = field(default_factory=list)
    kind: str = "table"  # table | view | partitioned
    estimated_rows: int | None = None
    tracks_transactions: bool = False  # PostgreSQL: rows carry the id of the transaction that wrote them (xmin)
    read_exprs: dict[str, str] = field(default_factory=dict)  # column -> source-dialect SELECT expression, when not the bare column
    parallel_ok: bool | None = False  # the source's parallel scanner reads every column exactly as a query would (None: not asked yet)
    indexed: list[str] = field(default_factory=list)  # columns that lead an index of the table
    read_notes: list[str] = field(default_factory=list)  # what the source did with values that did not fit (`SqlSource.begin`), for the stats
    quarantined: int = 0  # rows the source set aside in raw_<source>.<table>__quarantine (SQLite: values that do not fit their column)
    quarantine_by_rule: dict[str, int] = field(default_factory=dict)
    identity: str | None = None  # changes when the table is dropped and re-created or rewritten (TRUNCATE): PostgreSQL's oid/relfilenode
    skip: str | None = None  # why this sync leaves the table alone (e.g. a materialized view not populated yet)
    error: HeadwaterError | None = None  # why the catalog could not describe it: the table fails, the others sync

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass
class Plan:
    mode: str  # full | incremental | append
    method: str  # reload | xmin | cursor | compare
    key: list[str]
    cursor: list[str]
    lookback: dt.timedelta
    deletes: str  # remove | tombstone | ignore
    check_deletes_every: dt.timedelta  # how often a full pass is made (deletes; rows the index path cannot see)
    notes: list[str] = field(default_factory=list)
    index_cursor: str | None = None  # xmin tables: a timestamptz updated_at-like column leading an index
    declared_key: bool = False  # the key comes from headwater.yml, not the catalog: nothing enforces it, so syncs check it


class SqlSource:
    """Base of database sources; subclasses implement the `# dialect` methods."""

    kind = "sql"
    settings: DatabaseSource

    def __init__(self, name: str, settings: DatabaseSource) -> None:
        self.name = name
        self.settings = settings
        self.alias = f"hw_src_{name}"
        self._passes = 0  # tables this sync loaded in full or made a full pass over
        self._target = RawTarget()  # the warehouse's raw tables, set by each `sync`
        self._refusing: dict[str, list[str]] = {}  # table -> keys (as `key_text`) of rows quarantined as refused, left out of every read
        self._raw_names: set[str] = set()  # the raw schema's tables when this sync began (a quarantine of refused rows is one of an earlier sync)

    # --- dialect -------------------------------------------------------------------------------

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        raise NotImplementedError

    def detach(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"DETACH DATABASE IF EXISTS {self.alias}")

    def discover(self, con: duckdb.DuckDBPyConnection, names: list[str] | None) -> dict[str, TableInfo]:
        """Every table and view in scope (``names``: only these, when the caller knows them)."""
        raise NotImplementedError

    def relation(self, con: duckdb.DuckDBPyConnection, table: TableInfo, *, where: str | None = None, columns: list[str] | None = None, parallel: bool = True) -> str:
        """A relation DuckDB can SELECT from that yields ``columns`` (default all) of the rows matching
        ``where`` (in the source's dialect), each convertible by its `Column.convert`."""
        raise NotImplementedError

    def count_relation(self, table: TableInfo) -> str:
        raise NotImplementedError

    def query_relation(self, sql: str) -> str:
        """Any SELECT in the source's own dialect, as a relation DuckDB can SELECT from."""
        raise NotImplementedError

    def connection_error(self, exc: Exception) -> HeadwaterError:
        """A driver error as a message that names the source and the fix (and never the password)."""
        raise NotImplementedError

    def query(self, con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
        """Run a SELECT in the source's dialect; a failure becomes the dialect's `connection_error`."""
        try:
            return con.execute(f"SELECT * FROM {self.query_relation(sql)}").fetchall()
        except duckdb.Error as exc:
            raise self.connection_error(exc) from None

    def begin(self, con: duckdb.DuckDBPyConnection, table: TableInfo) -> dict[str, Any]:
        """Called first in each table's transaction; returns facts about the source's snapshot."""
        return {}

    @contextmanager
    def snapshot_reader(self, con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A second connection reading the source in the snapshot of ``con``'s open transaction, for
        as long as the context lasts; None: the source can be read only on ``con``. A source read
        through DuckDB's postgres scanner must offer one (see `PostgresRaw.load_full`)."""
        yield None

    def end(self, con: duckdb.DuckDBPyConnection, table: TableInfo) -> None:
        """Called after a table's reads, before its transaction commits: raise if what was read cannot be trusted."""

    def changed_since(self, table: TableInfo, since_xmin: int) -> str | None:
        """WHERE clause selecting rows written by transactions a snapshot with this xmin could not see; None: unknown."""
        return None

    def horizon(self, con: duckdb.DuckDBPyConnection, table: TableInfo) -> tuple[dt.datetime | None, str | None]:
        """Called just before a table's transaction: a time no later than the start of any transaction
        whose writes the coming snapshot will not see, or (None, why not)."""
        return None, None

    def stamped_since(self, table: TableInfo, column: str, moment: dt.datetime) -> str:
        """WHERE clause: ``column`` (a timestamp with time zone) at or after ``moment``; needed by
        dialects whose `horizon` returns one."""
        raise NotImplementedError

    def copy_progress(self) -> Callable[[], int | None] | None:
        """A function telling how many rows the source has sent so far, for progress bars; None: use
        DuckDB's own progress estimate."""
        return None

    def probe(self, con: duckdb.DuckDBPyConnection, table: TableInfo, where: str) -> tuple[int, int] | None:
        """(rows matching ``where``, all rows) in one pass over the source, when that is cheaper than
        reading the changes and counting separately; None: not offered."""
        return None

    def hashed_relation(self, con: duckdb.DuckDBPyConnection, table: TableInfo, *, where: str | None = None, columns: list[str] | None = None) -> str | None:
        """Like `relation`, plus a column ``_hw_hash``: a 64-bit hash of the whole row, computed by
        the source. Lets comparison syncs read keys and hashes instead of every row; None: not offered."""
        return None

    def literal(self, value: Any) -> str:
        """A cursor value as a literal of the source's SQL dialect."""
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, (int, float)):
            return repr(value)
        return literal(str(value))

    def quote(self, name: str) -> str:
        """An identifier of the source's dialect."""
        return ident(name)

    def describe(self) -> str:
        return f"source '{self.name}' ({self.kind})"

    # --- the engine ----------------------------------------------------------------------------

    def sync(self, ctx: SyncContext) -> list[TableStats]:
        con = ctx.con
        with _load_settings(con, ctx.memory_limit):
            raw = _raw_tables(con, raw_schema(self.name))  # before the source's catalog joins DuckDB's
            self._raw_names = set(raw)
            self.attach(con)
            try:
                tables, found = self._select_tables(con, ctx.tables)
                ensure_state_table(con)
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(raw_schema(self.name))}")
                self._passes = 0
                self._target = ctx.target
                stats: list[TableStats] = []
                failures: list[HeadwaterError] = []
                for i, info in enumerate(tables):
                    outcome = self._sync_or_fail(ctx, info, raw.get(info.name), last=i == len(tables) - 1)
                    stats.append(outcome if isinstance(outcome, TableStats) else self._failed_stats(con, info, outcome))
                    if not isinstance(outcome, TableStats):
                        failures.append(outcome)
                        if outcome.transient:  # the source went away: the next tables would only wait for it too
                            break
                if ctx.tables is None and not any(f.transient for f in failures):  # the whole source was read: raw tables it no longer has are known
                    synced = {t.name for t in tables}
                    companions = {quarantine_table(t, self._target.max_identifier) for t in synced}  # their quarantines
                    stale = sorted(set(raw) - synced - companions)
                    stats += [self._stale_table(ctx, name, selected_out=name in found) for name in stale]
            finally:
                self.detach(con)
        if ctx.target.checkpoints:
            with _checkpoint_settings(con, compact=self._passes > 0):
                try:  # nothing left to write when the last table's commit checkpointed
                    con.execute("CHECKPOINT")
                except duckdb.Error:  # another connection's transaction is open: closing checkpoints later
                    pass
        if failures:
            raise tables_failed(self.name, failures, stats)
        return stats

    def _sync_or_fail(self, ctx: SyncContext, info: TableInfo, raw_columns: dict[str, str] | None, *, last: bool) -> TableStats | HeadwaterError:
        """One table's sync, or why it failed: one bad table must not keep the others from syncing.
        Errors of the source's driver or of DuckDB become errors naming the source and the table."""
        for rescan in (False, True):
            try:
                if info.error is not None:
                    raise info.error
                if info.skip is not None:
                    ctx.log(f"source {self.name}: table {info.name}: skipped: {info.skip}")
                    return TableStats(info.name, 0, 0.0, mode="skipped", notes=[info.skip])
                return self._sync_table(ctx, info, raw_columns, last=last, rescan=rescan)
            except HeadwaterError as exc:
                error = exc
            except duckdb.Error as exc:
                if _warehouse_failure(exc):  # the warehouse itself, not this table: no later table could sync either
                    raise
                refused = refused_error(self.name, str(exc))
                if refused is not None and not rescan and self.settings.on_refused == "quarantine":
                    # Rolled back. Again, with every such row of the table found first and set aside.
                    ctx.log(f"source {self.name}: table {info.name}: {refused.what.removeprefix(f'Source {self.name!r}: ')}: such rows are set aside (on_refused: quarantine)")
                    continue
                error = refused or self._warehouse_error(exc, info) or self.table_error(ctx.con, info, exc)
            break
        ctx.log(f"source {self.name}: table {info.name}: failed (the error is reported when the sync ends)")
        return error

    def _warehouse_error(self, exc: duckdb.Error, info: TableInfo) -> HeadwaterError | None:
        """The warehouse's error, naming the table, when it was the warehouse that failed (`RawTarget.failure`)."""
        error = self._target.failure(exc, raw_schema(self.name))
        return None if error is None else type(error)(f"{error.what} (source {self.name}, table {info.name})", why=error.why, fix=error.fix)

    def table_error(self, con: duckdb.DuckDBPyConnection, info: TableInfo, exc: duckdb.Error) -> HeadwaterError:
        """A DuckDB or driver error met while syncing ``info``, as an error that names the table."""
        if isinstance(exc, duckdb.OutOfMemoryException):
            return self._memory_error(con, info, exc)
        error = self.connection_error(exc)
        what = error.what if info.name in error.what else f"{error.what} (table {info.name})"
        return type(error)(what, why=error.why, fix=error.fix)

    def _memory_error(self, con: duckdb.DuckDBPyConnection, info: TableInfo, exc: duckdb.Error) -> HeadwaterError:
        """Out of memory: name the largest value of the table (column and key) when the source can
        find it, since a single value too big for the limit is the usual cause."""
        limit = one_value(con.execute("SELECT current_setting('memory_limit')"))
        key = self.settings.settings_for(info.name).primary_key or info.primary_key
        try:
            largest = self.largest_value(con, info, key)
        except (duckdb.Error, HeadwaterError):  # the message without it still says what to do
            largest = None
        why = f"DuckDB: {first_line(str(exc), 300)}"
        if largest is not None:
            column, values, size = largest
            where = ", ".join(f"{k} = {_shown(v)}" for k, v in zip(key, values, strict=True)) if key else "a row without a key"
            why = f"its largest value, column {column} of the row with {where}, is {size / 1e6:,.1f} MB; loading a value takes a few times its size. {why}"
        return ConfigError(
            f"{self.describe()}: table {info.name} does not fit in the sync's memory limit ({limit})",
            why=why,
            fix="Raise warehouse.memory_limit in headwater.yml (it is the sync's limit too), or make the value smaller at the source.",
        )

    def largest_value(self, con: duckdb.DuckDBPyConnection, info: TableInfo, key: list[str]) -> tuple[str, list[Any], int] | None:
        """(column, key values, bytes) of the largest value in the table, asked of the source; None: not offered."""
        sizes = [self.size_expr(info, c) for c in info.columns]
        if not sizes:
            return None
        cells = self.greatest(", ".join(f"coalesce({e}, 0)" for e in sizes))
        keys = "".join(f", {self.quote(k)}" for k in key)
        named = ", ".join(f"{e} AS {self.quote(f'_hw_size_{i}')}" for i, e in enumerate(sizes))
        row = self.query(con, f"SELECT {cells} AS {self.quote('_hw_size')}, {named}{keys} FROM {self.qualified(info.name)} ORDER BY 1 DESC LIMIT 1")
        if not row:
            return None
        size, *rest = row[0]
        column_sizes, values = rest[: len(sizes)], rest[len(sizes) :]
        column = next((c.name for c, n in zip(info.columns, column_sizes, strict=True) if n == size), None)
        return None if column is None else (column, list(values), int(size))

    def size_expr(self, info: TableInfo, column: Column) -> str:
        """The size in bytes of a column's value, in the source's dialect."""
        raise NotImplementedError

    def greatest(self, values: str) -> str:
        """The largest of comma-separated numbers, in the source's dialect."""
        return f"greatest({values})"

    def qualified(self, table: str) -> str:
        raise NotImplementedError

    def _failed_stats(self, con: duckdb.DuckDBPyConnection, info: TableInfo, error: HeadwaterError) -> TableStats:
        """What the run records for a table that failed: raw as it was left, and the error."""
        exists = one_value(con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? AND table_name = ?", [raw_schema(self.name), info.name]
        ))
        rows = one_value(con.execute(f"SELECT count(*) FROM {ident(raw_schema(self.name))}.{ident(info.name)}")) if exists else 0
        return TableStats(info.name, rows, 0.0, mode="failed", notes=[error.what])

    def _stale_table(self, ctx: SyncContext, name: str, *, selected_out: bool) -> TableStats:
        """A raw table this source no longer syncs: kept and reported, or with prune dropped along with
        its sync state. Never silently either way."""
        con = ctx.con
        target = f"{ident(raw_schema(self.name))}.{ident(name)}"
        if isinstance(self.settings.tables, list):  # only the listed tables were looked up
            why = f"not in sources.{self.name}.tables"
        elif selected_out:
            why = f"no longer selected by sources.{self.name}.tables"
        else:
            why = "no longer in the source (dropped, renamed, or attached as a partition)"
        if ctx.prune or self.settings.prune:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"DROP TABLE {target}")
                con.execute(f"DROP TABLE IF EXISTS {self._hashes_table(TableInfo(name, []))}")
                drop_state(con, self.name, name)
                self._target.dropped(con, self.name, raw_schema(self.name), name)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            stats = TableStats(name, 0, 0.0, mode="pruned")
            self._note(ctx, TableInfo(name, []), stats, f"{why}: dropped {raw_schema(self.name)}.{name} and its sync state (prune)")
            return stats
        rows = self._target.count(con, target)
        stats = TableStats(name, rows, 0.0, mode="stale")
        self._note(
            ctx, TableInfo(name, []), stats,
            f"{why}: {raw_schema(self.name)}.{name} keeps its {rows:,} rows as they were; `headwater sync {self.name} --prune` (or prune: true) drops it",
        )
        return stats

    def _select_tables(self, con: duckdb.DuckDBPyConnection, requested: list[str] | None) -> tuple[list[TableInfo], set[str]]:
        """The tables to sync, and every table the source has."""
        spec = self.settings.tables
        explicit = list(spec) if isinstance(spec, list) else None
        found = self.discover(con, explicit)
        if explicit is not None:
            missing = [t for t in explicit if t not in found]
            if missing:
                raise NotFound(
                    f"{self.describe()}: table(s) {', '.join(missing)} not found",
                    why=f"the source has: {_some(sorted(found))}" if found else "no tables are visible to this user (a missing grant, or the wrong schema)",
                    fix=f"Fix sources.{self.name}.tables in headwater.yml, or grant SELECT on the table to the sync user.",
                )
            names = explicit
        else:
            patterns = spec if isinstance(spec, TablePatterns) else TablePatterns()
            names = sorted(n for n in found if any(fnmatch.fnmatchcase(n, p) for p in patterns.include) and not any(fnmatch.fnmatchcase(n, p) for p in patterns.exclude))
        for name in self.settings.overrides:
            if name not in found:
                raise ConfigError(f"sources.{self.name}.overrides.{name}: no table '{name}' in {self.describe()}", fix="Fix or remove the override in headwater.yml.")
        if requested is not None:
            unknown = [t for t in requested if t not in names]
            if unknown:
                raise NotFound(
                    f"{self.describe()}: {', '.join(unknown)} is not one of the tables this source syncs",
                    why=f"it syncs: {_some(names)}",
                    fix="Check the table name, or add it to the source's tables: in headwater.yml.",
                )
            names = [n for n in names if n in requested]
        return [found[n] for n in names], set(found)

    def plan(self, info: TableInfo, settings: TableSettings) -> Plan:
        key = settings.primary_key or info.primary_key
        for column in [*(settings.primary_key or []), *(settings.cursor or [])]:
            if info.column(column) is None:
                raise ConfigError(
                    f"sources.{self.name}.overrides.{info.name}: column '{column}' is not in the table",
                    why=f"its columns: {_some([c.name for c in info.columns])}",
                    fix="Fix primary_key/cursor for the table in headwater.yml.",
                )
        # `cursor: []` turns off a cursor found in the catalog (then: comparison).
        cursor = settings.cursor if settings.cursor is not None else ([] if info.tracks_transactions else info.cursor_candidates[:1])
        deletes = settings.deletes or self.settings.deletes
        every = settings.check_deletes_every if settings.check_deletes_every is not None else self.settings.check_deletes_every
        if every is None:  # auto: a pass over a small table costs little, so every sync
            every = AUTO_PASS_EVERY if (info.estimated_rows or 0) >= AUTO_PASS_ROWS else dt.timedelta(0)
        mode = settings.mode
        notes: list[str] = []
        if mode == "auto":
            if key:
                mode = "incremental"
            else:
                mode = "full"
                notes.append("no primary key: reloaded in full each sync (set primary_key in overrides to sync only changes)")
        if mode == "incremental" and not key:
            raise ConfigError(
                f"{self.describe()}: table {info.name} has no primary key, so changed rows cannot be matched to raw rows",
                fix=f"Name the key columns: sources.{self.name}.overrides.{info.name}.primary_key: [{_example_key(info)}], or set mode: full (or append for an insert-only table).",
            )
        if mode == "append" and not (cursor or info.tracks_transactions):
            raise ConfigError(
                f"{self.describe()}: table {info.name} is set to append but has no cursor column",
                fix=f"Set sources.{self.name}.overrides.{info.name}.cursor: [a column that grows, e.g. id or created_at].",
            )
        if mode == "full":
            method = "reload"
        elif info.tracks_transactions and not settings.cursor:
            method = "xmin"
        elif cursor:
            method = "cursor"
        else:
            method = "compare"
        lookback = settings.lookback
        if lookback is None:
            first = info.column(cursor[0]) if cursor else None
            lookback = DEFAULT_TIME_LOOKBACK if (first is not None and "TIME" in normalise(first.type)) or (first and normalise(first.type) == "DATE") else dt.timedelta(0)
        index_cursor = None
        if method == "xmin" and mode == "incremental":
            index_cursor = next((c.name for c in map(info.column, info.cursor_candidates) if c and c.name in info.indexed and normalise(c.type) == "TIMESTAMPTZ" and c.source_zone is None), None)
            lookback = settings.lookback if settings.lookback is not None else DEFAULT_INDEX_MARGIN
        return Plan(mode, method, key, cursor, lookback, deletes, every, notes, index_cursor, declared_key=bool(settings.primary_key))

    def _sync_table(self, ctx: SyncContext, info: TableInfo, raw_columns: dict[str, str] | None, *, last: bool = True, rescan: bool = False) -> TableStats:
        """``raw_columns``: the raw table's columns (without Headwater's own), None when there is none yet.
        The ``last`` table of a sync commits straight into the database file (see `_checkpoint_settings`).
        ``rescan``: a read met a value the warehouse refuses: find every such row first (`_set_aside_refused`)
        and reload the table without them."""
        con = ctx.con
        started = time.perf_counter()
        settings = self.settings.settings_for(info.name)
        plan = self.plan(info, settings)
        target = f"{ident(raw_schema(self.name))}.{ident(info.name)}"
        label = f"source {self.name}: table {info.name}"
        limit = self._target.max_identifier
        check_name_fits("table", info.name, limit, where=self.describe(), fix=f"Leave it out of sources.{self.name}.tables, or sync it through a view with a shorter name.")
        fix = f"Sync the table through a view that names the column in at most {limit} bytes, or leave the table out of sources.{self.name}.tables."
        for column in info.columns:
            check_name_fits("column", column.name, limit, where=self.describe(), fix=fix, shown=f"{info.name}.{column.name}")
        # Before the snapshot: a bound on the start of every transaction the snapshot will not see.
        horizon, no_horizon = self.horizon(con, info) if plan.index_cursor else (None, None)
        con.execute("BEGIN TRANSACTION")
        try:
            snapshot = self.begin(con, info)
            state = None if ctx.full_refresh else load_state(con, self.name, info.name)
            exists = raw_columns is not None
            raw_columns = raw_columns or {}
            stats = TableStats(info.name, 0, 0.0, mode=plan.mode, notes=plan.notes + info.read_notes, quarantined=info.quarantined, quarantine_by_rule=dict(info.quarantine_by_rule))
            full = state is None or not exists or plan.method == "reload" or state.get("method") != plan.method or state.get("key") != plan.key
            full = self._refused_rows(con, info, plan, stats, rescan=rescan, full=full) or full
            kept = self._reconcile_schema(con, info, raw_columns, target, stats, alter=not ctx.full_refresh) if exists else []
            if not full and any(c.startswith("added column") for c in stats.schema_changes):
                full = True
                stats.notes.append("new column(s): the table was reloaded so existing rows get their values")
            if not full and plan.method == "xmin" and state is not None and not self.xmin_usable(state, snapshot):  # not full: state is not None
                full = True
                stats.notes.append("more than 2^31 transactions since the last sync: reloaded in full")
            new_state: dict[str, Any] = {"method": plan.method, "key": plan.key, "cursor": plan.cursor, **snapshot}
            if info.identity is not None:
                new_state["identity"] = info.identity
            if horizon is not None:
                new_state["since"] = horizon.isoformat()
            if full or state is None:  # `full` is true whenever there is no state; said again, it narrows `state` below
                self._load_full(ctx, info, plan, target, kept, stats)
                new_state["last_delete_check"] = _now().isoformat()
                if "xmin" in snapshot:
                    new_state["pass_xmin"] = snapshot["xmin"]
                if plan.cursor:
                    new_state["cursor_max"] = _max(con, target, plan.cursor[0])
            else:
                self._load_changes(ctx, info, plan, target, kept, state, snapshot, stats, new_state, no_horizon)
                self._release_refused(con, info, plan, target)
            self._report_refused(con, info, stats)
            self.end(con, info)
            change = Change(self.name, raw_schema(self.name), info.name, plan.key, state, new_state, full, log=ctx.log)
            self._target.before_commit(con, change)
            save_state(con, self.name, info.name, new_state)
            self._passes += full or new_state.get("last_delete_check") != (state or {}).get("last_delete_check")
            stats.rows = stats.rows_read if full else self._target.count(con, target)  # a full load's table holds what it read
            if last:
                with _checkpoint_settings(con, compact=self._passes > 0, at_commit=True):
                    con.execute("COMMIT")
            else:
                con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
                self._target.rolled_back(con)
            except duckdb.Error:
                pass
            raise
        self._target.after_commit(con, change)
        stats.seconds = round(time.perf_counter() - started, 3)
        ctx.report(info.name, stats.rows_read, stats.rows_read)
        ctx.log(
            f"{label}: {stats.mode} ({new_state.get('read', plan.method)}), {stats.rows_read:,} rows read, {stats.upserted:,} written, {stats.deleted:,} deleted, "
            f"{stats.rows:,} in {raw_schema(self.name)}.{info.name} ({stats.seconds:.1f} s)"
        )
        for schema_change in stats.schema_changes:
            ctx.log(f"{label}: schema change: {schema_change}")
        return stats

    def xmin_usable(self, state: dict[str, Any], snapshot: dict[str, Any]) -> bool:
        return True

    # --- rows the warehouse refuses (on_refused: quarantine) -------------------------------------

    def _quarantine_of(self, info: TableInfo) -> str:
        return f"{ident(raw_schema(self.name))}.{ident(quarantine_table(info.name, self._target.max_identifier))}"

    def _refusals(self, info: TableInfo, plan: Plan, alias: str) -> list[tuple[Column, str, str]]:
        key = key_text(plan.key, alias)
        return [(c, condition, holds) for c in info.columns for condition, holds in refused_values(self._target, c, alias, key)]

    def _refused_rows(self, con: duckdb.DuckDBPyConnection, info: TableInfo, plan: Plan, stats: TableStats, *, rescan: bool, full: bool) -> bool:
        """Which rows this table's reads leave out (`_readable`): those quarantined as refused whose
        values the warehouse still refuses. A row fixed in the source is read again (its change is
        a change) and loaded. The quarantine is made anew from a pass over the source when a read met
        a refused value (``rescan``), and on every full load while it holds rows (a table without a
        key is loaded in full each sync); True: it was, and the table is loaded in full, so raw keeps
        no version of a row now refused."""
        self._refusing.pop(info.name, None)
        if not self._refusals(info, plan, "s"):  # the warehouse holds every value of these columns (DuckDB's)
            return False
        quarantine = self._quarantine_of(info)
        companion = quarantine_table(info.name, self._target.max_identifier)
        # Only a quarantine there when the sync began can hold refused rows; asked again, as SQLite's `begin` may have dropped it.
        exists = companion in self._raw_names and quarantine_exists(con, raw_schema(self.name), companion)
        held = [str(k) for (k,) in con.execute(f"SELECT DISTINCT key FROM {quarantine} WHERE rule = {literal(REFUSED_RULE)}").fetchall()] if exists else []
        scanned = rescan or (full and bool(held))
        if scanned:
            held = self._set_aside_refused(con, info, plan)
        if held:
            self._refusing[info.name] = held
        return scanned

    def _report_refused(self, con: duckdb.DuckDBPyConnection, info: TableInfo, stats: TableStats) -> None:
        """The rows the quarantine holds as refused once the table is synced, in its stats and notes."""
        if not self._refusing.get(info.name):
            return
        schema, companion = raw_schema(self.name), quarantine_table(info.name, self._target.max_identifier)
        if not quarantine_exists(con, schema, companion):
            return
        rule = literal(REFUSED_RULE)
        held, key, column, message = one_row(con.execute(
            f"SELECT count(DISTINCT key), min(key), arg_min(column_name, key), arg_min(message, key) FROM {ident(schema)}.{ident(companion)} WHERE rule = {rule}"
        ))
        if held:
            stats.quarantined += held
            stats.quarantine_by_rule[REFUSED_RULE] = held
            stats.notes.append(
                f"{_rows(held)} set aside in {schema}.{companion}: values the warehouse cannot hold (e.g. column {column} ({key}) holds {message}); "
                "fixed in the source, a row syncs with the next sync"
            )

    def _set_aside_refused(self, con: duckdb.DuckDBPyConnection, info: TableInfo, plan: Plan) -> list[str]:
        """One pass over the source table: every row holding a value the warehouse refuses goes to the
        quarantine (one row per value: key, column, value, why), replacing those set aside before.
        Returns their keys. More than `REFUSED_MAX` is a column's type, not a few bad rows: an error."""
        refusals = self._refusals(info, plan, "s")
        flags = ", ".join(f"coalesce({condition}, false) AS _hw_r{i}, replace(CAST(s.{ident(c.name)} AS VARCHAR), chr(0), '\\0') AS _hw_v{i}" for i, (c, condition, _) in enumerate(refusals))
        anywhere = " OR ".join(f"coalesce({condition}, false)" for _, condition, _ in refusals)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _hw_refused AS SELECT {key_text(plan.key, 's')} AS key, {flags} "
            f"FROM {self.relation(con, info, parallel=False)} AS s WHERE {anywhere} LIMIT {REFUSED_MAX + 1}"
        )
        try:
            found = one_value(con.execute("SELECT count(*) FROM _hw_refused"))
            if found > REFUSED_MAX:
                column, holds = next((c.name, h) for i, (c, _, h) in enumerate(refusals) if one_value(con.execute(f"SELECT count(*) FROM _hw_refused WHERE _hw_r{i}")))
                raise HeadwaterError(
                    f"Source '{self.name}': more than {REFUSED_MAX:,} rows of table {info.name} hold values the warehouse cannot hold (column {column}: {holds})",
                    why="So many is the column's type, not a few bad rows: setting them aside would leave most of the table out, so the table was left as it was.",
                    fix=f"Sync the table through a view that converts column {column} to a type the warehouse holds, or leave the table out of sources.{self.name}.tables.",
                )
            parts = [
                f"SELECT key, {literal(c.name)} AS column_name, _hw_v{i} AS original_value, {literal(REFUSED_RULE)} AS rule, {literal(holds)} AS message FROM _hw_refused WHERE _hw_r{i}"
                for i, (c, _, holds) in enumerate(refusals)
            ]
            set_quarantined(con, raw_schema(self.name), quarantine_table(info.name, self._target.max_identifier), REFUSED_RULE, " UNION ALL ".join(parts) if found else None)
            return [str(k) for (k,) in con.execute("SELECT DISTINCT key FROM _hw_refused ORDER BY key").fetchall()]
        finally:
            con.execute("DROP TABLE _hw_refused")

    def _readable(self, info: TableInfo, plan: Plan, relation: str) -> str:
        """``relation`` (a read of the table's rows) without the rows quarantined as refused whose
        values the warehouse still refuses (`_refused_rows`). The keys are written out, not joined
        from the quarantine: a full load may read on a connection of its own, outside the table's
        transaction, where the quarantine written in it is not seen."""
        held = self._refusing.get(info.name)
        if not held:
            return relation
        anywhere = " OR ".join(f"coalesce({condition}, false)" for _, condition, _ in self._refusals(info, plan, "_hw_s"))
        keys = ", ".join(literal(k) for k in held)
        return f"(SELECT * FROM {relation} AS _hw_s WHERE NOT (({anywhere}) AND {key_text(plan.key, '_hw_s')} IN ({keys})))"

    def _release_refused(self, con: duckdb.DuckDBPyConnection, info: TableInfo, plan: Plan, target: str) -> None:
        """After reading changes: rows set aside that this sync loaded (fixed in the source) leave the
        quarantine. (Rows deleted in the source leave it in `_apply_deletes`.)"""
        if not self._refusing.get(info.name) or not plan.key:
            return
        quarantine = self._quarantine_of(info)
        written = f"SELECT {key_text(plan.key, 'r')} FROM {target} r WHERE r.{SYNCED_AT} = now()"
        con.execute(f"DELETE FROM {quarantine} WHERE rule = {literal(REFUSED_RULE)} AND key IN ({written})")
        if not _tidy_quarantine(con, quarantine, REFUSED_RULE):
            self._refusing.pop(info.name)

    def _reconcile_schema(self, con: duckdb.DuckDBPyConnection, info: TableInfo, raw_columns: dict[str, str], target: str, stats: TableStats, *, alter: bool = True) -> list[Column]:
        """Bring raw's columns in line with the source's; returns the columns kept after the source
        dropped them. Without ``alter`` (a full refresh replaces the table) only the kept columns are found."""
        current = {c.name: c for c in info.columns}
        for column in info.columns if alter else []:
            old = raw_columns.get(column.name)
            stored = self._target.stored_type(column.type)
            if old is None:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {ident(column.name)} {stored}")
                stats.schema_changes.append(f"added column {column.name} {stored}")
                continue
            wanted = reconcile(old, stored)
            if wanted is None:
                raise HeadwaterError(
                    f"{self.describe()}: column {info.name}.{column.name} changed type from {old} to {column.type} ({column.source_type}), which the raw table cannot hold",
                    why=f"raw_{self.name}.{info.name}.{column.name} holds {old} values; converting them could lose data, so this table was left as it was",
                    fix=f"If the change is intended, reload the table with the new type: `headwater sync {self.name} {info.name} --full-refresh` "
                    "(models that read the column may need changing too).",
                )
            if normalise(wanted) != normalise(old):
                self._target.alter_type(con, target, column.name, wanted)
                stats.schema_changes.append(f"widened column {column.name} from {old} to {wanted}")
        kept: list[Column] = []
        for name, duck_type in raw_columns.items():
            if name in current or name in (SYNCED_AT, DELETED_AT):
                continue
            kept.append(Column(name, duck_type, "(dropped in the source)", convert="CAST(NULL AS {t})"))
        for column in kept:
            stats.notes.append(f"column {column.name} is no longer in the source: kept in raw, NULL for rows synced from now on")
        return kept

    def _select_list(self, info: TableInfo, kept: list[Column], plan: Plan, alias: str = "") -> str:
        key = key_text(plan.key, alias)
        parts = [stored_select(self._target, info.name, c, alias, key) for c in info.columns] + [f"CAST(NULL AS {c.type}) AS {ident(c.name)}" for c in kept]
        parts.append(f"now() AS {SYNCED_AT}")
        if plan.deletes == "tombstone":
            parts.append(f"CAST(NULL AS TIMESTAMPTZ) AS {DELETED_AT}")
        return ", ".join(parts)

    def _load_full(self, ctx: SyncContext, info: TableInfo, plan: Plan, target: str, kept: list[Column], stats: TableStats) -> None:
        con = ctx.con
        source = self._readable(info, plan, self.relation(con, info))
        rows = f"SELECT {self._select_list(info, kept, plan, 's')} FROM {source} AS s"
        with _Progress(ctx, info, self.copy_progress() if ctx.progress else None):
            n = self._target.load_full(con, raw_schema(self.name), info.name, rows, lambda: self.snapshot_reader(con))
        self._check_unique(con, info, plan, target)
        stats.mode = "full"
        stats.rows_read = stats.upserted = n

    def _load_changes(
        self,
        ctx: SyncContext,
        info: TableInfo,
        plan: Plan,
        target: str,
        kept: list[Column],
        state: dict[str, Any],
        snapshot: dict[str, Any],
        stats: TableStats,
        new_state: dict[str, Any],
        no_horizon: str | None = None,
    ) -> None:
        con = ctx.con
        if plan.deletes == "tombstone":
            con.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {DELETED_AT} TIMESTAMPTZ")
        new_state["last_delete_check"] = state.get("last_delete_check")
        if plan.method == "compare":
            self._load_by_comparison(ctx, info, plan, target, kept, stats, state, new_state)
            new_state["last_delete_check"] = _now().isoformat()
            return
        # A table re-created or rewritten since (TRUNCATE and reload) may hold rows with any timestamps.
        pass_due = self._pass_due(state, plan) or state.get("identity") != info.identity
        where: str | None
        # xmin: the snapshot xmin of the last sync; pass_xmin: of the last pass over the whole table.
        pass_xmin = int(state.get("pass_xmin", state.get("xmin", 0)))
        if plan.method == "xmin" and plan.index_cursor and state.get("since") and not pass_due:
            # Between full passes: through the updated_at index, from the start of the oldest
            # transaction the last snapshot could not see (less a margin), and only rows that snapshot
            # could not see (no re-reads); the next full pass starts from the last one's xmin.
            stamped = self.stamped_since(info, plan.index_cursor, dt.datetime.fromisoformat(state["since"]) - plan.lookback)
            where = f"{stamped} AND {self.changed_since(info, int(state['xmin']))}"
            new_state["pass_xmin"] = pass_xmin
            new_state["read"] = f"{plan.index_cursor} index"
        elif plan.method == "xmin":
            # A pass: everything written since the last pass, whatever its timestamps say.
            where = self.changed_since(info, pass_xmin)
            new_state["pass_xmin"] = snapshot["xmin"]
            if plan.index_cursor and not pass_due and no_horizon:
                stats.notes.append(f"read by transaction ids, a pass over the whole table, because {no_horizon}")
        else:
            last = state.get("cursor_max")
            new_state["cursor_max"] = last
            where = None if last is None else self._cursor_where(info, plan, last)
        changes = "_hw_changes"
        # One pass over the source for "how many changed, how many in all" pays off when the count is
        # needed anyway (a pass is due); otherwise reading the changes is itself the one pass.
        probed = self.probe(con, info, where) if where and pass_due else None
        source_count = probed[1] if probed else None
        if probed is not None and probed[0] == 0:  # nothing changed: no second pass over the source
            con.execute(f"CREATE OR REPLACE TEMP TABLE {changes} AS SELECT * FROM {target} LIMIT 0")
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {changes} AS SELECT {self._select_list(info, kept, plan, 's')} FROM {self._readable(info, plan, self.relation(con, info, where=where, parallel=False))} AS s")
        stats.rows_read = one_value(con.execute(f"SELECT count(*) FROM {changes}"))
        self._check_unique(con, info, plan, changes)
        key_match = " AND ".join(f"{target}.{ident(k)} IS NOT DISTINCT FROM c.{ident(k)}" for k in plan.key)
        if plan.mode == "append":
            if plan.key:
                con.execute(f"DELETE FROM {changes} c WHERE EXISTS (SELECT 1 FROM {target} WHERE {key_match})")
            con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {changes}")
            stats.upserted = one_value(con.execute(f"SELECT count(*) FROM {changes}"))
        elif stats.rows_read:
            self._target.delete_matching(con, target, changes, plan.key)
            con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {changes}")
            stats.upserted = stats.rows_read
        if plan.cursor and stats.rows_read:  # raw now holds the newest cursor value there is
            new_state["cursor_max"] = _max(con, target, plan.cursor[0])
        con.execute(f"DROP TABLE {changes}")
        if pass_due:
            self._reconcile_counts(ctx, info, plan, target, kept, stats, source_count)
            new_state["last_delete_check"] = _now().isoformat()

    def _cursor_where(self, info: TableInfo, plan: Plan, last: Any) -> str:
        column = info.column(plan.cursor[0])
        if column is None:  # `plan` refuses a cursor that is not a column of the table
            raise RuntimeError(f"{self.describe()}: table {info.name}: the cursor {plan.cursor[0]!r} is not one of its columns")
        start: Any = last
        if isinstance(last, str) and _looks_temporal(column.type):
            moment = dt.datetime.fromisoformat(last) - plan.lookback
            if column.source_zone and moment.tzinfo is not None:  # back to the source's own naive local time
                moment = moment.astimezone(ZoneInfo(column.source_zone)).replace(tzinfo=None)
            start = moment.isoformat(sep=" ")
        elif plan.lookback and isinstance(last, (int, float)) and not isinstance(last, bool):
            start = last - plan.lookback.total_seconds()
        op = ">" if plan.mode == "append" and not plan.key else ">="
        return f"{self.quote(column.name)} {op} {self.literal(start)}"

    def _load_by_comparison(
        self, ctx: SyncContext, info: TableInfo, plan: Plan, target: str, kept: list[Column], stats: TableStats, state: dict[str, Any], new_state: dict[str, Any]
    ) -> None:
        """No way to ask the source what changed. When the source can hash rows (MySQL) and the key is
        integers, raw's companion table of keys and hashes is compared with the source's, and only
        rows whose hash differs are read (`_compare_by_hashes`). Otherwise, and the first time: read
        it all (streamed, not kept in Python), and write only rows that differ from raw, deleting
        keys raw has and the source has not."""
        con = ctx.con
        hashes = self._hashes_table(info)
        hashed_read = self.hashed_relation(con, info) if _integer_key(info, plan.key) else None
        hashed = hashed_read is not None
        # Hashes cover the source's columns as they are now: after a column is added, dropped or
        # retyped they would all differ, and re-reading every row would overwrite what raw keeps of a
        # dropped column. So then (and the first time) the comparison is by value.
        signature = _hash_signature(info)
        if hashed and state.get("row_hashes") == signature and self._compare_by_hashes(ctx, info, plan, target, kept, stats, hashes, new_state):
            new_state["row_hashes"] = signature
            return
        src = "_hw_source"
        relation = self._readable(info, plan, hashed_read or self.relation(con, info))
        extra = f", s.{HASH_COLUMN}" if hashed else ""
        with _Progress(ctx, info, self.copy_progress() if ctx.progress else None):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {src} AS SELECT {self._select_list(info, kept, plan, 's')}{extra} FROM {relation} AS s")
        stats.rows_read = one_value(con.execute(f"SELECT count(*) FROM {src}"))
        self._check_unique(con, info, plan, src)
        on = " AND ".join(f"r.{ident(k)} IS NOT DISTINCT FROM s.{ident(k)}" for k in plan.key)
        differs = " OR ".join(f"r.{ident(c.name)} IS DISTINCT FROM s.{ident(c.name)}" for c in info.columns) or "FALSE"
        alive = f" AND r.{DELETED_AT} IS NULL" if plan.deletes == "tombstone" else ""
        without = f" EXCLUDE ({HASH_COLUMN})" if hashed else ""
        con.execute(f"CREATE OR REPLACE TEMP TABLE _hw_changes AS SELECT s.*{without} FROM {src} s WHERE NOT EXISTS (SELECT 1 FROM {target} r WHERE {on} AND NOT ({differs}){alive})")
        stats.upserted = one_value(con.execute("SELECT count(*) FROM _hw_changes"))
        if stats.upserted:
            self._target.delete_matching(con, target, "_hw_changes", plan.key)
            con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM _hw_changes")
        if plan.deletes != "ignore":
            stats.deleted = self._apply_deletes(con, info, plan, target, src)
        if hashed:  # raw now equals what was read: its hashes are the ones to compare with next time
            con.execute(f"CREATE OR REPLACE TABLE {hashes} AS SELECT {', '.join(ident(k) for k in plan.key)}, {HASH_COLUMN} FROM {src}")
            new_state["row_hashes"] = signature
        else:
            con.execute(f"DROP TABLE IF EXISTS {hashes}")
        con.execute(f"DROP TABLE _hw_changes; DROP TABLE {src}")

    def _hashes_table(self, info: TableInfo) -> str:
        return f"{STATE_SCHEMA}.{ident(fitted_name(f'row_hashes:{self.name}:{info.name}', self._target.max_identifier, ':'))}"

    def _compare_by_hashes(
        self, ctx: SyncContext, info: TableInfo, plan: Plan, target: str, kept: list[Column], stats: TableStats, hashes: str, new_state: dict[str, Any]
    ) -> bool:
        """Read every key with its row's hash (computed by the source: a few bytes a row instead of
        the row), then only the rows whose hash differs from the one stored when raw got them, by key
        in batches. All in the table's one transaction, so in one source snapshot. False (nothing
        done) when so much changed that reading everything is cheaper."""
        con = ctx.con
        keys = [ident(k) for k in plan.key]
        on = " AND ".join(f"h.{k} = s.{k}" for k in keys)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _hw_source_hashes AS SELECT * FROM {self.hashed_relation(con, info, columns=plan.key)}")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _hw_changed_keys AS SELECT {', '.join(f's.{k}' for k in keys)} FROM _hw_source_hashes s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {hashes} h WHERE {on} AND h.{HASH_COLUMN} = s.{HASH_COLUMN})"
        )
        self._check_unique(con, info, plan, "_hw_source_hashes")
        total, count = one_row(con.execute("SELECT (SELECT count(*) FROM _hw_source_hashes), (SELECT count(*) FROM _hw_changed_keys)"))
        if count > max(HASH_FETCH_MIN, min(total // 5, HASH_FETCH_MAX)):
            con.execute("DROP TABLE _hw_source_hashes; DROP TABLE _hw_changed_keys")
            return False
        changed = con.execute(f"SELECT {', '.join(keys)} FROM _hw_changed_keys").fetchall()  # at most HASH_FETCH_MAX, in Python
        select = f"{self._select_list(info, kept, plan, 's')}, s.{HASH_COLUMN}"
        for start in range(0, len(changed), HASH_FETCH_BATCH):
            batch = changed[start : start + HASH_FETCH_BATCH]
            if len(keys) == 1:
                where = f"{self.quote(plan.key[0])} IN ({', '.join(str(int(k[0])) for k in batch)})"
            else:
                where = f"({', '.join(map(self.quote, plan.key))}) IN ({', '.join('(' + ', '.join(str(int(v)) for v in k) + ')' for k in batch)})"
            read = f"SELECT {select} FROM {self._readable(info, plan, str(self.hashed_relation(con, info, where=where)))} AS s"
            con.execute(f"CREATE OR REPLACE TEMP TABLE _hw_changes AS {read}" if start == 0 else f"INSERT INTO _hw_changes {read}")
        if changed:
            stats.rows_read = stats.upserted = one_value(con.execute("SELECT count(*) FROM _hw_changes"))
            self._target.delete_matching(con, target, "_hw_changes", plan.key)
            con.execute(f"INSERT INTO {target} BY NAME SELECT * EXCLUDE ({HASH_COLUMN}) FROM _hw_changes")
            hash_match = " AND ".join(f"{hashes}.{k} = c.{k}" for k in keys)
            con.execute(f"DELETE FROM {hashes} USING _hw_changes c WHERE {hash_match}")
            con.execute(f"INSERT INTO {hashes} SELECT {', '.join(keys)}, {HASH_COLUMN} FROM _hw_changes")
            con.execute("DROP TABLE _hw_changes")
        if plan.deletes != "ignore":
            stats.deleted = self._apply_deletes(con, info, plan, target, "_hw_source_hashes")
        con.execute(f"DELETE FROM {hashes} h WHERE NOT EXISTS (SELECT 1 FROM _hw_source_hashes s WHERE {on})")
        con.execute("DROP TABLE _hw_source_hashes; DROP TABLE _hw_changed_keys")
        new_state["read"] = f"row hashes of {total:,} keys, {len(changed):,} changed"  # for the run's log
        return True

    def _pass_due(self, state: dict[str, Any], plan: Plan) -> bool:
        """Whether this sync makes the full pass: deletes, and rows no index can find."""
        last = state.get("last_delete_check")
        return not plan.check_deletes_every or last is None or _now() - dt.datetime.fromisoformat(last) >= plan.check_deletes_every

    def _reconcile_counts(
        self, ctx: SyncContext, info: TableInfo, plan: Plan, target: str, kept: list[Column], stats: TableStats, source_count: int | None = None
    ) -> None:
        """A pass's check that raw holds exactly the source's rows. Equal counts (the usual case) cost
        one count. Otherwise the keys are compared: keys gone from the source are deleted (or
        tombstoned), and keys the source has and raw lacks are fetched. Those are rows that reached
        the source without a newer transaction id or cursor value, which no read of changes can
        see: a table attached as a partition, a pg_restore or COPY FREEZE, a replica's initial copy.
        A difference that remains (deletes: ignore, append) is said in a note, never left unsaid."""
        con = ctx.con
        alive = f"{DELETED_AT} IS NULL" if plan.deletes == "tombstone" else ""
        if source_count is None:
            source_count = one_value(con.execute(f"SELECT * FROM {self.count_relation(info)}"))
        raw_count = self._target.count(con, target, alive) + len(self._refusing.get(info.name, []))  # rows set aside are the source's too
        removes = plan.mode != "append" and plan.deletes != "ignore"
        if source_count == raw_count or not plan.key or (raw_count > source_count and not removes):
            self._note_count_difference(ctx, info, plan, target, stats, source_count)
            return
        keys = ", ".join(ident(k) for k in plan.key)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _hw_keys AS SELECT {keys} FROM {self.relation(con, info, columns=plan.key, parallel=False)}")
        self._check_unique(con, info, plan, "_hw_keys")
        if removes:
            stats.deleted = self._apply_deletes(con, info, plan, target, "_hw_keys")
        self._add_missing(ctx, info, plan, target, kept, stats)
        con.execute("DROP TABLE _hw_keys")
        self._note_count_difference(ctx, info, plan, target, stats, source_count)

    def _add_missing(self, ctx: SyncContext, info: TableInfo, plan: Plan, target: str, kept: list[Column], stats: TableStats) -> None:
        """Fetch the rows whose keys are in ``_hw_keys`` (the source's) and not in raw."""
        con = ctx.con
        alive = f" AND r.{DELETED_AT} IS NULL" if plan.deletes == "tombstone" else ""
        in_raw = " AND ".join(f"r.{ident(k)} IS NOT DISTINCT FROM k.{ident(k)}" for k in plan.key)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _hw_missing_keys AS SELECT * FROM _hw_keys k WHERE NOT EXISTS (SELECT 1 FROM {target} r WHERE {in_raw}{alive})")
        missing = one_value(con.execute("SELECT count(*) FROM _hw_missing_keys"))
        if missing:
            wanted = " AND ".join(f"m.{ident(k)} IS NOT DISTINCT FROM s.{ident(k)}" for k in plan.key)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _hw_missing AS SELECT {self._select_list(info, kept, plan, 's')} FROM {self._readable(info, plan, self.relation(con, info, parallel=False))} AS s "
                f"WHERE EXISTS (SELECT 1 FROM _hw_missing_keys m WHERE {wanted})"
            )
            self._target.delete_matching(con, target, "_hw_missing", plan.key)  # a tombstone of the same key
            added = one_value(con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM _hw_missing"))
            con.execute("DROP TABLE _hw_missing")
            stats.rows_read += added
            stats.upserted += added
            marker = "transaction id" if plan.method == "xmin" else f"{plan.cursor[0]} value" if plan.cursor else "change"
            self._note(
                ctx, info, stats,
                f"{_rows(added)} {'were' if added != 1 else 'was'} in the source but not in raw: they reached it without a newer {marker} (a table attached as a partition, "
                "a restore or COPY FREEZE, a replica's initial copy), so no read of changes could see them; found by comparing keys and added",
            )
        con.execute("DROP TABLE _hw_missing_keys")

    def _note_count_difference(self, ctx: SyncContext, info: TableInfo, plan: Plan, target: str, stats: TableStats, source_count: int) -> None:
        alive = f"{DELETED_AT} IS NULL" if plan.deletes == "tombstone" else ""
        raw_count = self._target.count(ctx.con, target, alive)
        held = len(self._refusing.get(info.name, []))  # set aside as refused (`_refused_rows`), said in a note of their own
        if raw_count + held == source_count:
            return
        if raw_count > source_count and (plan.deletes == "ignore" or plan.mode == "append"):
            why = "deletes: ignore keeps rows deleted in the source" if plan.deletes == "ignore" else "append keeps rows the source deleted"
        elif not plan.key:
            why = "without a key, the rows cannot be compared; set primary_key, or mode: full"
        else:
            why = "the source's rows changed while they were read"
        self._note(ctx, info, stats, f"raw holds {raw_count:,} rows, the source {source_count:,} ({why})")

    def _note(self, ctx: SyncContext, info: TableInfo, stats: TableStats, note: str) -> None:
        stats.notes.append(note)
        ctx.log(f"source {self.name}: table {info.name}: {note}")

    def _check_unique(self, con: duckdb.DuckDBPyConnection, info: TableInfo, plan: Plan, rows: str) -> None:
        """A key declared in headwater.yml must be unique in ``rows`` (what was just read): raw keeps
        one row per key, so duplicates would silently become one row. Checked on the loaded data, in
        DuckDB: one aggregation over the rows this sync read."""
        if not plan.declared_key or not plan.key or plan.mode == "full":  # a full reload merges nothing: duplicates stay rows
            return
        keys = ", ".join(ident(k) for k in plan.key)
        found = con.execute(f"SELECT {keys}, count(*) FROM {rows} GROUP BY ALL HAVING count(*) > 1 LIMIT 1").fetchone()
        if found is None:
            return
        *values, count = found
        shown = ", ".join(f"{k} = {_shown(v)}" for k, v in zip(plan.key, values, strict=True))
        raise ConfigError(
            f"{self.describe()}: the primary key declared for table {info.name} ({', '.join(plan.key)}) is not unique: {count} rows have {shown}",
            why="raw keeps one row per key, so such rows would be merged into one and the others lost; the table was left as it was",
            fix=f"Declare columns that are unique together in sources.{self.name}.overrides.{info.name}.primary_key, or remove it (then the table's own primary key is used, or without one the table is reloaded in full each sync).",
        )

    def _apply_deletes(self, con: duckdb.DuckDBPyConnection, info: TableInfo, plan: Plan, target: str, keys_table: str) -> int:
        """Delete (or tombstone) raw's rows whose keys ``keys_table`` (all the source's) lacks; rows set
        aside as refused that the source no longer has leave the quarantine."""
        if self._refusing.get(info.name):
            quarantine = self._quarantine_of(info)
            con.execute(f"DELETE FROM {quarantine} WHERE rule = {literal(REFUSED_RULE)} AND key NOT IN (SELECT {key_text(plan.key, 'k')} FROM {keys_table} k)")
            if not _tidy_quarantine(con, quarantine, REFUSED_RULE):
                self._refusing.pop(info.name)
        return self._target.delete_gone(con, target, keys_table, plan.key, tombstone=plan.deletes == "tombstone")


def tables_failed(source: str, failures: list[HeadwaterError], stats: list[TableStats]) -> HeadwaterError:
    """The error a source's sync ends with when tables failed (the others synced): the table's own
    error when one failed, else one listing them all. Exit 2 when every failure is the user's to fix
    (bad config, bad data), 75 when every one may pass by itself, else 1."""
    if len(failures) == 1:
        error = failures[0]
    else:
        codes = {f.exit_code for f in failures}
        synced = sum(s.mode not in ("failed", "stale", "pruned", "skipped") for s in stats)
        what = f"Source '{source}': {len(failures)} tables failed ({synced} synced)"
        why = "\n".join(f"- {f.what}" + (f" ({f.why})" if f.why else "") for f in failures)
        fix = " ".join(dict.fromkeys(f.fix for f in failures if f.fix))
        if codes == {ExitCode.USER_ERROR}:
            error = HeadwaterError(what, why=why, fix=fix)
        elif codes == {ExitCode.TRANSIENT}:
            error = TransientFailure(what, why=why, fix=fix)
        else:
            error = RunFailed(what, why=why, fix=fix)
    error.table_stats = list(stats)
    return error


class _Progress:
    """Reports a long read's progress: rows the source says it has sent, else DuckDB's own estimate
    scaled to the source's row estimate."""

    def __init__(self, ctx: SyncContext, info: TableInfo, counter: Callable[[], int | None] | None = None) -> None:
        self.ctx, self.info, self.counter = ctx, info, counter
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Progress:
        if self.ctx.progress is not None:
            # DuckDB computes progress only with its progress bar on; its own printing stays off.
            self.ctx.con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
            self.ctx.report(self.info.name, 0, self.info.estimated_rows)
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def _poll(self) -> None:
        expected = self.info.estimated_rows
        while not self.stop.wait(0.25):
            if self.counter is not None:
                try:
                    sent = self.counter()
                except Exception:  # noqa: BLE001 - progress is best effort, never a reason to fail
                    sent = None
                if sent is not None:
                    self.ctx.report(self.info.name, sent, max(expected or 0, sent) or None)
                    continue
            try:
                fraction = self.ctx.con.query_progress()
            except Exception:  # noqa: BLE001 - progress is best effort, never a reason to fail
                return
            if fraction is not None and fraction >= 0 and expected:
                self.ctx.report(self.info.name, int(expected * min(fraction, 100) / 100), expected)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        close = getattr(self.counter, "close", None)
        if close is not None:
            close()


# Raw tables have no meaningful row order: not keeping the source's lets DuckDB write the scanner's
# parallel streams as they come (less memory). Dictionary compression is most of the CPU a load
# spends compressing, for ~4% smaller files: without it a full load needs ~20% less CPU. Both are
# put back afterwards, and so is the memory limit (`sync_memory_limit`).
LOAD_SETTINGS = {"preserve_insertion_order": "false", "disabled_compression_methods": "'dictionary'"}
# DuckDB's buffer pool would otherwise keep every block a load writes (2.1 GB at 20M rows, under
# DuckDB's default limit of 80% of RAM): a bound well under that keeps the process small whatever the
# table's size, and is faster too (docs/benchmarks.md, "SQL sync"). Not a fixed 700 MB any more: one
# value of a few hundred MB needs a few times its size, so the default grows with the machine.
SYNC_MEMORY_FLOOR = 700 * 1000**2
SYNC_MEMORY_SHARE = 8  # an eighth of the machine's memory


def sync_memory_limit(configured: str | None, machine: int | None = None) -> str:
    """The sync's DuckDB memory limit: the project's ``warehouse.memory_limit`` when set (higher or
    lower than the default: the user knows the machine), else an eighth of the machine's memory, not
    under 700 MB."""
    if configured:
        return configured
    machine = _machine_memory() if machine is None else machine
    return f"{max(SYNC_MEMORY_FLOOR, machine // SYNC_MEMORY_SHARE) // 1000**2}MB"


def _machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's (cgroup) when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


@contextmanager
def _load_settings(con: duckdb.DuckDBPyConnection, memory_limit: str | None = None) -> Iterator[None]:
    settings = {**LOAD_SETTINGS, "memory_limit": literal(sync_memory_limit(memory_limit))}
    before = {name: one_value(con.execute("SELECT current_setting(?)", [name])) for name in settings}
    for name, value in settings.items():
        con.execute(f"SET {name} = {value}")
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None or value == "":
                con.execute(f"RESET {name}")
            else:
                con.execute(f"SET {name} = {literal(str(value)) if isinstance(value, str) else value}")


@contextmanager
def _checkpoint_settings(con: duckdb.DuckDBPyConnection, *, compact: bool, at_commit: bool = False) -> Iterator[None]:
    """How the sync's changes get into the database file: by the next checkpoint (the last table's
    COMMIT with ``at_commit``, else an explicit CHECKPOINT; closing the connection would do it too).

    ``at_commit``: the commit checkpoints right away, and DuckDB then skips writing the changes to the
    write-ahead log first (one write of the rows instead of two: ~12 ms for 20k rows). Only for the
    last table: every checkpoint has a fixed cost, so earlier tables' commits go to the log.

    ``compact``: updates are a delete plus an insert, so every incremental sync leaves deleted rows in
    old row groups and a small new row group at the end, and DuckDB's checkpoint merges such row
    groups when it can (rewriting them: 0.1-0.4 s for a few 100k rows, every other sync). Only syncs
    that made a full pass over a table (hourly for big ones, every sync for small ones) compact; the
    syncs between write just their own rows and leave the merging to the next pass."""
    names = ["max_vacuum_tasks", *(["checkpoint_threshold"] if at_commit else [])]
    before = {name: one_value(con.execute("SELECT current_setting(?)", [name])) for name in names}
    if not compact:
        con.execute("SET max_vacuum_tasks = 0")
    if at_commit:
        con.execute("SET checkpoint_threshold = '0b'")
    try:
        yield
    finally:
        for name, value in before.items():
            con.execute(f"SET {name} = {literal(str(value))}")


def _warehouse_failure(exc: duckdb.Error) -> bool:
    """Whether an error met while syncing a table is the warehouse's own (its disk is full, or DuckDB
    invalidated the database after such an error), which the run must report as such, not as the
    source's table failing."""
    return isinstance(exc, duckdb.FatalException) or disk_full(exc, Path(".")) is not None


def _raw_tables(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, dict[str, str]]:
    """Every table in a raw schema with its columns (without Headwater's own), in their order."""
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = ? ORDER BY table_name, column_index",
        [schema],
    ).fetchall()
    tables: dict[str, dict[str, str]] = {}
    for table, name, duck_type in rows:
        columns = tables.setdefault(table, {})
        if name not in (SYNCED_AT, DELETED_AT):
            columns[name] = duck_type
    return tables


def _max(con: duckdb.DuckDBPyConnection, target: str, column: str) -> Any:
    return _jsonable(one_value(con.execute(f"SELECT max({ident(column)}) FROM {target}")))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def _looks_temporal(duck_type: str) -> bool:
    t = normalise(duck_type)
    return t.startswith("TIMESTAMP") or t == "DATE"


def _hash_signature(info: TableInfo) -> str:
    """What the stored row hashes were computed over: the hash's version and the source's columns."""
    columns = "\n".join(f"{c.name}\t{c.source_type}\t{info.read_exprs.get(c.name, '')}" for c in info.columns)
    return f"{HASH_VERSION}:{hashlib.sha256(columns.encode()).hexdigest()[:16]}"


def _integer_key(info: TableInfo, key: list[str]) -> bool:
    """Keys that go into a source query as plain numbers (no quoting, collation or time zone)."""
    columns = [info.column(k) for k in key]
    return bool(key) and all(c is not None and normalise(c.type) in _INTEGER_TYPES for c in columns)


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _shown(value: Any) -> str:
    """A key value for a message: text quoted, the rest as written, long values cut."""
    text = repr(value) if isinstance(value, str) else ("NULL" if value is None else str(value))
    return text if len(text) <= 80 else text[:77] + "…"


def _example_key(info: TableInfo) -> str:
    """A column of the table to show in an example key: one named like an id if there is one."""
    names = [c.name for c in info.columns]
    likely = [n for n in names if n.lower() == "id" or n.lower().endswith(("_id", "_no", "id"))]
    name = (likely or names or ["id"])[0]
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else '"' + name.replace('"', '\\"') + '"'


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _some(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" … ({len(names)} in all)" if len(names) > limit else "")
