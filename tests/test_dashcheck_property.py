"""The dashboards check agrees with the page: for charts of every kind drawn at random, over real
and misspelt columns, the check (run on an outline: the published tables' columns, no rows) finds a
problem exactly when the page's own query fails on the published data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest_web import make_project, publish_rows, synthetic_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater import dashboards as service
from headwater.config.model import Dashboard
from headwater.dashboards.validate import check_dashboard, snapshot_outline
from headwater.errors import HeadwaterError
from headwater.publish import PublishedData
from headwater.warehouse import open_warehouse

TABLE = "flake_rate_weekly"
NUMBERS = ["completed", "no_show", "cancelled", "total_flakes", "total_signups", "flake_rate", "scheduled"]
TEXTS = ["region", "organizer", "week_start"]
MISSPELT = ["completd", "regoin", "no_such_column", "Region"]
COLUMNS = st.sampled_from(TEXTS + NUMBERS + MISSPELT)
FLAGS = st.none() | st.sampled_from(["is_current_week", "region", "is_current_wek"])  # a boolean, a text, a missing one
MEASURES = st.dictionaries(
    st.sampled_from(["m", "n", "total"]),
    st.one_of(st.just("count(*)"), st.builds(lambda f, c: f"{f}({c})", st.sampled_from(["sum", "avg", "max"]), COLUMNS)),
    min_size=1,
    max_size=2,
)


@st.composite
def charts(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["line", "bar", "stacked_bar", "table", "kpi", "pivot"]))
    chart: dict[str, Any] = {"title": "c", "type": kind, "where": draw(FLAGS)}
    if kind in ("line", "bar", "stacked_bar"):
        chart |= {"x": draw(COLUMNS), "series": draw(st.none() | COLUMNS), "measures": draw(MEASURES)}
    elif kind == "table":
        chart |= {"group_by": draw(st.lists(COLUMNS, min_size=1, max_size=2, unique=True)), "measures": draw(MEASURES)}
    elif kind == "pivot":
        rows = draw(st.lists(COLUMNS, min_size=1, max_size=1))
        chart |= {"rows": rows, "columns": draw(COLUMNS.filter(lambda c: c not in rows)), "measures": dict([next(iter(draw(MEASURES).items()))])}
    else:
        chart |= {"measures": dict([next(iter(draw(MEASURES).items()))])}
    return {k: v for k, v in chart.items() if v is not None}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PublishedData, PublishedData]]:
    project = make_project(tmp_path_factory.mktemp("dashcheck-property") / "project")
    publish_rows(project, synthetic_rows(), "run-000001")
    published = PublishedData(open_warehouse(project.root, project.config.warehouse))
    outline = snapshot_outline(published)
    yield published, outline
    outline.close()
    published.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chart=charts(), filter_column=st.sampled_from(["region", "regoin", "week_start"]))
def test_the_check_fails_a_chart_exactly_when_the_page_would(data: tuple[PublishedData, PublishedData], chart: dict[str, Any], filter_column: str) -> None:
    published, outline = data
    filters = [{"column": filter_column}, {"type": "date_range", "column": "week_start", "name": "weeks"}]
    board = Dashboard.model_validate({"title": "T", "table": TABLE, "filters": filters, "charts": [chart]})
    found = check_dashboard(outline, "t", "dashboards/t.yml", board, set(outline.tables()))
    page_fails = []
    try:  # what the page computes: the filters' options, then the chart
        for spec in board.filters:
            service.date_bounds(published, board, spec.key) if spec.type == "date_range" else service.filter_options(published, board, spec.key)
    except HeadwaterError as exc:
        page_fails.append(exc.what)
    try:
        service.fetch(published, board.charts[0], service.chart_query(published, board, board.charts[0], {}), 1000)
    except HeadwaterError as exc:
        page_fails.append(exc.what)
    assert bool(found) == bool(page_fails), (found, page_fails)
    assert all(f.blocking and f.file == "dashboards/t.yml" for f in found)
    for misspelt in MISSPELT:
        if any(misspelt in p for p in page_fails):
            assert any(misspelt in f.what for f in found)
