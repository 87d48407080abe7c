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
    readable_tables,
    stream,
    table_query,
)
from headwater.dashboards.scope import RowScope, ScopeRefused

__all__ = [
    "PIVOT_COLUMNS",
    "ChartData",
    "Pivot",
    "Query",
    "RowScope",
    "ScopeRefused",
    "bind",
    "chart_query",
    "check_selections",
    "date_bounds",
    "fetch",
    "filter_options",
    "readable_tables",
    "stream",
    "table_query",
]
