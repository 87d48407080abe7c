"""Column types as DuckDB SQL: each parser turns cleaned text into a typed value, or NULL when the text
is not one (which the quarantine reports as a type failure).

DuckDB's own casts are lenient in ways a cleaning rule must not be: '12.5' cast to BIGINT is 13,
'0x1F' is 31, '1_000' is 1000, strptime's %Y takes '24' as the year 24 and 'nan' is a double. So
every parser first checks the text's shape with a regular expression (RE2, vectorised in DuckDB),
and only text of the right shape reaches the cast. The shapes are documented in docs/files.md and
property-tested against a plain-Python reference in tests/test_files_parsers.py.
"""

from __future__ import annotations

import datetime as dt

from headwater.clean.sql import re2_escape
from headwater.config.files import EXCEL_SERIAL, ColumnRules
from headwater.sqltext import literal, literal_list

EXCEL_EPOCH = "1899-12-30"  # Excel's and Google Sheets' day 0 (with Excel's 1900 leap-year bug: serials from 61 on)
FIRST_SERIAL, LAST_SERIAL = 61, 2958465  # 1900-03-01 .. 9999-12-31

_DIRECTIVE_RE = {
    "d": r"\d{1,2}", "m": r"\d{1,2}", "Y": r"\d{4}", "y": r"\d{2}", "H": r"\d{1,2}", "I": r"\d{1,2}", "M": r"\d{1,2}",
    "S": r"\d{1,2}", "f": r"\d{1,6}", "j": r"\d{1,3}", "U": r"\d{1,2}", "W": r"\d{1,2}",
    "p": r"(?i:am|pm)", "b": r"[A-Za-z]{3}", "a": r"[A-Za-z]{3}", "B": r"[A-Za-z]+", "A": r"[A-Za-z]+",
    "z": r"(?:Z|[+-]\d{2}:?\d{2})", "Z": r"[A-Za-z][A-Za-z0-9_/+-]*", "%": "%",
}
_ISO_DATE = r"\d{4}-\d{2}-\d{2}(?: 00:00:00(?:\.0+)?)?"  # a date cell read from Excel comes with midnight
_ISO_DATETIME = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?"
_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"


def format_regex(fmt: str) -> str:
    """The shape of text written with strptime format ``fmt`` (so '%Y' needs four digits)."""
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            out.append(_DIRECTIVE_RE[fmt[i + 1]])
            i += 2
        else:
            out.append(re2_escape(fmt[i]))
            i += 1
    return "".join(out)


def sql_type(rules: ColumnRules) -> str:
    if rules.type == "integer":
        return "BIGINT"
    if rules.type == "decimal":
        return f"DECIMAL(38, {rules.scale})" if rules.scale is not None else "DOUBLE"
    if rules.type == "boolean":
        return "BOOLEAN"
    if rules.type == "date":
        return "DATE"
    if rules.type == "datetime":
        return "TIMESTAMPTZ" if _aware(rules) else "TIMESTAMP"
    return "VARCHAR"


def parse_sql(t: str, rules: ColumnRules) -> str:
    """SQL for the typed value of text expression ``t`` (NULL if ``t`` is NULL or not of the type)."""
    if rules.type == "integer":
        return _integer(t, rules)
    if rules.type == "decimal":
        return _decimal(t, rules)
    if rules.type == "boolean":
        trues = [v.lower() for v in rules.true_values]
        falses = [v.lower() for v in rules.false_values]
        return f"CASE WHEN lower({t}) IN {literal_list(trues)} THEN true WHEN lower({t}) IN {literal_list(falses)} THEN false END"
    if rules.type == "date":
        return _date(t, rules)
    if rules.type == "datetime":
        return _datetime(t, rules)
    return t


def expected(rules: ColumnRules) -> str:
    """What a value of the column must look like, for the quarantine's message."""
    formats = [f for f in rules.formats if f != EXCEL_SERIAL]
    serial = " or an Excel serial day number" if EXCEL_SERIAL in rules.formats else ""
    if rules.type == "integer":
        return f"a whole number (digits, optionally grouped with '{rules.thousands_separator}')"
    if rules.type == "decimal":
        places = f", at most {rules.scale} decimal places" if rules.scale is not None else ""
        return f"a number (decimal mark '{rules.decimal_separator}', grouping '{rules.thousands_separator}'{places})"
    if rules.type == "boolean":
        return f"one of {', '.join(rules.true_values)} / {', '.join(rules.false_values)}"
    if rules.type == "date":
        return "a date as " + " or ".join([*formats, "YYYY-MM-DD"]) + serial
    if rules.type == "datetime":
        return "a date and time as " + " or ".join([*formats, "YYYY-MM-DD HH:MM[:SS]"]) + serial
    return "text"


def _aware(rules: ColumnRules) -> bool:
    return rules.timezone is not None or any("%z" in f or "%Z" in f for f in rules.formats)


def _number_shape(rules: ColumnRules, fraction: str) -> str:
    sep = re2_escape(rules.thousands_separator)
    return rf"[+-]?(?:\d+|\d{{1,3}}(?:{sep}\d{{3}})+){fraction}"


def _integer(t: str, rules: ColumnRules) -> str:
    """Fast path: text that a BIGINT prints back exactly ('42', '-7') is one. Anything else (leading
    zeros, '+', grouping, '12.0', and all the text DuckDB's cast would bend) goes through the shape."""
    dec = re2_escape(rules.decimal_separator)
    shape = _number_shape(rules, rf"(?:{dec}0+)?")  # 12.0 is a whole number (spreadsheets store floats)
    digits = f"split_part(replace({t}, {literal(rules.thousands_separator)}, ''), {literal(rules.decimal_separator)}, 1)"
    canonical = f"CAST(TRY_CAST({t} AS BIGINT) AS VARCHAR) = {t}"
    return f"CASE WHEN {canonical} THEN TRY_CAST({t} AS BIGINT) WHEN regexp_full_match({t}, {literal(shape)}) THEN TRY_CAST({digits} AS BIGINT) END"


def _decimal(t: str, rules: ColumnRules) -> str:
    dec = re2_escape(rules.decimal_separator)
    if rules.scale is not None:
        places = rf"\d{{0,{rules.scale}}}" if rules.scale else ""
        shape = _number_shape(rules, rf"(?:{dec}{places})?") + (rf"|[+-]?{dec}\d{{1,{rules.scale}}}" if rules.scale else "")
    else:
        exponent = r"(?:[eE][+-]?\d{1,3})?"
        shape = _number_shape(rules, rf"(?:{dec}\d*)?{exponent}") + rf"|[+-]?{dec}\d+{exponent}"
    plain = f"replace(replace({t}, {literal(rules.thousands_separator)}, ''), {literal(rules.decimal_separator)}, '.')"
    cast = f"TRY_CAST({plain} AS {sql_type(rules)})"
    finite = f"isfinite({cast})" if rules.scale is None else "true"  # 1e999 would be infinity
    return f"CASE WHEN regexp_full_match({t}, {literal(shape)}) AND {finite} THEN {cast} END"


def _serial(t: str) -> str:
    return f"TRY_CAST({t} AS DOUBLE)"


def _date(t: str, rules: ColumnRules) -> str:
    parts = [
        f"CASE WHEN regexp_full_match({t}, {literal(format_regex(f))}) THEN CAST(try_strptime({t}, {literal(f)}) AS DATE) END"
        for f in rules.formats
        if f != EXCEL_SERIAL
    ]
    parts.append(f"CASE WHEN regexp_full_match({t}, {literal(_ISO_DATE)}) THEN TRY_CAST(left({t}, 10) AS DATE) END")
    if EXCEL_SERIAL in rules.formats:
        parts.append(
            f"CASE WHEN regexp_full_match({t}, '\\d{{2,7}}(?:\\.0+)?') AND {_serial(t)} BETWEEN {FIRST_SERIAL} AND {LAST_SERIAL} "
            f"THEN DATE '{EXCEL_EPOCH}' + CAST({_serial(t)} AS INTEGER) END"
        )
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def _datetime(t: str, rules: ColumnRules) -> str:
    aware = _aware(rules)
    zone = literal(rules.timezone or "UTC")

    def local(expr: str) -> str:  # a wall-clock time in the declared zone, as an instant
        return f"timezone({zone}, {expr})" if aware else expr

    parts = []
    for f in rules.formats:
        if f == EXCEL_SERIAL:
            continue
        parsed = f"try_strptime({t}, {literal(f)})"
        has_offset = "%z" in f or "%Z" in f
        parts.append(f"CASE WHEN regexp_full_match({t}, {literal(format_regex(f))}) THEN {parsed if has_offset else local(parsed)} END")
    iso = f"CASE WHEN regexp_full_match({t}, {literal(_ISO_DATETIME)}) THEN {local(f'TRY_CAST({t} AS TIMESTAMP)')} END"
    parts.append(iso)
    if aware:  # an ISO value carrying its own offset is an instant already
        parts.append(f"CASE WHEN regexp_full_match({t}, {literal(_ISO_DATETIME + _OFFSET)}) THEN TRY_CAST({t} AS TIMESTAMPTZ) END")
    if EXCEL_SERIAL in rules.formats:
        exact = f"TRY_CAST({t} AS DECIMAL(38,20))"  # not DOUBLE: 32768.945312 days would land a microsecond late
        micros = f"CAST(round({exact} * 86400000000) AS BIGINT)"
        stamp = local(f"TIMESTAMP '{EXCEL_EPOCH}' + to_microseconds({micros})")
        parts.append(
            f"CASE WHEN regexp_full_match({t}, '\\d{{2,7}}(?:\\.\\d+)?') AND {exact} >= {FIRST_SERIAL} AND {exact} < {LAST_SERIAL + 1} "
            f"THEN {stamp} END"
        )
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


def bound_sql(value: float | dt.date, rules: ColumnRules) -> str:
    """A min/max from the project file as a SQL literal of the column's type (the config has made it
    a number for a number column and a date or datetime for a dated one)."""
    if rules.type in ("integer", "decimal") and not isinstance(value, dt.date):
        return repr(float(value)) if not float(value).is_integer() else str(int(value))
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    return f"CAST({literal(text)} AS {sql_type(rules)})"

