"""Dashboard queries: a chart and filter selections in, SQL with named parameters over published data out.

Three kinds of text meet here, and each is handled for what it is:

- *Identifiers* (tables, columns) come from the dashboard file and are checked against the published
  table's real columns before they are quoted.
- *Filter values* come from whoever asks (a browser's query string, a command line). They are only
  ever bound parameters (``$region``, ``$weeks_from``), never part of the SQL text; dates are parsed
  as dates first, so a malformed one is a clear error rather than a query.
- *SQL* (measures, a chart's ``sql:``) is written by the project's author and kept in version control:
  trusted, but checked to be one expression / one SELECT when the file is loaded
  (``config.model.sql_parameters``). An author's SQL gets the filters as named parameters only.

What the URL can change is which declared filter values are bound; never which columns, rows
conditions (a KPI's ``where:`` is a boolean column named in the file) or SQL are used.

Every query takes the member's `RowScope` (row-level rules, see dashboards/scope.py), applied to
the finished SQL: charts, table downloads, filter options and date bounds all read only the rows
the member may see.

A pure service: the CLI and the web app both call it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from headwater.config.charts import Shape
from headwater.config.model import Chart, Dashboard, Filter, sql_parameters
from headwater.dashboards.scope import RowScope
from headwater.errors import ConfigError, HeadwaterError, NotFound
from headwater.publish import PublishedData, export
from headwater.sqltext import ident

OPTIONS_LIMIT = 1000
PIVOT_COLUMNS = 200  # a pivot with more column values than this is refused: filter it, or use a table
Selections = Mapping[str, Sequence[str]]
DATE_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
EVERY_ROW = RowScope()


@dataclass(frozen=True)
class Pivot:
    rows: list[str]  # the long query's columns that make the rows
    column: str  # the long query's column whose values become columns
    value: str | None  # the long query's value column (None: the one column left, for SQL charts)
    order: list[str]  # ORDER BY items for the rows


@dataclass(frozen=True)
class Query:
    sql: str
    params: dict[str, object]  # named parameters: exactly those the SQL uses
    unfiltered: tuple[str, ...] = ()  # filters (their keys) that do not apply: the table lacks the column, the SQL ignores it
    pivot: Pivot | None = None  # sql is the long form; fetch/stream turn it into one column per value


@dataclass(frozen=True)
class ChartData:
    columns: list[str]
    rows: list[tuple[object, ...]]
    truncated: bool  # more rows matched than were fetched


# --- selections ------------------------------------------------------------------------------------


def check_selections(dashboard: Dashboard, selections: Selections, data: PublishedData | None = None) -> dict[str, list[str]]:
    """The selections a request may make, keyed by filter parameter (``region``, ``weeks_from``).

    Only declared parameters are allowed; empty values are dropped (nothing selected = no filter);
    a week or date takes one value written YYYY-MM-DD, and a range must not end before it starts.
    With ``data``, a multi filter's values must also be values its column's type can hold (a number
    column is never ``abc``): a value no row can have is a mistake, not an empty answer."""
    declared = _declared(dashboard, selections)
    picked = {key: values for key in declared if (values := [v for v in selections.get(key, ()) if v != ""])}
    for spec in dashboard.filters:
        if spec.type == "multi":
            continue
        dates = {key: _one_date(spec, key, picked[key]) for key in spec.parameters if key in picked}
        start, end = dates.get(f"{spec.key}_from"), dates.get(f"{spec.key}_to")
        if start and end and end < start:
            raise HeadwaterError(
                f"The {_label(spec)} filter ends ({end}) before it starts ({start})",
                fix="Pick a 'to' date on or after the 'from' date, or leave one of them empty.",
            )
    if data is not None:
        _check_multi_values(data, dashboard, picked)
    return picked


def bind(dashboard: Dashboard, selections: Selections, data: PublishedData | None = None) -> dict[str, object]:
    """Every filter parameter's value for binding: a list of texts (multi), a date (week, range ends),
    or None when nothing is selected (an author's SQL tests ``:region is null``). Every path that
    takes filter values (pages, chart data, downloads, `headwater export`) binds them here."""
    picked = check_selections(dashboard, selections, data)
    params: dict[str, object] = {}
    for spec in dashboard.filters:
        for key in spec.parameters:
            values = picked.get(key)
            if not values:
                params[key] = None
            elif spec.type == "multi":
                params[key] = list(values)
            else:
                params[key] = _one_date(spec, key, values)
    return params


def describe_filters(dashboard: Dashboard) -> str:
    """The dashboard's filters as a reader types them, with their kinds: ``region (multi: any of its
    values), weeks_from / weeks_to (date_range: dates YYYY-MM-DD, both inclusive)``."""
    kinds = {"multi": "multi: any of its values", "week": "week: one week's first day, YYYY-MM-DD", "date_range": "date_range: dates YYYY-MM-DD, both inclusive"}
    return "; ".join(f"{' / '.join(spec.parameters)} ({kinds[spec.type]})" for spec in dashboard.filters) or "none"


def _declared(dashboard: Dashboard, keys: Iterator[str] | Sequence[str] | Selections) -> list[str]:
    declared = [key for spec in dashboard.filters for key in spec.parameters]
    undeclared = sorted(set(keys) - set(declared))
    if undeclared:
        close = [match for name in undeclared for match in difflib.get_close_matches(name.lower(), declared, n=1, cutoff=0.6)]
        hint = f"Did you mean {' and '.join(dict.fromkeys(close))}? " if close else ""
        raise HeadwaterError(
            f"Cannot filter '{dashboard.title}' on {', '.join(repr(c) for c in undeclared)}",
            why="only the filters listed under filters: in the dashboard's file can be used; "
            + (f"its filters are {describe_filters(dashboard)}" if declared else "this dashboard has none"),
            fix=f"{hint}Filter on {', '.join(declared)}." if declared else "Leave the filter out, or declare it under filters: in the dashboard's file.",
        )
    return declared


# A multi filter compares its values with the column's text; on a column of these types, a value the
# type cannot hold (TRY_CAST gives NULL) can match no row. Other types (text, lists, ...) take any text.
_TYPED = re.compile(
    r"(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\)"
    r"|DATE|TIME|TIMESTAMP|TIMESTAMP WITH TIME ZONE|TIMESTAMP_S|TIMESTAMP_MS|TIMESTAMP_NS|BOOLEAN|UUID)"
)
_KIND_WORDS = {"BOOLEAN": "true or false", "DATE": "dates (YYYY-MM-DD)", "UUID": "UUIDs", "TIME": "times of day"}


def _check_multi_values(data: PublishedData, dashboard: Dashboard, picked: Mapping[str, Sequence[str]]) -> None:
    chosen = [spec for spec in dashboard.filters if spec.type == "multi" and picked.get(spec.key)]
    if not chosen:
        return
    try:
        types = _column_types(data, dashboard.table)
    except NotFound:  # the charts say so, each in its own words
        return
    for spec in chosen:
        kind = types.get(spec.column)
        if kind is None or not _TYPED.fullmatch(kind):
            continue
        with data.cursor() as cur:
            row = cur.execute(f"SELECT list_filter($values, v -> TRY_CAST(v AS {kind}) IS NULL)", {"values": list(picked[spec.key])}).fetchone()
        bad = list(row[0]) if row else []
        if bad:
            words = _KIND_WORDS.get(kind, "timestamps" if kind.startswith("TIMESTAMP") else "numbers")
            raise HeadwaterError(
                f"{spec.key}={bad[0]!r} is not a value of the {_label(spec)} filter",
                why=f"the filter picks values of column '{spec.column}' of '{dashboard.table}', which holds {words} ({kind}): no row can hold {bad[0]!r}",
                fix=f"Pick values the dashboard's {_label(spec)} filter lists ({words}), or leave the filter out.",
            )


def _one_date(spec: Filter, key: str, values: Sequence[str]) -> dt.date:
    what = "week" if spec.type == "week" else "date"
    if len(values) != 1:
        raise HeadwaterError(f"The {_label(spec)} filter takes one {what}, got {len(values)}", fix=f"Pass {key}= once.")
    value = values[0]
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise HeadwaterError(f"{key}={value!r} is not a date", why=f"the {_label(spec)} filter takes a date written YYYY-MM-DD", fix="Pick a date, e.g. 2024-01-06.") from None


def _label(spec: Filter) -> str:
    return repr(spec.label or spec.key)


# --- chart queries ---------------------------------------------------------------------------------


def chart_query(data: PublishedData, dashboard: Dashboard, chart: Chart, selections: Selections, scope: RowScope = EVERY_ROW) -> Query:
    """The chart's query for these selections, limited to the rows ``scope`` lets its reader see."""
    return _scoped(data, scope, _chart_query(data, dashboard, chart, selections))


def _scoped(data: PublishedData, scope: RowScope, query: Query) -> Query:
    if scope.unrestricted:
        return query
    with data.cursor() as cur:
        sql, params = scope.apply(cur, query.sql, query.params)
    return Query(sql, params, query.unfiltered, query.pivot)


def _chart_query(data: PublishedData, dashboard: Dashboard, chart: Chart, selections: Selections) -> Query:
    params = bind(dashboard, selections, data)
    if chart.sql is not None:
        return _sql_chart(dashboard, chart, params)
    table = chart.table or dashboard.table
    types = _column_types(data, table)
    dims = _dimensions(chart)
    for column in dims:
        _check_column(column, types, dashboard, chart.title, table)
    clauses, used, unfiltered = _filters(dashboard, table, types, params)
    measures = {name: _measure(chart, name, sql) for name, sql in chart.measures.items()}

    def flagged(column: str | None) -> list[str]:
        return [*clauses, _flag(column, types, dashboard, chart.title, table)] if column else clauses

    parts = _TableParts(chart, ident(table), measures, dims, flagged, used, unfiltered)
    return _TABLE_SHAPES[chart.kind.shape](parts)


@dataclass(frozen=True)
class _TableParts:
    """What a chart over a table and measures is built from, whatever its kind's shape."""

    chart: Chart
    source: str  # the table, quoted
    measures: dict[str, str]  # name -> checked aggregate SQL
    dims: list[str]
    flagged: Callable[[str | None], list[str]]  # the filters' clauses, and the chart's flag column's
    used: dict[str, object]
    unfiltered: tuple[str, ...]

    def grouped(self) -> str:
        columns = [*map(ident, self.dims), *(f"{sql} AS {ident(name)}" for name, sql in self.measures.items())]
        sql = f"SELECT {', '.join(columns)}\nFROM {self.source}{_where(self.flagged(self.chart.where))}"
        if self.dims:
            sql += f"\nGROUP BY {', '.join(map(ident, self.dims))}"
        return sql


def _headline_query(p: _TableParts) -> Query:
    """One row: the measure over the chart's rows, and over the comparison's when it has one."""
    chart = p.chart
    name, measure = next(iter(p.measures.items()))
    select = [f"(SELECT {measure} FROM {p.source}{_where(p.flagged(chart.where))}) AS {ident(name)}"]
    if chart.compare is not None:
        other = f"(SELECT {measure} FROM {p.source}{_where(p.flagged(chart.compare.where))})"
        select.append(f"{other} AS {ident(f'{name} ({chart.compare.label})')}")
    return Query("SELECT " + ",\n       ".join(select), p.used, p.unfiltered)


def _grouped_query(p: _TableParts) -> Query:
    sql = p.grouped()
    order = _order(p.chart, p.dims, allowed={*p.dims, *p.chart.measures})
    if order:
        sql += f"\nORDER BY {', '.join(order)}"
    return Query(sql, p.used, p.unfiltered)


def _pivot_query(p: _TableParts) -> Query:
    chart = p.chart
    rows = list(chart.rows)
    return Query(p.grouped(), p.used, p.unfiltered, Pivot(rows, chart.columns or "", next(iter(p.measures)), _order(chart, rows, set(rows))))


# How a chart over a table is queried, by its kind's shape (config/charts.py).
_TABLE_SHAPES: dict[Shape, Callable[[_TableParts], Query]] = {"headline": _headline_query, "grouped": _grouped_query, "pivot": _pivot_query}


def table_query(data: PublishedData, dashboard: Dashboard | None, table: str, selections: Selections, scope: RowScope = EVERY_ROW) -> Query:
    """Every row of a published table that the dashboard's filters select (those whose column it
    has; no dashboard: the whole table), of the rows ``scope`` lets its reader see."""
    types = _column_types(data, table)
    if dashboard is None:
        if selections:
            raise HeadwaterError("Filters need a dashboard", why="filters are declared by a dashboard", fix="Download the table from a dashboard's page to filter it.")
        return _scoped(data, scope, Query(f"SELECT * FROM {ident(table)}", {}))
    clauses, used, unfiltered = _filters(dashboard, table, types, bind(dashboard, selections, data))
    return _scoped(data, scope, Query(f"SELECT * FROM {ident(table)}{_where(clauses)}", used, unfiltered))


def refuse_ignored(dashboard: Dashboard, table: str, query: Query, selections: Selections) -> None:
    """Refuse a selected filter that does not apply to ``query`` (its table lacks the column): every
    row would be written where some were asked for. The web page labels such a download unfiltered
    instead; a file written by `headwater export` carries no label."""
    ignored = [spec for spec in dashboard.filters if spec.key in query.unfiltered and any(v != "" for key in spec.parameters for v in selections.get(key, ()))]
    if ignored:
        raise HeadwaterError(
            f"The {', '.join(_label(spec) for spec in ignored)} filter of dashboard '{dashboard.title}' cannot apply to table '{table}'",
            why=f"it filters column {', '.join(repr(spec.column) for spec in ignored)}, which '{table}' does not have: every row would be written",
            fix=f"Leave that filter out, or export a table that has the column ({dashboard.table} does).",
        )


def unmatched(data: PublishedData, dashboard: Dashboard, table: str, selections: Selections, scope: RowScope = EVERY_ROW, limit: int = 10) -> list[str]:
    """A note for each selected filter value that matches no row of ``table`` (of the rows ``scope``
    lets its reader see), naming up to ``limit`` values that do: ``region=North`` on a table whose
    regions are ``North Metro``, ... answers nothing, which is an answer, but rarely the one meant.
    Filters whose column ``table`` lacks are not looked at (they do not apply to it)."""
    picked = check_selections(dashboard, selections, data)
    types = _column_types(data, table)
    notes = []
    for spec in dashboard.filters:
        if spec.column not in types or not any(picked.get(key) for key in spec.parameters):
            continue
        column, source = ident(spec.column), ident(table)
        if spec.type == "date_range":
            low, high = (_one_date(spec, key, picked[key]) if picked.get(key) else None for key in spec.parameters)
            inside = [f"CAST({column} AS DATE) >= $low" if low else "true", f"CAST({column} AS DATE) <= $high" if high else "true"]
            sql = f"SELECT count(*) FILTER (WHERE {' AND '.join(inside)}), min(CAST({column} AS DATE)), max(CAST({column} AS DATE)) FROM {source}"
            params = {k: v for k, v in (("low", low), ("high", high)) if v is not None}
            count, first, last = _scoped_rows(data, scope, sql, params)[0]
            if not count:
                chosen = " and ".join(f"{key}={picked[key][0]}" for key in spec.parameters if picked.get(key))
                span = f"its {spec.column} runs from {first} to {last}" if first is not None else "it has no rows"
                notes.append(f"{chosen} matches no row of {table}: {span}.")
            continue
        text = f"CAST({column} AS DATE)" if spec.type == "week" else f"CAST({column} AS VARCHAR)"
        values = [_one_date(spec, spec.key, picked[spec.key]).isoformat()] if spec.type == "week" else list(picked[spec.key])
        sql = f"SELECT v FROM unnest($values) AS hw_values(v) WHERE NOT EXISTS (SELECT 1 FROM {source} WHERE CAST({text} AS VARCHAR) = v)"
        missing = [row[0] for row in _scoped_rows(data, scope, sql, {"values": values})]
        if not missing:
            continue
        order = "v DESC" if spec.type == "week" else "v"
        held = _scoped_rows(data, scope, f"SELECT CAST(v AS VARCHAR), count(*) OVER () FROM (SELECT DISTINCT {text} AS v FROM {source} WHERE {column} IS NOT NULL) ORDER BY {order} LIMIT {int(limit)}", {})
        some = ", ".join(str(row[0]) for row in held)
        total = int(str(held[0][1])) if held else 0
        shown = f"its values: {some}" if total <= limit else f"{limit} of its {total:,} values: {some} and more"
        for value in missing:
            notes.append(f"{spec.key}={value} matches no row of {table}; " + (shown if held else f"{spec.column} is empty there") + ".")
    return notes


def _scoped_rows(data: PublishedData, scope: RowScope, sql: str, params: Mapping[str, object]) -> list[tuple[object, ...]]:
    with data.cursor() as cur:
        sql, params = scope.apply(cur, sql, params)
        return cur.execute(sql, params).fetchall()


def readable_tables(data: PublishedData, scope: RowScope = EVERY_ROW) -> list[str]:
    """The published tables, less those ``scope``'s reader may not read at all."""
    tables = data.tables()
    if scope.unrestricted:
        return tables
    return [t for t in tables if scope.readable(list(_column_types(data, t)))]


def _sql_chart(dashboard: Dashboard, chart: Chart, params: dict[str, object]) -> Query:
    text, names = sql_parameters(chart.sql or "")
    unknown = [name for name in names if name not in params]
    if unknown:  # checked when the file is loaded; this guards charts built in code
        raise ConfigError(f"Chart '{chart.title}' uses :{', :'.join(unknown)}, which no filter of '{dashboard.title}' gives", fix=f"Use one of: {', '.join(params) or 'none'}.")
    used = {name: params[name] for name in names}
    unfiltered = tuple(spec.key for spec in dashboard.filters if not set(spec.parameters) & set(names))
    inner = f"(\n{text}\n) AS hw_chart"
    if chart.kind.shape == "pivot":
        return Query(text, used, unfiltered, Pivot(list(chart.rows), chart.columns or "", None, _order(chart, list(chart.rows), set(chart.rows))))
    if chart.kind.sorted_by_dimensions:
        dims = _dimensions(chart)
        quoted = ", ".join(map(ident, dims))
        order = _order(chart, dims, allowed=None)
        return Query(f"SELECT {quoted}, * EXCLUDE ({quoted})\nFROM {inner}\nORDER BY {', '.join(order)}", used, unfiltered)
    if chart.order_by:
        return Query(f"SELECT *\nFROM {inner}\nORDER BY {', '.join(_order(chart, [], allowed=None))}", used, unfiltered)
    return Query(text, used, unfiltered)


def _filters(dashboard: Dashboard, table: str, types: dict[str, str], params: dict[str, object]) -> tuple[list[str], dict[str, object], tuple[str, ...]]:
    """WHERE clauses for the selected filters whose column the table has; each value a named parameter."""
    clauses: list[str] = []
    used: dict[str, object] = {}
    unfiltered = []
    for spec in dashboard.filters:
        if spec.column not in types:
            unfiltered.append(spec.key)
            continue
        column = ident(spec.column)
        if spec.type == "multi":
            if params[spec.key] is not None:
                # Compared as text, so dates, numbers and booleans match the options shown.
                clauses.append(f"list_contains(${spec.key}, CAST({column} AS VARCHAR))")
                used[spec.key] = params[spec.key]
            continue
        if types[spec.column] not in DATE_TYPES:
            raise ConfigError(
                f"The {spec.type.replace('_', ' ')} filter {_label(spec)} of dashboard '{dashboard.title}' needs a date or timestamp column",
                why=f"column '{spec.column}' of table '{table}' is {types[spec.column]}",
                fix="Use a multi filter for this column, or a date column for this filter.",
            )
        for key, operator in zip(spec.parameters, ("=",) if spec.type == "week" else (">=", "<="), strict=True):
            if params[key] is not None:
                clauses.append(f"CAST({column} AS DATE) {operator} ${key}")
                used[key] = params[key]
    return clauses, used, tuple(unfiltered)


def _where(clauses: list[str]) -> str:
    return "\nWHERE " + "\n  AND ".join(clauses) if clauses else ""


def _flag(column: str, types: dict[str, str], dashboard: Dashboard, chart: str, table: str) -> str:
    _check_column(column, types, dashboard, chart, table)
    if types[column] != "BOOLEAN":
        raise ConfigError(
            f"Chart '{chart}' of dashboard '{dashboard.title}' counts rows where '{column}' is true, but it is {types[column]}, not a boolean",
            fix=f"Use a boolean column of {table} for where: (e.g. is_current_week), or compute one in the dbt model.",
        )
    return f"{ident(column)} IS TRUE"


# --- options ---------------------------------------------------------------------------------------


def filter_options(data: PublishedData, dashboard: Dashboard, key: str, limit: int = OPTIONS_LIMIT, scope: RowScope = EVERY_ROW) -> list[str]:
    """What a multi or week filter offers, as text (what a selection compares against): a multi
    filter's distinct values sorted, a week filter's distinct dates newest first; of the rows
    ``scope`` lets the reader see (other values would tell what those rows hold)."""
    spec = _filter(dashboard, key)
    types = _column_types(data, dashboard.table)
    _check_column(spec.column, types, dashboard, "filters", dashboard.table)
    column = ident(spec.column)
    if spec.type == "week":
        sql = f"SELECT DISTINCT CAST({column} AS DATE) AS v FROM {ident(dashboard.table)} WHERE {column} IS NOT NULL ORDER BY v DESC LIMIT {int(limit)}"
        return [day.isoformat() for row in _rows(data, scope, sql) if (day := _date(row[0])) is not None]
    distinct = f"SELECT DISTINCT {column} AS v FROM {ident(dashboard.table)} WHERE {column} IS NOT NULL"
    return [str(row[0]) for row in _rows(data, scope, f"SELECT CAST(v AS VARCHAR) FROM ({distinct}) ORDER BY v LIMIT {int(limit)}")]


def date_bounds(data: PublishedData, dashboard: Dashboard, key: str, scope: RowScope = EVERY_ROW) -> tuple[dt.date | None, dt.date | None]:
    """The first and last date of a date filter's column (None, None for an empty table), of the
    rows ``scope`` lets the reader see."""
    spec = _filter(dashboard, key)
    types = _column_types(data, dashboard.table)
    _check_column(spec.column, types, dashboard, "filters", dashboard.table)
    column = ident(spec.column)
    rows = _rows(data, scope, f"SELECT min(CAST({column} AS DATE)), max(CAST({column} AS DATE)) FROM {ident(dashboard.table)}")
    low, high = rows[0] if rows else (None, None)
    return _date(low), _date(high)


def _date(value: object) -> dt.date | None:
    """A DuckDB DATE as Python gets it (a date), or NULL."""
    if value is None or isinstance(value, dt.date):
        return value
    raise TypeError(f"expected a DATE, got {type(value).__name__}")


def _rows(data: PublishedData, scope: RowScope, sql: str) -> list[tuple[object, ...]]:
    with data.cursor() as cur:
        sql, params = scope.apply(cur, sql, {})
        return cur.execute(sql, params).fetchall()


def _filter(dashboard: Dashboard, key: str) -> Filter:
    for spec in dashboard.filters:
        if key in (spec.key, *spec.parameters):
            return spec
    _declared(dashboard, [key])  # raises, naming the filters there are
    raise AssertionError


# --- running ---------------------------------------------------------------------------------------


def fetch(data: PublishedData, chart: Chart, query: Query, limit: int) -> ChartData:
    with _failing(f"The chart '{chart.title}'"), data.cursor() as cur:
        names = _execute(cur, query)
        columns = names or [d[0] for d in cur.description]
        rows = cur.fetchmany(limit + 1)
    return ChartData(columns, rows[:limit], len(rows) > limit)


@contextmanager
def stream(data: PublishedData, chart: Chart | str, query: Query) -> Iterator[pa.RecordBatchReader]:
    """All rows as Arrow batches, for downloads with no row cap; ``chart`` (or a table's name) names
    what failed in an error."""
    what = f"The chart '{chart.title}'" if isinstance(chart, Chart) else f"The table '{chart}'"
    with _failing(what), data.cursor() as cur:
        names = _execute(cur, query)
        reader = cur.fetch_record_batch(export.BATCH_ROWS)
        yield _renamed(reader, names) if names else reader


def _execute(cur: duckdb.DuckDBPyConnection, query: Query) -> list[str] | None:
    """Run ``query`` on ``cur``; for a pivot, the column names to show (its values become columns).

    A pivot takes three statements on one cursor, so all three read the same snapshot."""
    if query.pivot is None:
        cur.execute(query.sql, query.params)
        return None
    pivot, long = query.pivot, f"(\n{query.sql}\n) AS hw_long"
    value = pivot.value
    if value is None:
        names = [d[0] for d in cur.execute(f"SELECT * FROM {long} LIMIT 0", query.params).description]
        rest = [n for n in names if n not in {*pivot.rows, pivot.column}]
        if len(rest) != 1:
            raise ConfigError(
                "A pivot chart's SQL must return its rows columns, its columns column and one value column",
                why=f"it returns {', '.join(names)}; besides {', '.join([*pivot.rows, pivot.column])} that leaves {', '.join(rest) or 'nothing'}",
                fix="Return exactly one more column: the value of each cell.",
            )
        value = rest[0]
    column = ident(pivot.column)
    values = [r[0] for r in cur.execute(f"SELECT DISTINCT {column} FROM {long} ORDER BY 1 NULLS LAST LIMIT {PIVOT_COLUMNS + 1}", query.params).fetchall()]
    if len(values) > PIVOT_COLUMNS:
        raise HeadwaterError(
            f"The pivot would have more than {PIVOT_COLUMNS} columns",
            why=f"'{pivot.column}' has more than {PIVOT_COLUMNS} different values in the rows selected",
            fix="Filter the dashboard to fewer of them, or show this as a table chart.",
        )
    rows = ", ".join(map(ident, pivot.rows))
    cells = [f"first({ident(value)}) FILTER (WHERE hw_rank = {n}) AS hw_c{n}" for n in range(1, len(values) + 1)]
    cur.execute(
        f"WITH hw_ranked AS (SELECT *, dense_rank() OVER (ORDER BY {column} NULLS LAST) AS hw_rank FROM {long})\n"
        f"SELECT {', '.join([rows, *cells])}\nFROM hw_ranked\nGROUP BY {rows}\nORDER BY {', '.join(pivot.order)}",
        query.params,
    )
    return [*pivot.rows, *map(_header, values)]


def _header(value: object) -> str:
    if value is None:
        return "(null)"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _renamed(reader: pa.RecordBatchReader, names: list[str]) -> pa.RecordBatchReader:
    schema = pa.schema([f.with_name(n) for f, n in zip(reader.schema, names, strict=True)])
    return pa.RecordBatchReader.from_batches(schema, (pa.RecordBatch.from_arrays(b.columns, schema=schema) for b in reader))


@contextmanager
def _failing(what: str) -> Iterator[None]:
    try:
        yield
    except duckdb.Error as exc:
        raise ConfigError(
            f"{what} could not be computed",
            why=str(exc).splitlines()[0],
            fix="Check the chart's measures, columns and SQL in the dashboard's file.",
        ) from None


# --- identifiers -----------------------------------------------------------------------------------


def _column_types(data: PublishedData, table: str) -> dict[str, str]:
    return {c.name: c.type for c in data.columns(table)}


def _dimensions(chart: Chart) -> list[str]:
    if "x" in chart.kind.takes and chart.x is None:  # validated with the file; this guards charts built in code
        raise ConfigError(f"The {chart.type} chart '{chart.title}' has no x column", fix="Add x: <column> to the chart in the dashboard's file.")
    return chart.kind.dimensions(chart)


def _check_column(column: str, columns: Mapping[str, str], dashboard: Dashboard, where: str, table: str) -> None:
    if column not in columns:
        raise ConfigError(
            f"'{where}' of dashboard '{dashboard.title}' uses column '{column}', which table '{table}' does not have",
            fix=f"Columns of {table}: {', '.join(sorted(columns))}.",
        )


def _measure(chart: Chart, name: str, sql: str) -> str:
    # Checked when the file is loaded too; this guards charts built in code (model_copy skips validation).
    if ";" in sql or not sql.strip():
        raise ConfigError(f"Measure '{name}' of chart '{chart.title}' must be one SQL expression", why=f"got {sql!r}", fix="Remove the ';'.")
    return f"({sql})"


def _order(chart: Chart, dims: list[str], allowed: set[str] | None) -> list[str]:
    if not chart.order_by:
        return [ident(d) for d in dims]
    order = []
    for item in chart.order_by:
        column, _, direction = item.strip().partition(" ")
        if allowed is not None and column not in allowed:
            raise ConfigError(f"Chart '{chart.title}' orders by '{column}', which it neither groups by nor measures", fix=f"Order by one of: {', '.join(sorted(allowed))}.")
        order.append(f"{ident(column)} {direction.strip().upper() or 'ASC'}")
    return order
