from headwater.dashboards.query import (
    PIVOT_COLUMNS,
    ChartData,
    Pivot,
    Query,
    bind,
    chart_query,
    check_selections,
    date_bounds,
    fetch,
    filter_options,
    stream,
    table_query,
)

__all__ = [
    "PIVOT_COLUMNS",
    "ChartData",
    "Pivot",
    "Query",
    "bind",
    "chart_query",
    "check_selections",
    "date_bounds",
    "fetch",
    "filter_options",
    "stream",
    "table_query",
]
