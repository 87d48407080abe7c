"""Freshness: the newest value of a timestamp column of a synced table must be recent enough.

Reads ``raw_<source>.<table>`` on the build connection. Timestamps are UTC: ``TIMESTAMP`` values are
read as UTC, ``TIMESTAMPTZ`` values are exact instants, a ``DATE`` is its midnight UTC, and text
columns (SQLite keeps timestamps as text) are parsed, naive text as UTC and text with an offset
honouring it. A table with no rows, or no values in the column, fails; a missing table or column
is an error (the check cannot run) naming what to fix.
"""

from __future__ import annotations

import datetime as dt
import difflib

import duckdb

from headwater.checks.outcome import CheckOutcome, failed_status
from headwater.config.model import FreshnessCheck
from headwater.sync.engine import raw_schema
from headwater.warehouse.base import WarehouseEngine

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def run_freshness(check: FreshnessCheck, build: duckdb.DuckDBPyConnection, now: dt.datetime, warehouse: WarehouseEngine | None = None) -> CheckOutcome:
    schema, table, column = raw_schema(check.source), check.table, check.column
    relation = f"{schema}.{table}"
    expected = f"younger than {duration(check.max_age)}"

    def outcome(status: str, observed: str | None, message: str | None) -> CheckOutcome:
        return CheckOutcome(check.name, "freshness", status, check.severity, observed, expected, message and f"{check.name}: {message}", None)

    def error(message: str) -> CheckOutcome:
        return outcome("error", None, message)

    cursor = warehouse.session(build) if warehouse is not None else build.cursor()  # its own session: the time zone set below stays here
    try:
        try:
            cursor.execute("SET SESSION TimeZone = 'UTC'")  # text without an offset is UTC
        except duckdb.Error:
            pass  # DuckDB without ICU has no time zones: text is read as UTC anyway
        columns = dict(
            cursor.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [schema, table],
            ).fetchall()
        )
        if not columns:
            return error(_missing_table(cursor, check, schema))
        if column not in columns:
            near = difflib.get_close_matches(column, list(columns), n=1)
            hint = f" — did you mean '{near[0]}'?" if near else f" (its columns: {', '.join(columns)})."
            return error(f"column '{column}' is not in {relation}{hint} Fix the check's column: in headwater.yml.")
        data_type = columns[column].upper()
        quoted = f'"{column}"'
        if data_type.startswith("TIMESTAMP") or data_type == "DATE":
            value = f"CAST({quoted} AS TIMESTAMPTZ)" if data_type == "DATE" else quoted
        elif data_type == "VARCHAR":
            value = f"TRY_CAST({quoted} AS TIMESTAMPTZ)"
        else:
            return error(f"column '{column}' of {relation} is {data_type}, not a timestamp. Point the check's column: at a timestamp column (UTC).")
        total, present, newest_us = cursor.execute(f'SELECT count(*), count({value}), epoch_us(max({value})) FROM "{schema}"."{table}"').fetchone()  # type: ignore[misc]
    except duckdb.Error as exc:
        return error(f"could not read {relation}: {str(exc).strip().splitlines()[0]}")
    finally:
        cursor.close()

    if total == 0:
        return outcome(
            failed_status(check.severity),
            "no rows",
            f"{relation} is empty: the last sync of source '{check.source}' copied no rows from table '{table}'. Check the source.",
        )
    if present == 0:
        what = "values that read as timestamps" if data_type == "VARCHAR" else "values"
        return outcome(failed_status(check.severity), f"no {column} values", f"column '{column}' of {relation} has no {what} in {total:,} rows.")

    newest = _EPOCH + dt.timedelta(microseconds=newest_us)
    age = now - newest
    when = f"{duration(age)} ago" if age >= dt.timedelta(0) else f"{duration(-age)} in the future"
    observed = f"newest {newest:%Y-%m-%d %H:%M} UTC ({when})"
    if age <= check.max_age:
        return outcome("pass", observed, None)
    return outcome(
        failed_status(check.severity),
        observed,
        f"the newest {column} in {relation} is {newest:%Y-%m-%d %H:%M} UTC, {duration(age)} old, older than {duration(check.max_age)}. "
        f"Check that source '{check.source}' is still being written to and that its sync ran.",
    )


def _missing_table(cursor: duckdb.DuckDBPyConnection, check: FreshnessCheck, schema: str) -> str:
    tables = [
        r[0]
        for r in cursor.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? ORDER BY table_name", [schema]
        ).fetchall()
    ]
    near = difflib.get_close_matches(check.table, tables, n=1)
    if near:
        found = f" — did you mean '{near[0]}'?"
    elif tables:
        found = f" ({schema} has: {', '.join(tables)})."
    else:
        found = f" (source '{check.source}' has not been synced into the warehouse)."
    return (
        f"table {schema}.{check.table} is not in the warehouse{found} Fix the check's table: in headwater.yml, or sync the table: "
        f"list '{check.table}' in sources.{check.source}.tables and '{check.source}' in the pipeline's sources."
    )


def duration(value: dt.timedelta) -> str:
    """For people, to the two largest units: '42s', '5m 30s', '26h 3m' (up to two days), '3d 4h'."""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)}s"
    if seconds < 3600:
        big, small, units = seconds // 60, seconds % 60, ("m", "s")
    elif seconds < 48 * 3600:
        big, small, units = seconds // 3600, seconds % 3600 // 60, ("h", "m")
    else:
        big, small, units = seconds // 86400, seconds % 86400 // 3600, ("d", "h")
    return f"{big}{units[0]}" + (f" {small}{units[1]}" if small else "")
