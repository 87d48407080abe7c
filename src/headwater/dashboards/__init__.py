from headwater.dashboards.query import (
    ChartData,
    Query,
    chart_query,
    check_selections,
    fetch,
    filter_options,
    stream,
)

__all__ = ["ChartData", "Query", "chart_query", "check_selections", "fetch", "filter_options", "stream"]
