"""Conformance: compare every cell of a source database with its ``raw_<source>`` tables.

The source is read through its own client (psycopg, pymysql, sqlite3), never through DuckDB's
scanners, which are what is being tested. Each source value goes through a documented normalisation
(`PG_TYPES`, `mysql_expected`, `sqlite_expected`: what docs/sync.md's type tables say raw holds) and
is then compared with the warehouse's value by `same`, which is exact: the same Python type, the same
value, floats by their bits (NaN is NaN, -0.0 is not 0.0), decimals with their scale. Nothing is
stripped or rounded.

Temporal values from PostgreSQL are compared as text in DuckDB's format (PostgreSQL's dates reach
from 4713 BC to 5874897 AD and have infinities; Python's datetime holds none of those, and DuckDB's
Python client turns infinity into 9999-12-31). Intervals are compared as (months, days, microseconds),
the three fields both PostgreSQL and DuckDB store.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from sync_harness import run_sync

UTC = dt.UTC
SYNCED_AT, DELETED_AT = "_headwater_synced_at", "_headwater_deleted_at"


# --- what is compared -------------------------------------------------------------------------------


@dataclass
class SourceTable:
    """One table or view as the source's own client reads it."""

    name: str
    columns: list[str]
    types: dict[str, Any]  # column -> what the engine's normaliser needs to know about its type
    key: list[str]  # empty: compared as a multiset of rows
    rows: list[tuple[Any, ...]]


@dataclass
class RawTable:
    columns: list[str]
    types: dict[str, str]  # DuckDB types
    rows: list[tuple[Any, ...]]


@dataclass
class Report:
    """Every difference found, each naming table, key, column and both values."""

    problems: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.problems.append(text)

    def check(self, limit: int = 40) -> None:
        if self.problems:
            shown = "\n  ".join(self.problems[:limit])
            more = f"\n  … and {len(self.problems) - limit} more" if len(self.problems) > limit else ""
            raise AssertionError(f"{len(self.problems)} difference(s) between the source and raw:\n  {shown}{more}")


def same(a: Any, b: Any) -> bool:
    """Exact equality: same type and value; floats by bits (NaN equals NaN); decimals with scale."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple() or (a.is_nan() and b.is_nan())
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dt.datetime | dt.time):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


def show(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def compare_table(report: Report, table: SourceTable, raw: RawTable | None, expect: Callable[[Any, Any], Any], expect_type: Callable[[Any], str | None]) -> None:
    """Every column, its DuckDB type, and every cell of ``table`` against ``raw``."""
    if raw is None:
        report.add(f"table {table.name!r}: not in raw")
        return
    for column in table.columns:
        if column not in raw.types:
            report.add(f"table {table.name!r}: column {column!r} is not in raw (raw has {raw.columns})")
        elif (wanted := expect_type(table.types[column])) is not None and raw.types[column] != wanted:
            report.add(f"table {table.name!r}, column {column!r} ({table.types[column]}): raw type {raw.types[column]}, expected {wanted}")
    columns = [c for c in table.columns if c in raw.types]
    positions = [raw.columns.index(c) for c in columns]
    source_rows = [tuple(expect(table.types[c], row[table.columns.index(c)]) for c in columns) for row in table.rows]
    raw_rows = [tuple(row[p] for p in positions) for row in raw.rows]
    if table.key:
        _compare_keyed(report, table, columns, source_rows, raw_rows)
    else:
        _compare_multisets(report, table, source_rows, raw_rows)


def _compare_keyed(report: Report, table: SourceTable, columns: list[str], source_rows: list[tuple[Any, ...]], raw_rows: list[tuple[Any, ...]]) -> None:
    index = [columns.index(k) for k in table.key]

    def by_key(rows: list[tuple[Any, ...]], side: str) -> dict[str, tuple[Any, ...]]:
        keyed: dict[str, tuple[Any, ...]] = {}
        for row in rows:
            key = repr(tuple(row[i] for i in index))
            if key in keyed:
                report.add(f"table {table.name!r}: key {key} twice in {side}")
            keyed[key] = row
        return keyed

    source, raw = by_key(source_rows, "the source"), by_key(raw_rows, "raw")
    for key in source.keys() - raw.keys():
        report.add(f"table {table.name!r}, key {key}: in the source, missing from raw")
    for key in raw.keys() - source.keys():
        report.add(f"table {table.name!r}, key {key}: in raw ({show(raw[key])}), not in the source")
    for key in source.keys() & raw.keys():
        for column, wanted, got in zip(columns, source[key], raw[key], strict=True):
            if not same(wanted, got):
                report.add(f"table {table.name!r}, key {key}, column {column!r}: source {show(wanted)}, raw {show(got)}")


def _compare_multisets(report: Report, table: SourceTable, source_rows: list[tuple[Any, ...]], raw_rows: list[tuple[Any, ...]]) -> None:
    """Tables without a key: each source row must match one raw row exactly, none left over."""
    left = list(raw_rows)
    for row in source_rows:
        match = next((i for i, other in enumerate(left) if same(row, other)), None)
        if match is None:
            report.add(f"table {table.name!r} (no key): source row {show(row, 300)} has no equal row in raw")
        else:
            left.pop(match)
    for row in left:
        report.add(f"table {table.name!r} (no key): raw row {show(row, 300)} is not in the source")


# --- the warehouse side -------------------------------------------------------------------------------

_TEMPORAL = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIME", "TIME WITH TIME ZONE", "INTERVAL")


def read_raw(warehouse: Path, source: str, *, temporal_as_text: bool) -> dict[str, RawTable]:
    """Every table of ``raw_<source>`` (without Headwater's own columns), read in a UTC session.
    Intervals always arrive as (months, days, microseconds); with ``temporal_as_text`` dates, times
    and timestamps arrive as DuckDB's text (lists element by element)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        tables: dict[str, RawTable] = {}
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = ? ORDER BY 1", [f"raw_{source}"]).fetchall()]
        for name in names:
            described = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? ORDER BY column_index", [f"raw_{source}", name]
            ).fetchall()
            columns = [(c, t) for c, t in described if c not in (SYNCED_AT, DELETED_AT)]
            select = ", ".join(_raw_select(c, t, temporal_as_text) for c, t in columns)
            rows = con.execute(f"SELECT {select} FROM {qi(f'raw_{source}')}.{qi(name)}").fetchall()
            tables[name] = RawTable([c for c, _ in columns], dict(columns), [tuple(_raw_value(t, v) for (_, t), v in zip(columns, row, strict=True)) for row in rows])
        return tables
    finally:
        con.close()


def _raw_select(column: str, duck_type: str, temporal_as_text: bool) -> str:
    base = duck_type.removesuffix("[]")
    if not (base == "INTERVAL" or (temporal_as_text and base in _TEMPORAL)):
        return qi(column)
    if duck_type.endswith("[]"):
        return f"list_transform({qi(column)}, x -> {_as_text('x', base)})"
    return _as_text(qi(column), base)


def _as_text(ref: str, duck_type: str) -> str:
    """DuckDB's text of a value. An instant is written from its microseconds: the cast through the
    time zone (ICU) counts in double milliseconds and gets the last digits wrong past year ~285,000."""
    if duck_type == "TIMESTAMP WITH TIME ZONE":
        return f"CASE WHEN isinf({ref}) THEN CAST({ref} AS VARCHAR) ELSE CAST(make_timestamp(epoch_us({ref})) AS VARCHAR) || '+00' END"
    return f"CAST({ref} AS VARCHAR)"


def _raw_value(duck_type: str, value: Any) -> Any:
    if duck_type == "INTERVAL" and value is not None:
        return interval_fields(value)
    if duck_type == "INTERVAL[]" and value is not None:
        return [None if v is None else interval_fields(v) for v in value]
    return value


def qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- values shared by the engines ----------------------------------------------------------------------

_INTERVAL_PART = re.compile(r"([+-]?\d+) (year|years|mon|mons|month|months|day|days)\b")
_INTERVAL_TIME = re.compile(r"([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$")


def interval_fields(text: str) -> tuple[int, int, int]:
    """(months, days, microseconds) of an interval written by PostgreSQL (IntervalStyle postgres) or DuckDB."""
    months = days = micros = 0
    rest = text.strip()
    for number, unit in _INTERVAL_PART.findall(rest):
        n = int(number)
        if unit.startswith("year"):
            months += 12 * n
        elif unit.startswith("mon"):
            months += n
        else:
            days += n
    clock = _INTERVAL_TIME.search(rest)
    if clock:
        sign, hours, minutes, seconds, fraction = clock.groups()
        value = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1_000_000 + int((fraction or "").ljust(6, "0"))
        micros = -value if sign == "-" else value
    leftover = _INTERVAL_TIME.sub("", _INTERVAL_PART.sub("", rest)).strip()
    if leftover:
        raise ValueError(f"cannot read the interval {text!r} (left: {leftover!r})")
    return months, days, micros


def timedelta_fields(value: dt.timedelta) -> tuple[int, int, int]:
    """A duration (MySQL's TIME) as an interval of microseconds only, as DuckDB stores it."""
    return 0, 0, (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def as_float32(value: float) -> float:
    """A real/FLOAT as the 32-bit value it is (clients hand it over as the shortest decimal text)."""
    return struct.unpack(">f", struct.pack(">f", value))[0]


# --- PostgreSQL ----------------------------------------------------------------------------------------------

# Source types whose raw column is VARCHAR holding PostgreSQL's text form (docs/sync.md), loaded as text.
PG_TEXT_TYPES = (
    "inet", "cidr", "macaddr", "macaddr8", "point", "line", "lseg", "box", "path", "polygon", "circle", "bit", "varbit",
    "xml", "tsvector", "tsquery", "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange", "oid", "pg_lsn",
)  # fmt: skip
# Loaded as PostgreSQL's text too, then mapped by `pg_expected` (exact: no float, no Python date limits).
PG_TEXT_LOADED = ("numeric", "money", "json", "jsonb", "date", "timestamp", "timestamptz", "time", "timetz", "interval")
PG_SAME = {
    "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT", "float8": "DOUBLE", "bool": "BOOLEAN", "text": "VARCHAR", "varchar": "VARCHAR",
    "bpchar": "VARCHAR", "uuid": "UUID", "bytea": "BLOB", "json": "JSON", "jsonb": "JSON", "date": "DATE", "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE", "time": "TIME", "timetz": "TIME WITH TIME ZONE", "interval": "INTERVAL", "float4": "FLOAT",
    "money": "DECIMAL(20,2)", "name": "VARCHAR",
}  # fmt: skip


@dataclass(frozen=True)
class PgType:
    """A column's type as PostgreSQL's catalog gives it, domains resolved to their base type."""

    base: str  # typname of the (base) type, e.g. int4, numeric, _int4 for arrays
    element: str  # arrays: the element's typname
    typtype: str  # e: enum, d: domain, b: base, ...
    precision: int | None  # numeric(p,s)
    scale: int | None
    label: str  # format_type(), for messages

    def __str__(self) -> str:
        return self.label


PG_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typtype, coalesce(bt.typname, t.typname), coalesce(et.typname, ''),
       CASE WHEN coalesce(bt.typname, t.typname) = 'numeric' AND coalesce(nullif(t.typtypmod, -1), a.atttypmod) > 0
            THEN coalesce(nullif(t.typtypmod, -1), a.atttypmod) END,
       coalesce(array_position(pk.indkey::int2[], a.attnum) - array_lower(pk.indkey::int2[], 1) + 1, 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
ORDER BY c.relname, a.attnum
"""


def pg_connect(dsn: str) -> Any:
    """A psycopg connection that hands over the types of `PG_TEXT_TYPES` and `PG_TEXT_LOADED` as
    PostgreSQL's own text, in ISO dates, UTC and the `postgres` interval style."""
    import psycopg
    from psycopg.types.string import TextLoader

    con = psycopg.connect(dsn, autocommit=True, options="-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c lc_monetary=C")
    for name in PG_TEXT_TYPES + PG_TEXT_LOADED:
        con.adapters.register_loader(name, TextLoader)
    return con


def pg_tables(con: Any, schema: str) -> dict[str, SourceTable]:
    """Every table, partitioned table, view and materialized view of ``schema`` (not partitions,
    which sync through their parent), all rows, as psycopg reads them."""
    found: dict[str, SourceTable] = {}
    keys: dict[str, list[tuple[int, str]]] = {}
    for relname, attname, label, typtype, base, element, typmod, key_position in con.execute(PG_COLUMNS, [schema]).fetchall():
        table = found.setdefault(relname, SourceTable(relname, [], {}, [], []))
        precision = scale = None
        if typmod:
            precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (((typmod - 4) & 0x7FF) ^ 1024) - 1024  # the scale: 11-bit signed
        table.columns.append(attname)
        table.types[attname] = PgType(base, element, typtype, precision, scale, label)
        if key_position:
            keys.setdefault(relname, []).append((key_position, attname))
    for name, table in found.items():
        table.key = [a for _, a in sorted(keys.get(name, []))]
        if _pg_unreadable(con, schema, name):  # a materialized view WITH NO DATA has no rows to read
            table.rows = []
            continue
        select = ", ".join(_pg_select(c, table.types[c]) for c in table.columns)
        table.rows = [tuple(r) for r in con.execute(f"SELECT {select} FROM {qi(schema)}.{qi(name)}").fetchall()]
    return found


def _pg_select(column: str, t: PgType) -> str:
    """An array that raw holds as VARCHAR[] (enums, intervals, money, … : "arrays of other types")
    is read as PostgreSQL's text of each element: the array's own text form, parsed by PostgreSQL."""
    if t.base.startswith("_") and pg_expected_type(t) == "VARCHAR[]":
        return f"{qi(column)}::text::text[]"
    return qi(column)


def _pg_unreadable(con: Any, schema: str, name: str) -> bool:
    row = con.execute("SELECT relkind = 'm' AND NOT relispopulated FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = %s AND relname = %s", [schema, name])
    return bool(row.fetchone()[0])


def pg_expected_type(t: PgType) -> str | None:
    """The DuckDB type docs/sync.md's PostgreSQL table names for a source type."""
    if t.base.startswith("_") and t.element:
        element = PgType(t.element, "", "b", None, None, t.element)
        inner = pg_expected_type(element) if t.element != "numeric" else "VARCHAR"
        if t.element in ("json", "jsonb"):
            return "JSON[]"
        listed = ("int2", "int4", "int8", "float4", "float8", "text", "varchar", "bool", "uuid", "date", "timestamp", "timestamptz", "bpchar")
        return f"{inner}[]" if t.element in listed else "VARCHAR[]"
    if t.typtype == "e":
        return "VARCHAR"
    if t.base == "numeric":
        if t.precision is not None and t.precision <= 38 and 0 <= (t.scale or 0) <= t.precision:
            return f"DECIMAL({t.precision},{t.scale})"
        return "VARCHAR"  # no precision, over 38 digits, a negative scale or one above the precision: exact text
    if t.base in PG_TEXT_TYPES:
        return "VARCHAR"
    return PG_SAME.get(t.base)


def pg_expected(t: PgType, value: Any) -> Any:
    """A value as psycopg read it (see `pg_connect`), as raw should hold it (docs/sync.md)."""
    if value is None:
        return None
    if isinstance(value, list):
        if pg_expected_type(t) == "VARCHAR[]":
            return list(value)  # PostgreSQL's text of each element (see `_pg_select`)
        element = PgType(t.element, "", "b", None, None, t.element)
        return [pg_expected(element, v) for v in value]
    if t.base == "numeric":
        return value if pg_expected_type(t) == "VARCHAR" else Decimal(value)
    if t.base == "money":
        return Decimal(value.replace("$", "").replace(",", ""))
    if t.base == "float4":
        return as_float32(value)
    if t.base == "interval":
        return interval_fields(value)
    if t.base in ("date", "timestamp", "timestamptz"):
        return pg_temporal_text(value)
    if t.base == "bytea":
        return bytes(value)
    return value


_BC = re.compile(r"^(\d{4,}-\d\d-\d\d)(.*) BC$")


def pg_temporal_text(text: str) -> str:
    """PostgreSQL's ISO text of a date or timestamp (UTC session) as DuckDB writes the same value:
    the era as ``(BC)`` after the date."""
    match = _BC.match(text)
    return f"{match.group(1)} (BC){match.group(2)}" if match else text


# --- MySQL / MariaDB ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MyType:
    data_type: str  # information_schema.columns.data_type, e.g. bigint, decimal, datetime
    column_type: str  # e.g. bigint(20) unsigned, decimal(65,30), tinyint(1)
    precision: int | None
    scale: int | None
    json: bool  # MariaDB's JSON: longtext with a json_valid CHECK

    def __str__(self) -> str:
        return self.column_type


MY_COLUMNS = """
SELECT c.table_name, c.column_name, c.data_type, c.column_type, c.numeric_precision, c.numeric_scale, c.column_key = 'PRI',
       EXISTS (SELECT 1 FROM information_schema.check_constraints k WHERE k.constraint_schema = c.table_schema AND k.table_name = c.table_name
               AND k.check_clause LIKE CONCAT('%%json_valid(`', c.column_name, '`)%%'))
FROM information_schema.columns c WHERE c.table_schema = %s ORDER BY c.table_name, c.ordinal_position
"""


def my_tables(con: Any, database: str) -> dict[str, SourceTable]:
    """Every table and view of ``database``, all rows, as pymysql reads them (session in UTC)."""
    found: dict[str, SourceTable] = {}
    with con.cursor() as cur:
        cur.execute(MY_COLUMNS, [database])
        for table_name, column, data_type, column_type, precision, scale, is_key, is_json in cur.fetchall():
            table = found.setdefault(table_name, SourceTable(table_name, [], {}, [], []))
            table.columns.append(column)
            table.types[column] = MyType(data_type, column_type, precision, scale, bool(is_json) or data_type == "json")
            if is_key:
                table.key.append(column)
        for table in found.values():
            cur.execute(f"SELECT {', '.join(_bq(c) for c in table.columns)} FROM {_bq(table.name)}")
            table.rows = [tuple(r) for r in cur.fetchall()]
    return found


def _bq(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


_MY_INTS = {"tinyint": "TINYINT", "smallint": "SMALLINT", "mediumint": "INTEGER", "int": "INTEGER", "bigint": "BIGINT"}
_MY_UINTS = {"tinyint": "UTINYINT", "smallint": "USMALLINT", "mediumint": "UINTEGER", "int": "UINTEGER", "bigint": "UBIGINT"}
_MY_TEXT = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "uuid", "inet4", "inet6")
_MY_BLOB = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")


def my_expected_type(t: MyType) -> str | None:
    """The DuckDB type docs/sync.md's MySQL table names for a source type."""
    if t.json:
        return "JSON"
    if t.column_type.startswith("tinyint(1)"):
        return "BOOLEAN"
    if t.data_type in _MY_INTS:
        return (_MY_UINTS if "unsigned" in t.column_type else _MY_INTS)[t.data_type]
    if t.data_type == "decimal":
        return f"DECIMAL({t.precision},{t.scale})" if (t.precision or 0) <= 38 else "VARCHAR"
    if t.data_type == "bit":
        return "BOOLEAN" if t.column_type == "bit(1)" else "UBIGINT"
    simple = {"float": "FLOAT", "double": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP", "timestamp": "TIMESTAMP WITH TIME ZONE", "time": "INTERVAL", "year": "INTEGER"}
    if t.data_type in simple:
        return simple[t.data_type]
    if t.data_type in _MY_TEXT:
        return "VARCHAR"
    if t.data_type in _MY_BLOB:
        return "BLOB"
    return None


def my_expected(t: MyType, value: Any) -> Any:
    """A value as pymysql read it (UTC session), as raw should hold it (docs/sync.md)."""
    if value is None:
        return None
    if t.data_type in ("date", "datetime", "timestamp") and isinstance(value, str):
        return None  # '0000-00-00' and other non-dates: pymysql gives up and hands over text; raw holds NULL
    if t.data_type == "timestamp":
        return value.replace(tzinfo=UTC)
    if t.data_type == "decimal":
        return Decimal(value) if (t.precision or 0) <= 38 else format(value, "f")
    if t.data_type == "bit":
        number = int.from_bytes(value, "big")
        return bool(number) if t.column_type == "bit(1)" else number
    if t.column_type.startswith("tinyint(1)"):
        return bool(value)
    if t.data_type == "float":
        return as_float32(value)
    if t.data_type == "time":
        return timedelta_fields(value)
    if t.data_type in _MY_BLOB:
        return bytes(value)
    return value


# --- SQLite -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqliteType:
    declared: str  # as written in CREATE TABLE, upper-cased; '' for none

    def __str__(self) -> str:
        return self.declared or "(no type)"


def sqlite_tables(path: Path) -> dict[str, SourceTable]:
    """Every table and view of the file, all rows, as Python's sqlite3 reads them."""
    import sqlite3

    con = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        found: dict[str, SourceTable] = {}
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for name in names:
            info = con.execute(f"PRAGMA table_info({qi(name)})").fetchall()
            columns = [r[1] for r in info]
            key = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
            rows = [tuple(r) for r in con.execute(f"SELECT {', '.join(qi(c) for c in columns)} FROM {qi(name)}")]
            found[name] = SourceTable(name, columns, {r[1]: SqliteType((r[2] or "").upper()) for r in info}, key, rows)
        return found
    finally:
        con.close()


_SQLITE_DECIMAL = re.compile(r"^(?:NUMERIC|DECIMAL)\((\d+),\s*(\d+)\)$")


def sqlite_expected_type(t: SqliteType) -> str | None:
    """DuckDB's sqlite scanner's type for a declared type (SQLite's affinity rules), except that a
    NUMERIC(p,s)/DECIMAL(p,s) column is a DECIMAL(p,s) (issue #15), and text-ish dates are dates."""
    declared = t.declared
    if m := _SQLITE_DECIMAL.match(declared):
        return f"DECIMAL({m.group(1)},{m.group(2)})"
    if "INT" in declared:
        return "BIGINT"
    if any(w in declared for w in ("CHAR", "CLOB", "TEXT")):
        return "VARCHAR"
    if declared in ("REAL", "DOUBLE", "FLOAT") or "DOUBLE" in declared:
        return "DOUBLE"
    if declared == "BLOB":
        return "BLOB"
    if declared == "DATE":
        return "DATE"
    if declared in ("DATETIME", "TIMESTAMP"):
        return "TIMESTAMP"
    return None


def sqlite_expected(t: SqliteType, value: Any) -> Any:
    """A value as sqlite3 read it, as raw should hold it: integers and floats as they are, text as
    text, blobs as bytes, dates and timestamps written as ISO text as dates and timestamps, and
    NUMERIC(p,s) values as exact decimals of scale s."""
    if value is None:
        return None
    wanted = sqlite_expected_type(t)
    if wanted == "DATE":
        return dt.date.fromisoformat(value)
    if wanted == "TIMESTAMP":
        return dt.datetime.fromisoformat(value)
    if wanted == "DOUBLE" and isinstance(value, int):
        return float(value)
    if wanted and wanted.startswith("DECIMAL"):
        scale = int(wanted.split(",")[1].rstrip(")"))
        return Decimal(repr(value) if isinstance(value, float) else str(value)).quantize(Decimal(1).scaleb(-scale))
    return value


# --- the project, the command, the comparison -----------------------------------------------------------------


def write_project(root: Path, sources: dict[str, str]) -> Path:
    """A project folder whose headwater.yml declares ``sources`` (name -> YAML body lines)."""
    root.mkdir(parents=True, exist_ok=True)
    body = "".join(f"  {name}:\n" + "".join(f"    {line}\n" for line in spec.strip().splitlines()) for name, spec in sources.items())
    (root / "headwater.yml").write_text(f"name: conformance\nsources:\n{body}", encoding="utf-8")
    return root


def warehouse_of(project: Path) -> Path:
    return project / ".headwater" / "warehouse" / "build.duckdb"


def sync(project: Path, source: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`headwater sync SOURCE` (the real command, in a process of its own); it must succeed."""
    done = run_sync(project, source, *args, env={"NO_COLOR": "1", "COLUMNS": "200", **(env or {})})
    assert done.returncode == 0, f"headwater sync {source} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@dataclass
class Outcome:
    """What `headwater sync` would have ended with: its exit code and its message."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


def sync_in_process(project: Path, source: str, env: dict[str, str]) -> Outcome:
    """The command's code path without a process of its own (seconds cheaper): load the project,
    sync the source into the build database; errors end as the CLI ends them (a Headwater error's
    exit code and message, anything else 70: a bug)."""
    from headwater.config import load_project
    from headwater.errors import HeadwaterError
    from headwater.sources import open_source
    from headwater.sync import sync_source
    from headwater.warehouse import Warehouse

    try:
        loaded = load_project(project, env=env)
        con = Warehouse(loaded.root, loaded.config.warehouse).connect_build()
        try:
            sync_source(con, open_source(source, loaded.config.sources[source], loaded.root))
        finally:
            con.close()
    except HeadwaterError as exc:
        return Outcome(int(exc.exit_code), stderr=exc.render())
    except Exception as exc:  # noqa: BLE001 - the CLI's funnel: anything else is a bug, exit 70
        return Outcome(70, stderr=f"{type(exc).__name__}: {exc}")
    return Outcome(0)


def assert_conforms(
    source_tables: dict[str, SourceTable],
    warehouse: Path,
    source: str,
    expect: Callable[[Any, Any], Any],
    expect_type: Callable[[Any], str | None],
    *,
    temporal_as_text: bool = False,
    only: Iterable[str] | None = None,
) -> None:
    """Every table of the source (or ``only`` these) equals its raw table, cell by cell."""
    raw = read_raw(warehouse, source, temporal_as_text=temporal_as_text)
    report = Report()
    names = sorted(source_tables) if only is None else list(only)
    for name in names:
        compare_table(report, source_tables[name], raw.get(name), expect, expect_type)
    report.check()
