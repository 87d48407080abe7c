"""File and spreadsheet sources (CSV, Excel, Google Sheets) and the cleaning rules their tables declare.

A source is one table (``path:``/``sheet:``/``range:`` at the top, rules beside it, the table named
after the source) or several (``tables:``, each with its own place and rules). Rules are checked here
as far as the file is not needed (formats, regexes, ranges, time zones), so a mistake is an error
naming its line in headwater.yml; what needs the file (does the column exist?) is checked at sync.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from headwater.config.base import Duration, Name, Strict, TimeZone
from headwater.config.filetypes import readable_by, sheet_id
from headwater.config.sqlparser import sql_parser

ColumnType = Literal["text", "integer", "decimal", "boolean", "date", "datetime"]
Whitespace = Literal["collapse", "trim", "keep"]
EXCEL_SERIAL = "excel"  # the date format name for Excel/Sheets serial day numbers (days since 1899-12-30)
# A table more than half of whose rows break its rules fails (docs/files.md): a wrong date format on a
# whole column quarantined 7 rows of 10 and loaded the other 3 with day and month swapped, exit 0.
DEFAULT_MAX_BAD_ROWS = "50%"

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_DATE_DIRECTIVES = set("dmYybBaAjUW%")
_TIME_DIRECTIVES = set("HIMSpfzZ")


class ColumnRules(Strict):
    """How one column is cleaned and checked; every rule a value breaks puts its row in quarantine."""

    type: ColumnType = Field("text", description="text keeps the value as written (leading zeros too).")
    format: str | list[str] | None = Field(
        None, description="date/datetime: strptime formats tried in order, e.g. '%d/%m/%Y'; 'excel' accepts serial day numbers. ISO dates always parse."
    )
    timezone: TimeZone | None = Field(None, description="datetime: the zone the values are written in; the column becomes an instant (TIMESTAMPTZ).")
    thousands_separator: str = Field(",", max_length=1, description="integer/decimal: the digit grouping mark allowed in values.")
    decimal_separator: str = Field(".", max_length=1, description="decimal: the mark before the fraction.")
    scale: int | None = Field(None, ge=0, le=18, description="decimal: digits after the point, stored exactly as DECIMAL(38, scale); default a double.")
    true_values: list[str] = Field(default_factory=lambda: ["true", "yes", "y", "1"], description="boolean: words read as true (any case).")
    false_values: list[str] = Field(default_factory=lambda: ["false", "no", "n", "0"], description="boolean: words read as false (any case).")
    whitespace: Whitespace | None = Field(None, description="collapse (trim, runs of spaces become one), trim, or keep; default: the table's.")
    case: Literal["lower", "upper", "title"] | None = None
    map: dict[str, str] = Field(default_factory=dict, description="Value replacements, matched ignoring case after whitespace cleaning, before case.")
    required: bool = False
    unique: bool = False
    allowed_values: list[str] | None = Field(None, min_length=1, description="After map and case, the value must be one of these.")
    regex: str | None = Field(None, description="After map and case, the whole value must match (RE2 syntax).")
    min: float | dt.date | dt.datetime | None = Field(None, description="Smallest allowed value (numbers, dates).")
    max: float | dt.date | dt.datetime | None = Field(None, description="Largest allowed value (numbers, dates).")

    @property
    def formats(self) -> list[str]:
        return [self.format] if isinstance(self.format, str) else list(self.format or [])

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None and (why := sql_parser().regex_error(value)) is not None:  # the rule runs in DuckDB (RE2): checked there
            raise ValueError(f"regex {value!r} is not valid: {why}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ColumnRules:
        if self.format is not None and self.type not in ("date", "datetime"):
            raise ValueError(f"format is for date and datetime columns, not {self.type}")
        for fmt in self.formats:
            _check_format(fmt, self.type)
        if self.timezone is not None and self.type != "datetime":
            raise ValueError("timezone is for datetime columns")
        if self.scale is not None and self.type != "decimal":
            raise ValueError("scale is for decimal columns")
        if self.type == "boolean":
            clash = {v.lower() for v in self.true_values} & {v.lower() for v in self.false_values}
            if clash:
                raise ValueError(f"{', '.join(sorted(clash))} cannot be both true and false")
        if self.thousands_separator == self.decimal_separator:
            raise ValueError("thousands_separator and decimal_separator must differ")
        lowered = [key.lower() for key in self.map]
        if len(set(lowered)) != len(lowered):
            raise ValueError("map has keys that differ only in case; they are matched ignoring case")
        for bound in ("min", "max"):
            self._check_bound(bound, getattr(self, bound))
        if self.min is not None and self.max is not None and _greater(self.min, self.max):
            raise ValueError("min is greater than max")
        return self

    def _check_bound(self, name: str, value: object) -> None:
        if value is None:
            return
        numeric = self.type in ("integer", "decimal")
        dated = self.type in ("date", "datetime")
        if not (numeric or dated):
            raise ValueError(f"{name} is for numbers and dates, not {self.type} columns")
        if numeric and not isinstance(value, (int, float)):
            raise ValueError(f"{name} of a {self.type} column must be a number")
        if dated and not isinstance(value, (dt.date, dt.datetime)):
            raise ValueError(f"{name} of a {self.type} column must be a date (YYYY-MM-DD) or a datetime")


def _greater(low: float | dt.date, high: float | dt.date) -> bool:
    """``low > high``: numbers as numbers, dates and datetimes as naive datetimes (`_check_bound` has
    made both bounds the column's kind, so a number is never compared with a date)."""
    if isinstance(low, dt.date) and isinstance(high, dt.date):
        return _comparable(low) > _comparable(high)
    if not isinstance(low, dt.date) and not isinstance(high, dt.date):
        return low > high
    return False


def _comparable(value: dt.date) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return dt.datetime.combine(value, dt.time())


def _check_format(fmt: str, column_type: str) -> None:
    if fmt == EXCEL_SERIAL:
        return
    directives = re.findall(r"%(.)", fmt)
    unknown = [d for d in directives if d not in _DATE_DIRECTIVES | _TIME_DIRECTIVES]
    if unknown:
        raise ValueError(f"format {fmt!r}: %{unknown[0]} is not a supported directive (use %d %m %Y %y %b %B %H %M %S %p %I %f %z)")
    if not directives:
        raise ValueError(f"format {fmt!r} has no % directives: write it like '%d/%m/%Y'")
    if column_type == "date" and set(directives) & _TIME_DIRECTIVES:
        raise ValueError(f"format {fmt!r} has a time of day: make the column a datetime")


class TableRules(Strict):
    """Where the header is and how a table's rows are cleaned. Every key has a default, so a plain
    file needs none."""

    header: bool = Field(True, description="false: the file has no header row; columns are named column_1, column_2, ...")
    header_row: int | None = Field(None, ge=1, description="The row (1 = first) holding the header; default: found (stray title rows above it are skipped).")
    header_rows: int = Field(1, ge=1, le=5, description="Rows the header spans (a merged group row above the names): joined with _.")
    normalize_headers: bool = Field(True, description="snake_case column names, duplicates made unique (name, name_2).")
    rename: dict[str, Name] = Field(default_factory=dict, description="Header (as written, or normalised) -> column name.")
    columns: dict[str, ColumnRules] = Field(default_factory=dict, description="Rules per column (by its final name); other columns are text.")
    unique: list[str] = Field(default_factory=list, description="Columns that together identify a row: every row of a repeated key is quarantined.")
    whitespace: Whitespace = Field("collapse", description="collapse: trim and turn runs of spaces into one; trim; keep. Empty text is NULL.")
    drop_empty_rows: bool = Field(True, description="Rows with no value at all are skipped (counted in the report).")
    max_bad_rows: int | str | None = Field(
        DEFAULT_MAX_BAD_ROWS,
        description="Quarantining more rows than this (a count, or a percent like '5%') fails the sync and keeps the previous data. "
        "Default: half the rows ('50%'): a table most of whose rows break the rules is a mistake in the rules or the file, not data. '100%' turns it off.",
    )

    @field_validator("max_bad_rows")
    @classmethod
    def _threshold(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("max_bad_rows must be 0 or more")
        if isinstance(value, str):
            match = _PERCENT.match(value)
            if not match or float(match.group(1)) > 100:
                raise ValueError(f"max_bad_rows must be a count (e.g. 10) or a percent (e.g. '5%'), got {value!r}")
        return value

    @model_validator(mode="after")
    def _header(self) -> TableRules:
        if not self.header and (self.header_rows != 1 or self.rename):
            raise ValueError("a file without a header (header: false) takes no header_rows or rename: its columns are column_1, column_2, ...")
        return self

    def allowed_bad_rows(self, rows_read: int) -> int | None:
        """The threshold as a row count for a table of ``rows_read`` rows (None: no limit)."""
        if self.max_bad_rows is None:
            return None
        if isinstance(self.max_bad_rows, int):
            return self.max_bad_rows
        percent = float(_PERCENT.match(self.max_bad_rows).group(1))  # type: ignore[union-attr]
        return int(rows_read * percent / 100)


RULE_FIELDS = frozenset(TableRules.model_fields)


class _OneOrMany(TableRules):
    """A source holding one table (its settings at the top) or several (``tables:``)."""

    table: Name | None = Field(None, description="The table's name in raw_<source> (default: the source's name).")

    def _single_or_tables(self, place: str, tables: Mapping[str, object], reading: frozenset[str] = frozenset()) -> None:
        if tables:
            given = sorted(self.model_fields_set & (RULE_FIELDS | reading | {"table", place}))
            if given:
                raise ValueError(f"with tables:, put {', '.join(given)} under each table (the top level then only says where the file is)")


class _CsvReading(Strict):
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="Default: sniffed from the file.")
    quote: str | None = Field(None, min_length=1, max_length=1, description="Default: sniffed, else '\"'.")
    encoding: str = Field("auto", description="auto (UTF-8 with or without BOM, UTF-16, else detected, e.g. windows-1252) or a codec name.")

    @field_validator("encoding")
    @classmethod
    def _codec(cls, value: str) -> str:
        import codecs

        if value != "auto":
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"'{value}' is not a known encoding (try utf-8, utf-16, windows-1252, latin-1)") from None
        return value


class CsvTable(TableRules, _CsvReading):
    path: str = Field(description="A file, a glob (data/*.csv: one table of all files), or an http(s) URL.")

    @field_validator("path")
    @classmethod
    def _readable(cls, value: str) -> str:
        return readable_by("csv", value)


class CsvSource(_OneOrMany, _CsvReading):
    type: Literal["csv"]
    path: str | None = Field(None, description="A file, a glob (data/*.csv: one table of all files), or an http(s) URL.")
    tables: dict[Name, CsvTable] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        return readable_by("csv", value)

    @model_validator(mode="after")
    def _shape(self) -> CsvSource:
        if (self.path is None) == (not self.tables):
            raise ValueError("give path: (one table) or tables: (several), not both" if self.path else "path: is missing: a file, a glob or an http(s) URL")
        self._single_or_tables("path", self.tables, frozenset(_CsvReading.model_fields))
        return self


class ExcelSheet(TableRules):
    sheet: str | int = Field(description="The sheet's name, or its position (1 = first).")


class ExcelSource(_OneOrMany):
    type: Literal["excel"]
    path: str = Field(description="An .xlsx, .xlsm, .xlsb, .xls or .ods file, or an http(s) URL of one.")
    sheet: str | int | None = Field(None, description="A sheet's name or position (1 = first; the default); '*' = every sheet, each a table named after it.")
    tables: dict[Name, ExcelSheet] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _readable(cls, value: str) -> str:
        return readable_by("excel", value)

    @model_validator(mode="after")
    def _shape(self) -> ExcelSource:
        self._single_or_tables("sheet", self.tables)
        if self.sheet == "*" and self.table is not None:
            raise ValueError("sheet: '*' makes one table per sheet, named after it: remove table:")
        if isinstance(self.sheet, int) and self.sheet < 1:
            raise ValueError("sheet positions start at 1")
        return self


class SheetsRange(TableRules):
    range: str = Field(description="A tab ('Regions') or a range in A1 notation ('Regions!A3:F').")


class GoogleSheetsSource(_OneOrMany):
    type: Literal["google_sheets"]
    spreadsheet_id: str = Field(min_length=10, description="The id in the sheet's URL: docs.google.com/spreadsheets/d/<id>/edit.")
    credentials: str = Field(
        description="The service account's JSON key: its text (e.g. '${GOOGLE_SA_KEY}' or a secret) or the path of the key file."
    )
    range: str | None = Field(None, description="A tab or A1 range (default: the first tab); '*' = every tab, each a table named after it.")
    tables: dict[Name, SheetsRange] = Field(default_factory=dict)
    api_url: str = Field("https://sheets.googleapis.com", description="The Sheets API's address (tests point it at a local server).")
    timeout: Duration = Field(default_factory=lambda: dt.timedelta(seconds=60), description="Per HTTP request.")

    @field_validator("spreadsheet_id")
    @classmethod
    def _sheet_id(cls, value: str) -> str:
        return sheet_id(value)

    @model_validator(mode="after")
    def _shape(self) -> GoogleSheetsSource:
        self._single_or_tables("range", self.tables)
        if self.range == "*" and self.table is not None:
            raise ValueError("range: '*' makes one table per tab, named after it: remove table:")
        return self


FILE_SOURCES = (CsvSource, ExcelSource, GoogleSheetsSource)
