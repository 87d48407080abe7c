"""SQLite files, read through DuckDB's sqlite extension (no rows pass through Python).

A SQLite file is local and cheap to read in full, so tables with a key sync by comparison (read
everything, write only rows that differ, delete keys that are gone): exact whatever the application
does with its timestamps. A cursor can still be set per table for very large files.

SQLite types values, not columns: a column declared INTEGER may hold ``'five'``, a DATE column
``'2024-02-30'`` or a unix time. Each column has the DuckDB type its declaration names (the table in
docs/sync.md), and each value is checked in SQLite against it (`_misfit`) before it is read. A value
that does not fit is never read as another value: with ``on_type_mismatch: quarantine`` (the
default) its row is left out of raw and listed in ``raw_<source>.<table>__quarantine`` with the
reason; with ``text`` its column is synced as text. The read is DuckDB's own table scan when every
value fits and every column is of a type it reads exactly (`_read_path`; on other values it fails or
reads a number in a DATE column as seconds since 1970), else text written so that DuckDB's cast
gives back exactly the value SQLite holds (`_read`).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import duckdb

from headwater.config.sources import SQLiteSettings
from headwater.errors import ConfigError, HeadwaterError, TransientFailure, first_line
from headwater.sqltext import ident, literal, one_row, one_value
from headwater.sync.context import SyncContext
from headwater.sync.engine import quarantine_table, raw_schema
from headwater.sync.sql import Column, SqlSource, TableInfo, key_text, set_quarantined, unfit, unfit_error
from headwater.sync.stats import TableStats
from headwater.warehouse import require_extension

_DECLARED_DECIMAL = re.compile(r"^\s*(?:NUMERIC|DECIMAL)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)\s*$", re.IGNORECASE)
_DATE = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
_MARK = "\x01"  # starts the text a value that does not fit is read as; `_decode` stops the read on it (a text's own is doubled)
_DOUBLE_EXACT = 2**53  # integers beyond it have no exact DOUBLE
# A real as text DuckDB reads back as the same double: SQLite's printf gets the 17th significant digit
# wrong now and then (1.7976931348623025e+308 came back one step lower); 21 digits always read back.
_EXACT_REAL = "%!.20e"
# Types DuckDB's scanner reads exactly as SQLite holds them, once the check has passed every value of
# the column (`_scanner_unsafe` names the values it would still read otherwise).
_SCANNED_EXACTLY = frozenset({"BIGINT", "DOUBLE", "VARCHAR", "DATE", "TIMESTAMP", "BLOB"})


class SQLiteSource(SqlSource):
    kind = "sqlite"
    settings: SQLiteSettings
    scan = True  # read with DuckDB's scanner where the check allows it (`_read_path`); off: always the text read

    def __init__(self, name: str, settings: SQLiteSettings, root: Path) -> None:
        super().__init__(name, settings)
        self.path = (root / settings.path).resolve()
        self._columns: dict[str, list[_SourceColumn]] = {}  # table -> its columns as declared, with their DuckDB types
        self._keys: dict[str, str] = {}  # table -> SQLite expression of a row's key as text, for the quarantine
        self._exclude: dict[str, str] = {}  # table -> SQLite condition of rows left out of this sync (quarantined)
        self._scannable: dict[str, bool] = {}  # table -> the check found no value the scanner would read inexactly
        self._scanned: dict[str, bool] = {}  # table -> this transaction reads it with DuckDB's scanner
        self._watches: dict[str, _Watch] = {}  # table -> commits to the file since before its check
        self._text_only: set[str] = set()  # tables whose scan saw the file change: read as text for the rest of this sync

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        self._check_file()
        require_extension(con, "sqlite")
        con.execute(f"ATTACH {literal(str(self.path))} AS {self.alias} (TYPE sqlite, READ_ONLY)")

    # --- catalog -------------------------------------------------------------------------------

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
                key = [c for c, _ in sorted(((n, pk) for n, (_, pk) in declared.items() if pk), key=lambda item: item[1])]
                source = [_SourceColumn(r[0], declared.get(r[0], ("", 0))[0], _duck_type(declared.get(r[0], ("", 0))[0], r[1]), scanned=r[1]) for r in described]
                self._columns[name] = source
                self._keys[name] = key_text(key or (["rowid"] if kind == "table" else []))
                columns = [Column(c.name, c.type, c.declared or c.type) for c in source]
                tables[name] = TableInfo(name, columns, key, [], kind, parallel_ok=True)
        return tables

    def connection_error(self, exc: Exception) -> HeadwaterError:
        text = str(exc)
        if (unfit := unfit_error(self.name, text, fix=_CHANGED_WHILE_READ.format(source=self.name))) is not None:
            return unfit
        if "locked" in text.lower() or "busy" in text.lower():
            return TransientFailure(f"Source '{self.name}': {self.path} is locked by another program", why=first_line(text), fix="This usually passes; the run is retried.")
        return HeadwaterError(
            f"Source '{self.name}': SQLite error reading {self.path}", why=first_line(text), fix="See SQLite's message above: fix the table or view in the file, or leave it out with tables: exclude."
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

    # --- values that do not fit ----------------------------------------------------------------

    def _sync_table(self, ctx: SyncContext, info: TableInfo, raw_columns: dict[str, str] | None, *, last: bool = True, rescan: bool = False) -> TableStats:
        try:
            return super()._sync_table(ctx, info, raw_columns, last=last, rescan=rescan)
        except _ChangedWhileScanned:  # rolled back: the text read guards each value it reads
            self._text_only.add(info.name)
            ctx.log(f"source {self.name}: table {info.name}: the file changed while DuckDB's scanner read it; reading it again as text")
            return super()._sync_table(ctx, info, raw_columns, last=last, rescan=rescan)

    def begin(self, con: duckdb.DuckDBPyConnection, table: TableInfo) -> dict[str, object]:
        """First in the table's transaction: find the values that do not fit their column (one pass
        in SQLite; their rows only when there are any), then quarantine their rows or read their
        columns as text, as the source is set; the quarantine is replaced in this transaction with
        raw's rows. Then choose the read (`_read_path`)."""
        self._exclude.pop(table.name, None)
        self._scannable.pop(table.name, None)
        self._watch(table.name)  # before the check: a commit from here to `end` is seen there
        checked = [(i, c, cond) for i, c in enumerate(self._columns[table.name]) if (cond := _misfit(self.quote(c.name), c.type)) is not None]
        found = self._find_misfits(con, table, checked)
        self._scanned[table.name] = self._read_path(table, found)
        if not found:
            set_quarantined(con, raw_schema(self.name), quarantine_table(table.name, self._target.max_identifier), "type", None)
        elif self.settings.on_type_mismatch == "text":
            set_quarantined(con, raw_schema(self.name), quarantine_table(table.name, self._target.max_identifier), "type", None)
            self._read_as_text(table, found)
        else:
            self._quarantine(con, table, checked, found)
        con.execute("DROP TABLE IF EXISTS _hw_misfits")
        return {}

    def end(self, con: duckdb.DuckDBPyConnection, table: TableInfo) -> None:
        """After the reads, before the commit. The scanner reads on connections of its own, outside
        the snapshot the check saw: a commit between the check and the end of the read could have
        put a value that does not fit where the scanner reads it as another (a number in a TIMESTAMP
        column as seconds since 1970), so the table is read again, as text (`_sync_table`)."""
        watch = self._watches.pop(table.name, None)
        changed = watch is not None and watch.changed()
        if self._scanned.pop(table.name, False) and changed:
            raise _ChangedWhileScanned(table.name)

    def _watch(self, table: str) -> None:
        if (old := self._watches.pop(table, None)) is not None:
            old.close()
        self._watches[table] = _Watch(self._catalog())

    def _read_path(self, table: TableInfo, found: dict[str, _Misfits]) -> bool:
        """True: DuckDB's scanner reads the table (3-10x faster than the text read on large tables):
        when every value fits and every column's type is one the scanner reads exactly as SQLite
        holds it (`_SCANNED_EXACTLY`, declared as the scanner sees it: not DECIMAL(p,s), not untyped)."""
        return (
            self.scan
            and not found
            and table.name not in self._text_only
            and self._scannable.pop(table.name, False)
            and all(c.type == c.scanned and c.type in _SCANNED_EXACTLY and not c.as_text for c in self._columns[table.name])
        )

    def _find_misfits(self, con: duckdb.DuckDBPyConnection, table: TableInfo, checked: list[tuple[int, _SourceColumn, str]]) -> dict[str, _Misfits]:
        """Per column with values that do not fit: how many, and one of them (its storage class and
        text); and whether the scanner would read every value exactly (``_scannable``). One
        aggregate pass in SQLite; only when a value does not fit, a second sends those rows to the
        temp table ``_hw_misfits``: the key ``k``, and per checked column ``t<i>``/``v<i>`` (storage
        class, value), NULL where that column's value fits."""
        columns = self._columns[table.name]
        risky = [(i, cond) for i, c in enumerate(columns) if (cond := _scanner_unsafe(self.quote(c.name), c.type)) is not None]
        sums = [f"sum({cond}) AS m{i}" for i, _, cond in checked] + [f"sum({cond}) AS u{i}" for i, cond in risky]
        aggregate = f"SELECT {', '.join(sums)} FROM {self.quote(table.name)}"
        counts = [int(n or 0) for n in one_row(con.execute(f"SELECT * FROM sqlite_query({literal(self.alias)}, {literal(aggregate)})"))] if sums else []
        self._scannable[table.name] = not any(counts[len(checked) :])
        if not any(counts[: len(checked)]):
            return {}
        picks = ", ".join(f"CASE WHEN {cond} THEN typeof({self.quote(c.name)}) END AS t{i}, CASE WHEN {cond} THEN {_as_text(self.quote(c.name))} END AS v{i}" for i, c, cond in checked)
        where = " OR ".join(cond for _, _, cond in checked)
        sql = f"SELECT {self._keys[table.name]} AS k, {picks} FROM {self.quote(table.name)} WHERE {where}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE _hw_misfits AS SELECT * FROM sqlite_query({literal(self.alias)}, {literal(sql)})")
        aggregates = ", ".join(f"count(t{i}), any_value([t{i}, v{i}]) FILTER (WHERE t{i} IS NOT NULL)" for i, _, _ in checked)
        row = one_row(con.execute(f"SELECT {aggregates} FROM _hw_misfits"))
        found: dict[str, _Misfits] = {}
        for n, (_, c, _) in enumerate(checked):
            count, example = row[2 * n], row[2 * n + 1]
            if count:
                found[c.name] = _Misfits(c, count, f"{example[0]} {_show(example[1])}")
        return found

    def _read_as_text(self, table: TableInfo, found: dict[str, _Misfits]) -> None:
        source = self._columns[table.name]
        for i, column in enumerate(table.columns):
            if (misfits := found.get(column.name)) is not None:
                source[i] = _SourceColumn(column.name, source[i].declared, "VARCHAR", scanned=source[i].scanned, as_text=True)
                table.columns[i] = Column(column.name, "VARCHAR", column.source_type)
                table.read_notes.append(
                    f"column {column.name} is declared {column.source_type} but {misfits.count:,} value(s) are not {misfits.expected} "
                    f"(e.g. {misfits.example}): the column is synced as text (on_type_mismatch: text)"
                )

    def _quarantine(self, con: duckdb.DuckDBPyConnection, table: TableInfo, checked: list[tuple[int, _SourceColumn, str]], found: dict[str, _Misfits]) -> None:
        parts = [
            f"SELECT k AS key, {literal(c.name)} AS column_name, v{i} AS original_value, 'type' AS rule, "
            f"{literal(f'expected {found[c.name].expected} (declared {c.declared or c.type}), found ')} || t{i} AS message FROM _hw_misfits WHERE t{i} IS NOT NULL"
            for i, c, _ in checked
            if c.name in found
        ]
        set_quarantined(con, raw_schema(self.name), quarantine_table(table.name, self._target.max_identifier), "type", " UNION ALL ".join(parts))
        self._exclude[table.name] = " OR ".join(cond for _, _, cond in checked)
        table.quarantined = one_value(con.execute("SELECT count(*) FROM _hw_misfits"))
        table.quarantine_by_rule = {f"type ({name})": m.count for name, m in found.items()}
        table.read_notes += [f"column {name}: {m.count:,} value(s) are not {m.expected} (e.g. {m.example}): their rows are quarantined" for name, m in found.items()]
        table.read_notes.append(f"{table.quarantined:,} row(s) set aside in {raw_schema(self.name)}.{quarantine_table(table.name, self._target.max_identifier)} (on_type_mismatch: quarantine)")

    # --- reads ---------------------------------------------------------------------------------

    def relation(self, con: duckdb.DuckDBPyConnection, table: TableInfo, *, where: str | None = None, columns: list[str] | None = None, parallel: bool = True) -> str:
        """The rows that fit (all of them, or those not quarantined), typed in DuckDB from the text
        `_read` gives; ``where`` (a cursor) compares the typed values, as DuckDB writes them."""
        wanted = [c for c in self._columns[table.name] if columns is None or c.name in columns]
        if self._scanned.get(table.name):  # every value checked (`_read_path`); `end` makes sure none changed since
            scan = f"(SELECT {', '.join(ident(c.name) for c in wanted)} FROM {self.alias}.main.{self.quote(table.name)})"
            return f"(SELECT * FROM {scan} WHERE {where})" if where else scan
        sql = f"SELECT {', '.join(f'{_read(self.quote(c.name), c.type, c.as_text)} AS {self.quote(c.name)}' for c in wanted)} FROM {self.quote(table.name)}"
        if excluded := self._exclude.get(table.name):
            sql += f" WHERE NOT ({excluded})"
        key = key_text(table.primary_key, "s") if set(table.primary_key) <= {c.name for c in wanted} else "'(no key)'"
        typed = ", ".join(f"{_decode(c, table.name, key)} AS {ident(c.name)}" for c in wanted)
        read = f"(SELECT {typed} FROM sqlite_query({literal(self.alias)}, {literal(sql)}) AS s)"
        return f"(SELECT * FROM {read} WHERE {where})" if where else read

    def count_relation(self, table: TableInfo) -> str:
        excluded = self._exclude.get(table.name)
        return f"sqlite_query({literal(self.alias)}, {literal(f'SELECT count(*) AS n FROM {self.quote(table.name)}' + (f' WHERE NOT ({excluded})' if excluded else ''))})"

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


class _Misfits:
    """A column's values that do not fit: how many, one of them (storage class and value), what fits."""

    def __init__(self, column: _SourceColumn, count: int, example: str) -> None:
        self.count, self.example, self.expected = count, example, _expected(column.type)


class _SourceColumn:
    """A column as SQLite declares it, the DuckDB type raw gives it (and the one DuckDB's scanner
    reads it as), and whether it is read as text."""

    def __init__(self, name: str, declared: str, duck_type: str, *, scanned: str = "", as_text: bool = False) -> None:
        self.name, self.declared, self.type, self.scanned, self.as_text = name, declared, duck_type, scanned, as_text


class _Watch:
    """Commits to the SQLite file by anyone, from its start to `changed` (SQLite's data_version)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.version = self._version()

    def _version(self) -> int:
        return int(one_value(self.connection.execute("PRAGMA data_version")))

    def changed(self) -> bool:
        try:
            return self._version() != self.version
        finally:
            self.close()

    def close(self) -> None:
        self.connection.close()


class _ChangedWhileScanned(Exception):
    """The file changed between a table's check and the end of its scan: read it again, as text."""


def _duck_type(declared: str, scanned: str) -> str:
    """Raw's type: DuckDB's sqlite extension's (from the declaration's affinity: BIGINT, DOUBLE, DATE,
    TIMESTAMP, VARCHAR, BLOB), except that NUMERIC(p,s)/DECIMAL(p,s) with p <= 38 are DECIMAL(p,s),
    as from PostgreSQL and MySQL (the extension would give DOUBLE), and that a column declared without
    a type is VARCHAR: SQLite keeps its values as they were written (numbers as numbers, text as
    text), and the extension's BLOB would turn 42 into the bytes b'42'. Blobs in such a column do not
    fit (`_misfit`): quarantined, or the column read as text (blobs as x'…')."""
    match = _DECLARED_DECIMAL.match(declared)
    if match and 1 <= int(match.group(1)) <= 38 and int(match.group(2) or 0) <= int(match.group(1)):
        return f"DECIMAL({int(match.group(1))},{int(match.group(2) or 0)})"
    if not declared.strip() and scanned == "BLOB":
        return "VARCHAR"
    return scanned


def _decimal(duck_type: str) -> tuple[int, int] | None:
    match = re.match(r"^DECIMAL\((\d+),(\d+)\)$", duck_type)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _misfit(c: str, duck_type: str) -> str | None:
    """A SQLite condition: the value of ``c`` is not one ``duck_type`` holds exactly (None: all fit).
    NULL always fits. Never NULL itself (SQLite's date functions give NULL for text that is no date,
    and a NULL condition would leave a row out of both raw and the quarantine). A CASE, not
    coalesce(): SQLite stops evaluating AND/OR early only where it branches on them (CASE WHEN,
    WHERE), and in coalesce() computed every date function of the TIMESTAMP test for every value."""
    condition = _misfit_condition(c, duck_type)
    return None if condition is None else f"CASE WHEN NOT ({condition}) THEN 0 ELSE 1 END"


def _misfit_condition(c: str, duck_type: str) -> str | None:
    if duck_type == "BIGINT":
        return f"typeof({c}) NOT IN ('integer', 'null')"
    if duck_type == "DOUBLE":
        return f"typeof({c}) NOT IN ('real', 'integer', 'null') OR (typeof({c}) = 'integer' AND ({c} > {_DOUBLE_EXACT} OR {c} < -{_DOUBLE_EXACT}))"
    if (decimal := _decimal(duck_type)) is not None:
        p, s = decimal
        whole = p - s  # digits before the point
        too_big_int = f" OR (typeof({c}) = 'integer' AND ({c} >= {10**whole} OR {c} <= -{10**whole}))" if whole <= 18 else ""
        return (
            f"typeof({c}) NOT IN ('integer', 'real', 'null'){too_big_int}"
            f" OR (typeof({c}) = 'real' AND (round({c}, {s}) <> {c} OR abs({c}) >= 1e{whole}))"
        )
    if duck_type == "DATE":
        midnight = f"({c} GLOB '{_DATE} 00:00:00' AND date({c}, '+0 days') || ' 00:00:00' = {c})"
        return f"{c} IS NOT NULL AND NOT (typeof({c}) = 'text' AND (({c} GLOB '{_DATE}' AND date({c}, '+0 days') = {c}) OR {midnight}))"
    if duck_type == "TIMESTAMP":
        # The shape nearly every value has first, on the value itself: one GLOB and one round trip
        # through datetime() (strftime's format makes it 3x slower; the general test below repeats
        # the CASE that drops a Z in every term). The same test as `seconds` for these values.
        usual = f"({c} GLOB '{_DATE} [0-9][0-9]:[0-9][0-9]:[0-9][0-9]' AND datetime({c}, '+0 days') = {c})"
        v = f"(CASE WHEN {c} GLOB '*Z' THEN substr({c}, 1, length({c}) - 1) ELSE {c} END)"  # Z: UTC, which naive SQLite times are
        day = f"({v} GLOB '{_DATE}' AND date({v}, '+0 days') = {v})"
        minutes = f"({v} GLOB '{_DATE}[ T][0-9][0-9]:[0-9][0-9]' AND strftime('%Y-%m-%d %H:%M', {v}, '+0 days') = replace({v}, 'T', ' '))"
        seconds = (
            f"(({v} GLOB '{_DATE}[ T][0-9][0-9]:[0-9][0-9]:[0-9][0-9]' OR ({v} GLOB '{_DATE}[ T][0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9]*' "
            f"AND length({v}) <= 26 AND substr({v}, 21) NOT GLOB '*[^0-9]*')) "
            f"AND strftime('%Y-%m-%d %H:%M:%S', substr({v}, 1, 19), '+0 days') = replace(substr({v}, 1, 19), 'T', ' '))"
        )
        return f"{c} IS NOT NULL AND NOT (typeof({c}) = 'text' AND ({usual} OR {day} OR {minutes} OR {seconds}))"
    if duck_type == "VARCHAR":
        return f"typeof({c}) = 'blob'"
    return None  # BLOB: any value, as its bytes (text and numbers as their text's)


def _scanner_unsafe(c: str, duck_type: str) -> str | None:
    """A SQLite condition: DuckDB's scanner would read this value, which fits, otherwise than the
    text read (a real in a VARCHAR or BLOB column as SQLite's 15-digit text: 0.30000000000000004
    as '0.3'). None: it reads every value that fits exactly."""
    return f"typeof({c}) = 'real'" if duck_type in ("VARCHAR", "BLOB") else None


def _read(c: str, duck_type: str, as_text: bool = False) -> str:
    """The SQLite expression of the text DuckDB casts to ``duck_type`` (`_convert`) giving back exactly
    the value SQLite holds. A value that does not fit is read as the mark (`_MARK` and its storage
    class), so a value changed between the check and the read stops the read (`_decode`): it is
    never loaded as another value."""
    if as_text or duck_type == "VARCHAR":
        text = _as_text(c)
    elif duck_type == "DOUBLE":
        text = f"CASE WHEN {c} IS NOT NULL THEN printf('{_EXACT_REAL}', {c}) END"
    elif (decimal := _decimal(duck_type)) is not None:
        text = f"CASE typeof({c}) WHEN 'real' THEN printf('%.{decimal[1]}f', {c}) ELSE {c} END"  # fits: the real is that decimal's double
    elif duck_type == "BLOB":
        return f"CASE typeof({c}) WHEN 'null' THEN NULL WHEN 'blob' THEN hex({c}) ELSE hex({_as_text(c)}) END"
    else:
        text = c
    misfit = None if as_text else _misfit(c, duck_type)
    if misfit is None:
        return text
    if duck_type == "VARCHAR":  # text may itself start with the mark: doubled, so that a mark stands alone (`_decode`)
        text = f"CASE WHEN {c} GLOB {literal(_MARK + '*')} THEN {literal(_MARK)} || {c} ELSE {text} END"
    return f"CASE WHEN {misfit} THEN {literal(_MARK)} || typeof({c}) ELSE {text} END"


def _as_text(c: str) -> str:
    """A value as text, exactly: an integer in decimal, a real as SQLite writes it (15 digits), or
    with 17 digits, when that reads back as the same double, else with 21; a blob as the literal x'…'."""
    return (
        f"CASE typeof({c}) WHEN 'real' THEN CASE WHEN CAST(CAST({c} AS TEXT) AS REAL) = {c} THEN CAST({c} AS TEXT) "
        f"WHEN CAST(printf('%!.17g', {c}) AS REAL) = {c} THEN printf('%!.17g', {c}) ELSE printf('{_EXACT_REAL}', {c}) END "
        f"WHEN 'blob' THEN 'x''' || hex({c}) || '''' ELSE CAST({c} AS TEXT) END"
    )


def _decode(column: _SourceColumn, table: str, key: str) -> str:
    """DuckDB expression from the text `_read` gives to raw's value; a text the cast refuses stops the
    read naming the row (a value changed to one that does not fit between the check and the read)."""
    ref = f"s.{ident(column.name)}"
    if column.as_text:
        return f"CAST({ref} AS VARCHAR)"  # no mark: every value is its text
    if column.type == "BLOB":
        return f"unhex({ref})"
    mark, doubled = literal(_MARK), literal(_MARK * 2)
    convert = "CAST({c} AS {t})"
    marked = f"starts_with({{c}}, {mark})"
    if column.type == "VARCHAR":  # `_read` doubles a mark that starts a text
        convert = f"CASE WHEN starts_with({{c}}, {doubled}) THEN substr({{c}}, 2) ELSE {{c}} END"
        marked += f" AND NOT starts_with({{c}}, {doubled})"
    guarded = unfit(convert, marked, table, column.name, "a value its type does not allow (it changed while the table was read)")
    return guarded.format(c=ref, t=column.type, key=key)


def _expected(duck_type: str) -> str:
    if duck_type == "BIGINT":
        return "integers"
    if duck_type == "DOUBLE":
        return "numbers (integers up to 2^53)"
    if (decimal := _decimal(duck_type)) is not None:
        return f"numbers with at most {decimal[1]} decimals and {decimal[0] - decimal[1]} digits before the point"
    if duck_type == "DATE":
        return "dates written YYYY-MM-DD"
    if duck_type == "TIMESTAMP":
        return "timestamps written YYYY-MM-DD[ HH:MM[:SS[.ffffff]]] (UTC, or ending in Z)"
    return "text"


def _show(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 40 else text[:40] + "…")


_CHANGED_WHILE_READ = "Run `headwater sync {source}` again: the file changed while it was read, and the next sync sees the value first."
