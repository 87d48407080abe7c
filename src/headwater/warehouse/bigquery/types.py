"""DuckDB's types as a BigQuery warehouse holds them, and BigQuery's as DuckDB reads them back.

The sync keeps raw tables in DuckDB; each table's changed rows leave as Parquet written by DuckDB
(``COPY (SELECT <parquet_column ...> ...) TO 'f.parquet'``) and arrive by a load job into a table
made from `field`'s columns. Each choice below keeps the value exact, or refuses it (`refused`):
the sync stops that table with an error naming column and key rather than store another value.

BigQuery's types: https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types
How a load job reads Parquet's types:
https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-parquet#parquet_conversions

    DuckDB (raw)                        BigQuery    in the Parquet file           read back as (`duck_type`)
    BOOLEAN                             BOOL        BOOLEAN                       BOOLEAN
    TINYINT..BIGINT, UTINYINT..UINTEGER INT64       INT64                         BIGINT
    UBIGINT                             NUMERIC     DECIMAL(38,9)                 DECIMAL(38,9)
    HUGEINT                             BIGNUMERIC  DECIMAL(38,0)                 VARCHAR (exact text)
    DECIMAL(p,s), s<=9 and p-s<=29      NUMERIC     DECIMAL(38,9)                 DECIMAL(38,9)
    DECIMAL(p,s), otherwise             BIGNUMERIC  DECIMAL(p,s)                  VARCHAR (exact text)
    FLOAT, DOUBLE                       FLOAT64     DOUBLE                        DOUBLE
    VARCHAR, ENUM, UUID                 STRING      UTF8 text                     VARCHAR
    BLOB                                BYTES       BYTE_ARRAY                    BLOB
    DATE                                DATE        DATE                          DATE
    TIME, TIME_NS                       TIME        TIME (micros)                 TIME
    TIMESTAMP, _S, _MS, _NS             DATETIME    TIMESTAMP (micros, local)     TIMESTAMP
    TIMESTAMP WITH TIME ZONE            TIMESTAMP   TIMESTAMP (micros, UTC)       TIMESTAMP WITH TIME ZONE
    TIME WITH TIME ZONE, INTERVAL, BIT,
    UHUGEINT, VARINT/BIGNUM, UNION      STRING      their exact text (DuckDB's)   VARCHAR
    JSON                                JSON        JSON                          JSON
    T[], T[n], MAP, STRUCT holding a
    list or MAP (at any depth)          JSON        to_json(value)                JSON
    other STRUCT                        RECORD      a group, each field as above  STRUCT(...)

Why:

- Integers: INT64 holds every signed integer up to BIGINT and unsigned up to UINTEGER. UBIGINT
  (up to 2^64-1) does not fit INT64 and becomes NUMERIC (29 integer digits), HUGEINT (39 digits)
  BIGNUMERIC (38 integer digits). DuckDB writes no Parquet decimal wider than 38 digits, so a
  HUGEINT of 39 digits (|v| >= 10^38) is refused.
- DECIMAL(p,s): NUMERIC holds 29 integer digits and 9 decimals; anything wider is BIGNUMERIC (38
  decimals, 38 integer digits: every DuckDB DECIMAL). BigQuery's parameterised NUMERIC(P,S) types
  are not used: the column's type is BigQuery's plain one, which holds every value of the raw type.
- BIGNUMERIC reads back as its exact text (VARCHAR): DuckDB's DECIMAL stops at 38 digits and
  BIGNUMERIC has up to 76 (a BIGNUMERIC(P,S) column with P <= 38 reads back as DECIMAL(P,S)).
- Timestamps: BigQuery keeps microseconds and 0001-01-01..9999-12-31; DuckDB has infinities, years
  beyond, 24:00:00 as a TIME, and nanoseconds (TIMESTAMP_NS, TIME_NS): refused where they would be
  stored as another value. TIMESTAMP_NS values that are whole microseconds are kept.
- Types BigQuery has no twin for are kept as their exact text, as DuckDB writes them
  (``CAST(v AS VARCHAR)``): TIMETZ (BigQuery's TIME has no offset), DuckDB's INTERVAL (BigQuery's
  INTERVAL is another representation of months, days and time, and no Parquet type loads into it),
  BIT, UHUGEINT (beyond BIGNUMERIC's integers), VARINT/BIGNUM, UNION.
- JSON: BigQuery parses JSON and keeps it normalised (whitespace, number spelling, key order): a raw
  JSON value is equal *as JSON* to what BigQuery holds, not as text.
  https://cloud.google.com/bigquery/docs/reference/standard-sql/json-data
- Lists: BigQuery's ARRAY cannot hold a NULL array (it reads back as []), NULL elements, or arrays of
  arrays (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#array_type), so a
  list column is JSON (``to_json``: exact for NULL, [], NULL elements and nesting). MAP has no twin
  either: JSON. A STRUCT is a RECORD unless a list or MAP is inside it (then JSON), or a field name is
  no BigQuery column name (letters, digits, underscores, not starting with a digit:
  https://cloud.google.com/bigquery/docs/schemas#column_names), or it nests deeper than
  BigQuery's 15 levels (https://cloud.google.com/bigquery/docs/nested-repeated): then JSON too.
- Inside JSON, numbers must be exact as BigQuery stores them (INT64, UINT64 or FLOAT64:
  https://cloud.google.com/bigquery/docs/reference/standard-sql/json_functions#json_encodings), and
  NaN and infinities are no JSON: a nested value holding those is refused (DuckDB's ``to_json``
  would write ``NaN``). A raw JSON column's own numbers are not inspected (BigQuery refuses the load
  of a number it cannot hold, so the table's sync fails with BigQuery's error). Inside JSON, values
  are ``to_json``'s text: dates and timestamps as strings (any of DuckDB's, infinities and
  nanoseconds included), a TIMESTAMP WITH TIME ZONE in the connection's ``TimeZone`` (the same
  instant), a BLOB as its escaped text.
- `refused` takes the raw column's DuckDB type and its conditions read the raw value ``{c}`` (before
  `parquet_column`); a STRUCT's conditions reach into its fields, a list's and a MAP's into their
  elements and values.

`read_table` downloads a BigQuery table (dbt's models: any BigQuery type) into DuckDB exactly,
page by page: over REST (``tabledata.list``) by default, or through the Storage Read API when given
its client. BigQuery's INTERVAL reads back as DuckDB's INTERVAL (both are months, days and
microseconds), GEOGRAPHY as its WKT text, RANGE as its text, JSON as JSON.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType
from google.cloud import bigquery

from headwater.errors import HeadwaterError
from headwater.sqltext import ident, literal

# BigQuery's limits (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types).
_MIN_DATE, _MAX_DATE = "0001-01-01", "9999-12-31"
_MIN_TS, _MAX_TS = "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"
_RANGE = f"BigQuery's range {_MIN_DATE}..{_MAX_DATE}"
_MAX_DEPTH = 15  # nested RECORD levels: https://cloud.google.com/bigquery/docs/nested-repeated
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")

_INT64 = {"tinyint", "smallint", "integer", "bigint", "utinyint", "usmallint", "uinteger"}
_AS_TEXT = {"time with time zone", "interval", "bit", "uhugeint", "bignum", "union"}
_TIMESTAMPS = {"timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns"}


def _parse(duck_type: str) -> DuckDBPyType:
    try:
        return duckdb.sqltype(duck_type)
    except duckdb.Error as exc:
        raise _unsupported(duck_type, str(exc)) from None


def _unsupported(duck_type: str, why: str) -> HeadwaterError:
    return HeadwaterError(
        f"A column has the DuckDB type {duck_type}, which the BigQuery warehouse cannot hold",
        why=why,
        fix="Cast the column to a type BigQuery holds (VARCHAR keeps its text) in the source, or in a file source's column type.",
    )


def _kind(t: DuckDBPyType) -> str:
    return "json" if str(t) == "JSON" else str(t.id)


def _children(t: DuckDBPyType) -> list[tuple[str, DuckDBPyType]]:
    """A STRUCT's fields, a list's element (``child``), a MAP's ``key`` and ``value``, by name."""
    return [(str(name), child) for name, child in t.children if isinstance(child, DuckDBPyType)]


def _decimal(t: DuckDBPyType) -> tuple[int, int]:
    parts = {str(name): value for name, value in t.children}
    return int(str(parts["precision"])), int(str(parts["scale"]))


def _is_numeric(t: DuckDBPyType) -> bool:
    """A DECIMAL(p,s) that BigQuery's NUMERIC (29 integer digits, 9 decimals) holds."""
    p, s = _decimal(t)
    return s <= 9 and p - s <= 29


def _as_record(t: DuckDBPyType, depth: int = 1) -> bool:
    """Is this STRUCT a RECORD (else JSON): no list or MAP inside, BigQuery's names, within its depth."""
    if depth > _MAX_DEPTH:
        return False
    fields = _children(t)  # DuckDB's field names are unique case-insensitively, as BigQuery's must be
    if not fields or not all(_COLUMN_NAME.fullmatch(name) for name, _ in fields):
        return False
    for _, child in fields:
        kind = _kind(child)
        if kind in ("list", "array", "map"):
            return False
        if kind == "struct" and not _as_record(child, depth + 1):
            return False
    return True


def _is_json(t: DuckDBPyType) -> bool:
    """Is a value of this type stored as ``to_json(value)`` in a JSON column?"""
    kind = _kind(t)
    return kind in ("list", "array", "map") or (kind == "struct" and not _as_record(t))


# --- field ------------------------------------------------------------------------------------------


def field(name: str, duck_type: str) -> bigquery.SchemaField:
    """The BigQuery column holding a raw column ``name`` of ``duck_type`` (as ``duckdb_columns()`` names it)."""
    return _field(name, _parse(duck_type), duck_type)


def _field(name: str, t: DuckDBPyType, text: str) -> bigquery.SchemaField:
    kind = _kind(t)
    if kind == "struct" and not _is_json(t):
        return bigquery.SchemaField(name, "RECORD", mode="NULLABLE", fields=[_field(n, c, str(c)) for n, c in _children(t)])
    return bigquery.SchemaField(name, _scalar(t, text), mode="NULLABLE")


def _scalar(t: DuckDBPyType, text: str) -> str:
    kind = _kind(t)
    if _is_json(t) or kind == "json":
        return "JSON"
    if kind == "decimal":
        return "NUMERIC" if _is_numeric(t) else "BIGNUMERIC"
    simple = {
        "boolean": "BOOL",
        "ubigint": "NUMERIC",
        "hugeint": "BIGNUMERIC",
        "float": "FLOAT64",
        "double": "FLOAT64",
        "varchar": "STRING",
        "enum": "STRING",
        "uuid": "STRING",
        "blob": "BYTES",
        "date": "DATE",
        "time": "TIME",
        "time_ns": "TIME",
        "timestamp with time zone": "TIMESTAMP",
    }
    if kind in _INT64:
        return "INT64"
    if kind in _TIMESTAMPS:
        return "DATETIME"
    if kind in _AS_TEXT:
        return "STRING"
    if kind in simple:
        return simple[kind]
    raise _unsupported(text, "BigQuery has no type for it, and Headwater no exact text of it")


# --- parquet_column ---------------------------------------------------------------------------------


def parquet_column(name: str, duck_type: str) -> str:
    """A DuckDB expression over raw's column ``name`` (of ``duck_type``) whose value, written to Parquet
    by DuckDB's COPY, a load job stores in `field`'s column as exactly the raw value (or `refused`)."""
    field(name, duck_type)  # a type BigQuery cannot hold fails here, not in the COPY
    return _out(ident(name), _parse(duck_type))


def _out(expr: str, t: DuckDBPyType) -> str:
    kind = _kind(t)
    if _is_json(t):
        return f"to_json({expr})"  # type JSON: DuckDB writes Parquet's JSON logical type
    if kind == "struct":
        fields = _children(t)
        converted = [_out(f"struct_extract({expr}, {literal(n)})", c) for n, c in fields]
        if all(conv == f"struct_extract({expr}, {literal(n)})" for conv, (n, _) in zip(converted, fields, strict=True)):
            return expr
        packed = ", ".join(f"{ident(n)} := {conv}" for conv, (n, _) in zip(converted, fields, strict=True))
        return f"CASE WHEN ({expr}) IS NULL THEN NULL ELSE struct_pack({packed}) END"
    if kind in _INT64 and kind != "bigint":
        return f"CAST({expr} AS BIGINT)"
    if kind == "ubigint" or (kind == "decimal" and _is_numeric(t)):
        return f"CAST({expr} AS DECIMAL(38,9))"  # NUMERIC's own precision and scale
    if kind == "hugeint":
        return f"CAST({expr} AS DECIMAL(38,0))"
    if kind == "float":
        return f"CAST({expr} AS DOUBLE)"
    if kind in ("enum", "uuid") or kind in _AS_TEXT:
        return f"CAST({expr} AS VARCHAR)"
    if kind in ("timestamp_s", "timestamp_ms", "timestamp_ns"):
        return f"CAST({expr} AS TIMESTAMP)"
    if kind == "time_ns":
        return f"CAST({expr} AS TIME)"
    return expr


# --- refused ----------------------------------------------------------------------------------------


def refused(duck_type: str) -> list[tuple[str, str]]:
    """Values of a raw column of ``duck_type`` that BigQuery would store as another value, or refuse:
    for each kind, a DuckDB condition over ``{c}`` (the raw value) true for such a value, and what it
    is (as `RawTarget.refused`: the sync stops the table with an error naming column and key)."""
    t = _parse(duck_type)
    return [(f"coalesce({condition}, false)", what) for condition, what in _refused("{c}", t, inside_json=False, depth=0)]


def _refused(expr: str, t: DuckDBPyType, *, inside_json: bool, depth: int) -> list[tuple[str, str]]:
    kind = _kind(t)
    if kind in ("list", "array"):
        var = f"x{depth + 1}"
        inner = _refused(var, _children(t)[0][1], inside_json=True, depth=depth + 1)
        return [(f"coalesce(list_bool_or(list_transform({expr}, {var} -> coalesce({cond}, false))), false)", what) for cond, what in inner]
    if kind == "map":
        var = f"x{depth + 1}"
        inner = _refused(var, _children(t)[1][1], inside_json=True, depth=depth + 1)  # keys become JSON's names (text)
        return [(f"coalesce(list_bool_or(list_transform(map_values({expr}), {var} -> coalesce({cond}, false))), false)", what) for cond, what in inner]
    if kind == "struct":
        json = inside_json or _is_json(t)
        return [item for name, child in _children(t) for item in _refused(f"struct_extract({expr}, {literal(name)})", child, inside_json=json, depth=depth)]
    if inside_json:
        return _refused_in_json(expr, t)
    return _refused_scalar(expr, t)


def _refused_scalar(c: str, t: DuckDBPyType) -> list[tuple[str, str]]:
    kind = _kind(t)
    if kind == "date":
        return [
            (f"NOT isfinite({c})", "an infinite date, which BigQuery's DATE cannot hold"),
            (f"isfinite({c}) AND ({c} < DATE '{_MIN_DATE}' OR {c} > DATE '{_MAX_DATE}')", f"a date outside {_RANGE}"),
        ]
    if kind in _TIMESTAMPS:
        found = [
            (f"NOT isfinite({c})", "an infinite timestamp, which BigQuery's DATETIME cannot hold"),
            (f"isfinite({c}) AND (CAST({c} AS TIMESTAMP) < TIMESTAMP '{_MIN_TS}' OR CAST({c} AS TIMESTAMP) > TIMESTAMP '{_MAX_TS}')", f"a timestamp outside {_RANGE}"),
        ]
        if kind == "timestamp_ns":
            found.append((f"isfinite({c}) AND epoch_ns({c}) % 1000 <> 0", "a timestamp with nanoseconds, which BigQuery's microseconds cannot hold"))
        return found
    if kind == "timestamp with time zone":
        return [
            (f"NOT isfinite({c})", "an infinite timestamp, which BigQuery's TIMESTAMP cannot hold"),
            (f"isfinite({c}) AND ({c} < TIMESTAMPTZ '{_MIN_TS}+00' OR {c} > TIMESTAMPTZ '{_MAX_TS}+00')", f"a timestamp outside {_RANGE} (UTC)"),
        ]
    if kind == "time":
        return [(f"{c} > TIME '23:59:59.999999'", "the time 24:00:00, beyond BigQuery's TIME (up to 23:59:59.999999)")]
    if kind == "time_ns":
        return [
            (f"epoch_ns({c}) % 1000 <> 0", "a time with nanoseconds, which BigQuery's microseconds cannot hold"),
            (f"epoch_ns({c}) >= 86400000000000", "the time 24:00:00, beyond BigQuery's TIME (up to 23:59:59.999999)"),
        ]
    if kind == "hugeint":
        bound = "100000000000000000000000000000000000000"  # 10^38
        return [(f"({c} >= {bound} OR {c} <= -{bound})", "a HUGEINT of 39 digits, beyond the 38 that DuckDB writes to Parquet as a decimal")]
    return []


_INT64_MIN, _UINT64_MAX = "-9223372036854775808", "18446744073709551615"


def _refused_in_json(c: str, t: DuckDBPyType) -> list[tuple[str, str]]:
    """Values inside a list, MAP or STRUCT stored as JSON: numbers BigQuery's JSON would not hold exactly."""
    kind = _kind(t)
    if kind in ("float", "double"):
        return [(f"NOT isfinite({c})", "NaN or an infinity inside a nested value, which JSON cannot hold")]
    if kind in ("hugeint", "uhugeint"):
        return [(f"({c} < {_INT64_MIN} OR {c} > {_UINT64_MAX})", "an integer inside a nested value beyond BigQuery JSON's INT64 and UINT64")]
    if kind == "decimal" and _decimal(t)[0] > 15:
        p, s = _decimal(t)
        return [
            (
                f"TRY_CAST(CAST(CAST({c} AS DOUBLE) AS VARCHAR) AS DECIMAL({p},{s})) IS DISTINCT FROM {c}",
                "a decimal inside a nested value that BigQuery's JSON would round (its numbers are FLOAT64 beyond 15 digits)",
            )
        ]
    return []


# --- duck_type and read_table -----------------------------------------------------------------------

_READ = {
    "INTEGER": "BIGINT",
    "INT64": "BIGINT",
    "FLOAT": "DOUBLE",
    "FLOAT64": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "BOOL": "BOOLEAN",
    "STRING": "VARCHAR",
    "BYTES": "BLOB",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP",
    "TIME": "TIME",
    "TIMESTAMP": "TIMESTAMP WITH TIME ZONE",
    "JSON": "JSON",
    "GEOGRAPHY": "VARCHAR",  # WKT text: https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#geography_type
    "INTERVAL": "INTERVAL",
    "RANGE": "VARCHAR",  # its text, e.g. [2024-01-01, UNBOUNDED)
}


def duck_type(field: bigquery.SchemaField) -> str:
    """The DuckDB type a BigQuery column is read back as by `read_table` (spelled as DuckDB's DESCRIBE does)."""
    return str(duckdb.sqltype(_sql_type(field)))


def _sql_type(field: bigquery.SchemaField) -> str:
    """`duck_type` as SQL text (a STRUCT's field names quoted)."""
    inner = _element_type(field)
    return f"{inner}[]" if (field.mode or "").upper() == "REPEATED" else inner


def _element_type(field: bigquery.SchemaField) -> str:
    kind = (field.field_type or "").upper()
    if kind in ("RECORD", "STRUCT"):
        return "STRUCT(" + ", ".join(f"{ident(f.name)} {_sql_type(f)}" for f in field.fields) + ")"
    if kind in ("NUMERIC", "DECIMAL"):
        if field.precision is not None:
            return f"DECIMAL({field.precision},{field.scale or 0})"
        return "DECIMAL(38,9)"
    if kind in ("BIGNUMERIC", "BIGDECIMAL"):
        if field.precision is not None and field.precision <= 38:
            return f"DECIMAL({field.precision},{field.scale or 0})"
        return "VARCHAR"  # up to 76 digits: DuckDB's DECIMAL stops at 38
    if kind in _READ:
        return _READ[kind]
    raise HeadwaterError(
        f"Column {field.name} has the BigQuery type {kind}, which Headwater cannot read into DuckDB",
        why="Headwater knows no DuckDB type holding it exactly",
        fix="Cast the column in the dbt model (e.g. to STRING) and build again.",
    )


# The texts REST sends for these are read as text: the client would make Python objects Arrow
# cannot hold (INTERVAL, RANGE) or wider decimals than DuckDB reads (BIGNUMERIC).
_AS_STRING = {"INTERVAL", "RANGE", "BIGNUMERIC", "BIGDECIMAL"}


def _rest_field(field: bigquery.SchemaField) -> bigquery.SchemaField:
    """``field`` as `read_table` asks REST for it: the types in `_AS_STRING` as STRING (their canonical text)."""
    kind = (field.field_type or "").upper()
    if kind in ("RECORD", "STRUCT"):
        return bigquery.SchemaField(field.name, "RECORD", mode=field.mode, fields=[_rest_field(f) for f in field.fields])
    if kind in _AS_STRING:
        return bigquery.SchemaField(field.name, "STRING", mode=field.mode)
    return field


# BigQuery's canonical INTERVAL text, "[sign]Y-M [sign]D [sign]H:M:S[.F]":
# https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#interval_type
_INTERVAL = r"^(-?)(\d+)-(\d+) (-?\d+) (-?)(\d+):(\d+):(\d+)(?:\.(\d{1,6}))?$"  # F: microseconds at most


def _interval_from_text(v: str) -> str:
    def part(n: int) -> str:
        return f"regexp_extract({v}, {literal(_INTERVAL)}, {n})"

    def number(n: int) -> str:
        return f"TRY_CAST({part(n)} AS BIGINT)"

    months = f"(CASE WHEN {part(1)} = '-' THEN -1 ELSE 1 END) * ({number(2)} * 12 + {number(3)})"
    time_sign = f"(CASE WHEN {part(5)} = '-' THEN -1 ELSE 1 END)"
    micros = f"{time_sign} * (((({number(6)} * 60 + {number(7)}) * 60 + {number(8)}) * 1000000) + coalesce(TRY_CAST(rpad({part(9)}, 6, '0') AS BIGINT), 0))"
    value = f"to_months({months}) + to_days({number(4)}) + to_microseconds({micros})"
    return f"CASE WHEN {v} IS NULL THEN NULL WHEN NOT regexp_full_match({v}, {literal(_INTERVAL)}) THEN error('not an INTERVAL in BigQuery''s canonical text: ' || {v}) ELSE {value} END"


def _from_arrow(expr: str, field: bigquery.SchemaField, arrow: pa.DataType, depth: int = 0) -> str:
    """A DuckDB expression turning ``expr``, as Arrow brought it (``arrow``), into `duck_type` (``field``)."""
    target = _sql_type(field)
    if (field.mode or "").upper() == "REPEATED":
        var = f"x{depth + 1}"
        element = bigquery.SchemaField(field.name, field.field_type, mode="NULLABLE", fields=field.fields, precision=field.precision, scale=field.scale)
        inner = _from_arrow(var, element, arrow.value_type, depth + 1)
        return expr if inner == var else f"list_transform({expr}, {var} -> {inner})"
    kind = (field.field_type or "").upper()
    if kind in ("RECORD", "STRUCT"):
        parts = [_from_arrow(f"struct_extract({expr}, {literal(f.name)})", f, arrow.field(f.name).type, depth) for f in field.fields]
        if all(p == f"struct_extract({expr}, {literal(f.name)})" for p, f in zip(parts, field.fields, strict=True)):
            return expr
        packed = ", ".join(f"{ident(f.name)} := {p}" for p, f in zip(parts, field.fields, strict=True))
        return f"CASE WHEN ({expr}) IS NULL THEN NULL ELSE struct_pack({packed}) END"
    text = pa.types.is_string(arrow) or pa.types.is_large_string(arrow)
    if kind == "INTERVAL" and text:
        return _interval_from_text(expr)
    if target != "VARCHAR" and kind in ("BIGNUMERIC", "BIGDECIMAL"):
        return f"CAST({expr} AS {target})"  # BIGNUMERIC(P,S) with P <= 38, from its exact text
    if kind in ("BIGNUMERIC", "BIGDECIMAL"):
        # REST's text is BigQuery's own ("1.5"); trailing zeros dropped all the same (`_plain_decimals` drops them too).
        return f"CASE WHEN contains({expr}, '.') THEN rtrim(rtrim({expr}, '0'), '.') ELSE {expr} END"
    if kind == "JSON":
        return f"CAST({expr} AS JSON)"
    if kind == "GEOGRAPHY" and not text:
        return f"CAST({expr} AS VARCHAR)"
    return expr


def _decimal256_as_text(t: pa.DataType) -> pa.DataType:
    """``t`` with each decimal256 as text (DuckDB reads no decimal256 from Arrow)."""
    if pa.types.is_decimal256(t):
        return pa.string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_decimal256_as_text(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name, _decimal256_as_text(t.field(i).type)) for i in range(t.num_fields)])
    return t


def _plain(value: Any) -> Any:
    """A value of a column holding decimal256 (the Storage API's BIGNUMERIC), each Decimal as its plain
    text without trailing zeros (Arrow's own cast writes "0E-38" and "1.0000000000000000000000000000E-10")."""
    if isinstance(value, Decimal):
        text = format(value, "f")  # exact (Decimal.normalize would round to the context's 28 digits)
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _plain_decimals(array: pa.Array) -> pa.Array:
    """``array`` with its decimal256 values (at any depth) as exact plain text; other arrays as they are."""
    wanted = _decimal256_as_text(array.type)
    if wanted == array.type:
        return array
    return pa.array([_plain(v) for v in array.to_pylist()], type=wanted)


def read_table(client: bigquery.Client, table_id: str, con: duckdb.DuckDBPyConnection, name: str, *, bqstorage_client: Any = None, page_size: int | None = None) -> int:
    """Download BigQuery's ``table_id`` into a new DuckDB table ``name`` (SQL text: quote it with
    `ident`, qualified as needed) on ``con``, its columns of `duck_type`, exactly; returns its rows.

    Page by page (no more than a page in memory): over REST by default (``tabledata.list``; the
    emulator's only way), or through the Storage Read API when ``bqstorage_client`` (a
    ``BigQueryReadClient``) is given, which is faster on Google
    (https://cloud.google.com/bigquery/docs/reference/storage)."""
    table = client.get_table(table_id)
    schema = list(table.schema)
    columns = ", ".join(f"{ident(f.name)} {_sql_type(f)}" for f in schema)
    con.execute(f"CREATE TABLE {name} ({columns})")
    if bqstorage_client is None:
        rows = client.list_rows(table, selected_fields=[_rest_field(f) for f in schema], page_size=page_size)
        batches = rows.to_arrow_iterable()
    else:
        batches = client.list_rows(table, page_size=page_size).to_arrow_iterable(bqstorage_client=bqstorage_client)
    written = 0
    for batch in batches:
        written += _insert(con, name, schema, batch)
    return written


def _insert(con: duckdb.DuckDBPyConnection, name: str, schema: list[bigquery.SchemaField], batch: pa.RecordBatch) -> int:
    if batch.num_rows == 0:
        return 0
    arrays = [_plain_decimals(batch.column(i)) for i in range(batch.num_columns)]
    fields = [pa.field(f.name, a.type) for f, a in zip(batch.schema, arrays, strict=True)]
    plain = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))  # no Google extension metadata either
    select = ", ".join(_from_arrow(ident(f.name), f, plain.schema.field(f.name).type) for f in schema)
    view = "_hw_bigquery_page"
    con.register(view, plain)
    try:
        con.execute(f"INSERT INTO {name} SELECT {select} FROM {view}")
    finally:
        con.unregister(view)
    return int(plain.num_rows)
