"""Turning query results into what pages and JSON show: Plotly figures, table cells, durations."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from headwater.config.model import Chart
from headwater.dashboards import ChartData

MAX_POINT_TICKS = 12
# Okabe-Ito: distinguishable with the common kinds of colour blindness.
COLORWAY = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]


def jsonable(value: object) -> object:
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_rows(data: ChartData) -> list[list[object]]:
    return [[jsonable(v) for v in row] for row in data.rows]


def figure(chart: Chart, data: ChartData) -> dict[str, object]:
    """A Plotly figure: one trace per measure, and per series value when the chart has a series.

    The data's columns are x, then the series (if any), then the measures: named in the file, or
    whatever other columns a chart's SQL returns."""
    rows = json_rows(data)
    measures_at = 2 if chart.series else 1
    measures = data.columns[measures_at:]
    groups: dict[object, list[list[object]]] = {}
    for row in rows:
        groups.setdefault(row[1] if chart.series else None, []).append(row)
    traces = []
    for offset, measure in enumerate(measures):
        for key, group in groups.items():
            traces.append(_trace(chart, _trace_name(chart, measure, key, len(measures)), [r[0] for r in group], [r[measures_at + offset] for r in group]))
    return {"data": traces, "layout": _layout(chart, list(dict.fromkeys(row[0] for row in rows)), measures)}


def _trace_name(chart: Chart, measure: str, series: object, measures: int) -> str:
    if not chart.series:
        return measure
    return str(series) if measures == 1 else f"{series} · {measure}"


@dataclass(frozen=True)
class Plot:
    """How a plotted chart kind (config/charts.py) draws in Plotly: its traces and how bars share an x."""

    trace: dict[str, str]
    barmode: str = "group"


# The chart kinds drawn as Plotly figures, by kind; the others are KPIs or HTML tables.
PLOTS = {
    "line": Plot({"type": "scatter", "mode": "lines+markers"}),
    "bar": Plot({"type": "bar"}),
    "stacked_bar": Plot({"type": "bar"}, barmode="stack"),
}


def _trace(chart: Chart, name: str, x: list[object], y: list[object]) -> dict[str, object]:
    return {**PLOTS[chart.type].trace, "name": name, "x": x, "y": y}


def _layout(chart: Chart, xs: list[object], measures: list[str]) -> dict[str, object]:
    single = measures[0] if len(measures) == 1 else ""
    # With few points, ticks at the points themselves: a date axis would otherwise pick its own days.
    ticks = {"tickvals": xs} if len(xs) <= MAX_POINT_TICKS else {}
    return {
        "barmode": PLOTS[chart.type].barmode,
        "colorway": COLORWAY,
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "color": "#1a1d21"},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.25},
        "margin": {"l": 56, "r": 16, "t": 8, "b": 8},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "showlegend": True,
        "xaxis": {"automargin": True, "title": {"text": chart.x}, **ticks},
        "yaxis": {"automargin": True, "rangemode": "tozero", "title": {"text": single}},
    }


def kpi(chart: Chart, data: ChartData) -> dict[str, object]:
    """A KPI's number, and its comparison when it has one, as text: the first row's first column
    (and second column)."""
    row = data.rows[0] if data.rows else ()
    value = row[0] if row else None
    view: dict[str, object] = {"value": number(value, chart.format), "raw": jsonable(value), "compare": None}
    if chart.compare is not None:
        other = row[1] if len(row) > 1 else None
        view["compare"] = {"label": chart.compare.label, "value": number(other, chart.format), "delta": _delta(value, other, chart.format)}
    return view


def chart_view(chart: Chart, data: ChartData) -> dict[str, object]:
    """What a page shows of a chart beyond its rows, by kind: a plotted kind's figure, a KPI's numbers."""
    view = VIEWS.get(chart.type)
    return view(chart, data) if view else {}


def _figure_view(chart: Chart, data: ChartData) -> dict[str, object]:
    return {"figure": figure(chart, data)}


def _kpi_view(chart: Chart, data: ChartData) -> dict[str, object]:
    return {"kpi": kpi(chart, data)}


# The page's view of each chart kind (config/charts.py) that needs one; tables show their rows as they are.
VIEWS: dict[str, Callable[[Chart, ChartData], dict[str, object]]] = {**dict.fromkeys(PLOTS, _figure_view), "kpi": _kpi_view}


def number(value: object, fmt: str = "number") -> str:
    """A KPI's number: a percentage with one decimal, or the number as table cells show it; — for none."""
    if not is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        return "—"
    return f"{float(value):.1%}" if fmt == "percent" else cell(value)  # type: ignore[arg-type]


def _delta(value: object, other: object, fmt: str) -> str | None:
    if not (is_number(value) and is_number(other)):
        return None
    difference = float(value) - float(other)  # type: ignore[arg-type]
    if not math.isfinite(difference):
        return None
    sign = "+" if difference > 0 else "−" if difference < 0 else "±"
    if fmt == "percent":
        return f"{sign}{abs(difference) * 100:.1f} pts"
    return sign + cell(abs(int(difference)) if difference.is_integer() else abs(difference))


def cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (float, decimal.Decimal)):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    return str(jsonable(value))


def is_number(value: object) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def duration(value: dt.timedelta | None) -> str:
    if value is None:
        return ""
    seconds = round(value.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def utc(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def filename(text: str) -> str:
    """Safe inside a Content-Disposition header's quotes."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
