"""Chart kinds: one object per ``type:`` a dashboard's chart may have, all listed in `CHART_KINDS`.

A kind holds its validation rules (what a chart of its kind takes and needs), its dimensions (the
columns its query groups by), how its query is shaped (`shape`, built by dashboards/query.py) and
how a page lays it out (`headline`, `default_width`, `tabular`). The Plotly figure of a plotted
kind is web-only and registered by kind in web/present.py. Adding a kind: one class and one line
in `CHART_KINDS` (and its name in `Chart.type`; tests/test_dashboards.py checks the two agree).

Kept in config, beneath dashboards and web, because the project file is validated with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from headwater.config.model import Chart

# How dashboards/query.py builds a kind's query from a table and measures: one row of scalar
# subqueries (headline numbers), rows grouped by the dimensions, or grouped rows pivoted in Python.
Shape = Literal["headline", "grouped", "pivot"]
DIMENSION_FIELDS = ("x", "series", "group_by", "rows", "columns")


class ChartKind:
    name: ClassVar[str]
    takes: ClassVar[frozenset[str]] = frozenset()  # which of DIMENSION_FIELDS a chart of this kind may set
    shape: ClassVar[Shape] = "grouped"
    one_measure: ClassVar[bool] = False
    headline: ClassVar[bool] = False  # a number in the row of headline numbers at the top of the page
    tabular: ClassVar[bool] = False  # shown as an HTML table (more rows rendered than a plot takes)
    sorted_by_dimensions: ClassVar[bool] = False  # a chart over SQL is always ordered by its dimensions
    default_width: ClassVar[str] = "full"

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def check(self, chart: Chart) -> None:
        """Raise ValueError when ``chart`` sets what its kind does not take, or lacks what it needs."""
        fields = {"x": chart.x, "series": chart.series, "group_by": chart.group_by, "rows": chart.rows, "columns": chart.columns}
        extra = [name for name, value in fields.items() if value and name not in self.takes]
        if extra:
            takes = " and ".join(sorted(self.takes)) if self.takes else "none of x, series, group_by, rows, columns"
            raise ValueError(f"a {self.label} chart takes {takes}, not {', '.join(extra)}")
        self.check_needs(chart)
        self.check_presentation(chart)

    def check_needs(self, chart: Chart) -> None:
        """The kind's own requirements, checked after what it takes."""

    def check_presentation(self, chart: Chart) -> None:
        if chart.compare is not None or chart.format != "number":
            raise ValueError("compare and format are for kpi charts")

    def check_table_order(self, chart: Chart) -> None:
        """A chart over a table and measures orders by its own columns."""
        known = {c for c in (chart.x, chart.series) if c} | set(chart.group_by) | set(chart.measures)
        for item in chart.order_by:
            column = item.split()[0]
            if column not in known:
                raise ValueError(f"order_by '{column}' is not one of the chart's columns ({', '.join(sorted(known))})")

    def dimensions(self, chart: Chart) -> list[str]:
        """The columns the chart's query groups by, in the order its data's columns come."""
        return []


class AxisChart(ChartKind):
    """Measures plotted against an x column, one trace per series value."""

    takes = frozenset({"x", "series"})
    sorted_by_dimensions = True
    default_width = "half"

    def check_needs(self, chart: Chart) -> None:
        if chart.x is None:
            raise ValueError(f"a {self.label} chart needs x: the column on its x axis")

    def dimensions(self, chart: Chart) -> list[str]:
        return [c for c in (chart.x, chart.series) if c]


class LineChart(AxisChart):
    name = "line"


class BarChart(AxisChart):
    name = "bar"


class StackedBarChart(AxisChart):
    name = "stacked_bar"


class TableChart(ChartKind):
    name = "table"
    takes = frozenset({"group_by"})
    tabular = True

    def dimensions(self, chart: Chart) -> list[str]:
        return list(chart.group_by)


class PivotChart(ChartKind):
    name = "pivot"
    takes = frozenset({"rows", "columns"})
    shape = "pivot"
    one_measure = True
    tabular = True

    def check_needs(self, chart: Chart) -> None:
        if not chart.rows or chart.columns is None:
            raise ValueError("a pivot chart needs rows: [columns...] and columns: <column whose values become columns>")

    def check(self, chart: Chart) -> None:
        super().check(chart)
        for item in chart.order_by:
            if item.split()[0] not in chart.rows:
                raise ValueError(f"a pivot chart orders its rows: order_by '{item.split()[0]}' is not one of rows ({', '.join(chart.rows)})")

    def check_table_order(self, chart: Chart) -> None:
        """Checked against its rows, in `check`."""

    def dimensions(self, chart: Chart) -> list[str]:
        return [*chart.rows, chart.columns or ""]


class KpiChart(ChartKind):
    name = "kpi"
    shape = "headline"
    one_measure = True
    headline = True

    def check_presentation(self, chart: Chart) -> None:
        if chart.width is not None:
            raise ValueError("a kpi chart takes no width: KPIs form the row of headline numbers at the top of the dashboard")
        if chart.order_by:
            raise ValueError("a kpi chart takes no order_by")


CHART_KINDS: dict[str, ChartKind] = {kind.name: kind for kind in (KpiChart(), LineChart(), BarChart(), StackedBarChart(), TableChart(), PivotChart())}
