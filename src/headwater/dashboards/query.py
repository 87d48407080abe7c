"""Dashboard queries: a chart and filter selections in, parameterised SQL over the published table out.

Identifiers come from the dashboard file and are checked against the published table's real columns
before they are quoted. Filter values come from whoever asks (a browser's query string) and are only
ever bound parameters. Measures are SQL written by the project's author and kept in version control:
they are trusted, but a ``;`` is refused so a measure cannot become a second statement.

A pure service: the CLI and the web app both call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from headwater.config.model import Chart, Dashboard
from headwater.errors import ConfigError, HeadwaterError
from headwater.publish import PublishedData

OPTIONS_LIMIT = 1000
Selections = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Query:
    sql: str
    params: list[str]


@dataclass(frozen=True)
class ChartData:
    columns: list[str]
    rows: list[tuple[object, ...]]
    truncated: bool  # more rows matched than were fetched


def check_selections(dashboard: Dashboard, selections: Selections) -> dict[str, list[str]]:
    """Only declared filters may be used; empty values are dropped (an empty selection = no filter)."""
    declared = _declared(dashboard, selections)
    return {column: values for column in declared if (values := [v for v in selections.get(column, ()) if v != ""])}


def _declared(dashboard: Dashboard, columns: Iterable[str]) -> list[str]:
    declared = [f.column for f in dashboard.filters]
    undeclared = sorted(set(columns) - set(declared))
    if undeclared:
        raise HeadwaterError(
            f"Cannot filter '{dashboard.title}' on {', '.join(repr(c) for c in undeclared)}",
            why="only the columns listed under filters: in the dashboard's file can be filtered",
            fix=f"Filter on {', '.join(declared) or 'nothing: this dashboard has no filters'}.",
        )
    return declared


def chart_query(data: PublishedData, dashboard: Dashboard, chart: Chart, selections: Selections) -> Query:
    columns = _table_columns(data, dashboard)
    dims = _dimensions(chart)
    for column in dims:
        _check_column(column, columns, dashboard, chart.title)
    measures = [f"{_measure(chart, name, sql)} AS {_quote(name)}" for name, sql in chart.measures.items()]
    where, params = _where(check_selections(dashboard, selections), columns, dashboard)
    sql = f"SELECT {', '.join([*map(_quote, dims), *measures])}\nFROM {_quote(dashboard.table)}{where}"
    if dims:
        sql += f"\nGROUP BY {', '.join(map(_quote, dims))}"
    order = _order(chart, dims)
    if order:
        sql += f"\nORDER BY {', '.join(order)}"
    return Query(sql, params)


def filter_options(data: PublishedData, dashboard: Dashboard, column: str, limit: int = OPTIONS_LIMIT) -> list[str]:
    """Distinct non-null values of a filter column as text (what a selection compares against), sorted."""
    _declared(dashboard, [column])
    _check_column(column, _table_columns(data, dashboard), dashboard, "filters")
    distinct = f"SELECT DISTINCT {_quote(column)} AS v FROM {_quote(dashboard.table)} WHERE {_quote(column)} IS NOT NULL"
    sql = f"SELECT CAST(v AS VARCHAR) FROM ({distinct}) ORDER BY v LIMIT {int(limit)}"
    with data.cursor() as cur:
        return [row[0] for row in cur.execute(sql).fetchall()]


def fetch(data: PublishedData, chart: Chart, query: Query, limit: int) -> ChartData:
    with _failing(chart), data.cursor() as cur:
        result = cur.execute(query.sql, query.params)
        columns = [d[0] for d in result.description]
        rows = result.fetchmany(limit + 1)
    return ChartData(columns, rows[:limit], len(rows) > limit)


@contextmanager
def stream(data: PublishedData, chart: Chart, query: Query) -> Iterator[pa.RecordBatchReader]:
    """All of a chart's rows as Arrow batches, for downloads with no row cap."""
    with _failing(chart), data.stream(query.sql, query.params) as reader:
        yield reader


@contextmanager
def _failing(chart: Chart) -> Iterator[None]:
    try:
        yield
    except duckdb.Error as exc:
        raise ConfigError(
            f"The chart '{chart.title}' could not be computed",
            why=str(exc).splitlines()[0],
            fix="Check the chart's measures and columns in the dashboard's file.",
        ) from None


def _table_columns(data: PublishedData, dashboard: Dashboard) -> set[str]:
    return {c.name for c in data.columns(dashboard.table)}


def _dimensions(chart: Chart) -> list[str]:
    if chart.type == "table":
        return list(chart.group_by)
    if chart.x is None:
        raise ConfigError(f"The {chart.type} chart '{chart.title}' has no x column", fix="Add x: <column> to the chart in the dashboard's file.")
    return [chart.x] + ([chart.series] if chart.series else [])


def _check_column(column: str, columns: set[str], dashboard: Dashboard, where: str) -> None:
    if column not in columns:
        raise ConfigError(
            f"'{where}' of dashboard '{dashboard.title}' uses column '{column}', which table '{dashboard.table}' does not have",
            fix=f"Columns of {dashboard.table}: {', '.join(sorted(columns))}.",
        )


def _measure(chart: Chart, name: str, sql: str) -> str:
    if ";" in sql or not sql.strip():
        raise ConfigError(f"Measure '{name}' of chart '{chart.title}' must be one SQL expression", why=f"got {sql!r}", fix="Remove the ';'.")
    return f"({sql})"


def _where(selections: dict[str, list[str]], columns: set[str], dashboard: Dashboard) -> tuple[str, list[str]]:
    # Columns are compared as text so that dates, numbers and booleans match the options shown.
    clauses, params = [], []
    for column, values in selections.items():
        _check_column(column, columns, dashboard, "filters")
        clauses.append(f"CAST({_quote(column)} AS VARCHAR) IN ({', '.join(['?'] * len(values))})")
        params.extend(values)
    return ("\nWHERE " + " AND ".join(clauses) if clauses else ""), params


def _order(chart: Chart, dims: list[str]) -> list[str]:
    if not chart.order_by:
        return [_quote(d) for d in dims]
    allowed = {*dims, *chart.measures}
    order = []
    for item in chart.order_by:
        column, _, direction = item.strip().partition(" ")
        if column not in allowed:
            raise ConfigError(f"Chart '{chart.title}' orders by '{column}', which it neither groups by nor measures", fix=f"Order by one of: {', '.join(allowed)}.")
        order.append(f"{_quote(column)} {direction.upper() or 'ASC'}")
    return order


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
