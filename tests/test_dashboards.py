"""Dashboards as code: every filter kind and chart type, checked against numbers computed here in
plain Python from the synthetic rows; SQL charts with named parameters; strict dashboard files;
injection attempts in every kind of filter; the page itself (KPIs, week and date filters)."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest_web import (  # noqa: F401
    ORGANIZERS,
    REGIONS,
    WEEKS,
    client_fixture,
    empty_project_fixture,
    html_table,
    make_project,
    project_fixture,
    synthetic_rows,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from warehouses import KINDS, Target, bigquery_target, drop_bigquery_datasets, new_pg_database, postgres_target, publish_built

from headwater import dashboards
from headwater.config import LoadedProject, load_project
from headwater.config.model import Dashboard, duckdb_sql, sql_parameters
from headwater.errors import ConfigError, HeadwaterError
from headwater.publish import PublishedData
from headwater.warehouse import Warehouse, open_warehouse
from headwater.web import present

CURRENT = dt.date(2024, 1, 20)
SHIFT_START = dt.datetime(2024, 1, 1, 6, 0)
SHIFTS = 200  # one shift every 7 hours from SHIFT_START
INJECTIONS = ["' OR 1=1 --", "North' OR '1'='1", "North'); DROP TABLE flake_rate_weekly; --", '" OR ""="', "North\\' --", "$region", ":region", "%", "*"]

LAB = """\
title: Lab
table: flake_rate_weekly
filters:
  - column: region
  - {column: organizer, label: Organizer}
  - {type: week, column: week_start, name: week, label: Week}
  - {type: date_range, column: week_start, name: weeks, label: Weeks}
charts:
  - {title: Rate by region, type: line, x: week_start, series: region, measures: {rate: "sum(total_flakes) / nullif(sum(total_signups), 0)"}}
  - {title: By region, type: bar, x: region, measures: {completed: sum(completed), flakes: sum(total_flakes)}}
  - {title: Stacked, type: stacked_bar, x: week_start, series: organizer, measures: {completed: sum(completed)}}
  - {title: By organizer, type: table, group_by: [organizer], measures: {signups: sum(total_signups), n: count(*)}, order_by: [signups desc]}
  - title: Current rate
    type: kpi
    where: is_current_week
    format: percent
    measures: {rate: "sum(total_flakes) / nullif(sum(total_signups), 0)"}
    compare: {label: all weeks}
  - {title: Pivot, type: pivot, rows: [region], columns: organizer, measures: {completed: sum(completed)}}
  - title: SQL line
    type: line
    x: week_start
    series: region
    sql: |
      select region, sum(completed) as completed, week_start   -- x and series need not come first
      from flake_rate_weekly
      where (:region is null or region in :region) and (:week is null or week_start = :week)
      group by region, week_start
  - title: SQL table
    type: table
    sql: |
      select organizer, sum(no_show) as no_show, ':region is text' as note
      from flake_rate_weekly
      where (:weeks_from is null or week_start >= :weeks_from) and (:weeks_to is null or week_start <= :weeks_to)
        and (:organizer is null or organizer in :organizer)
      group by organizer
    order_by: [organizer desc]
  - title: SQL kpi
    type: kpi
    sql: "select sum(completed), sum(total_signups) from flake_rate_weekly where :region is null or region in :region"
    compare: {label: signups}
  - title: SQL pivot
    type: pivot
    rows: [organizer]
    columns: week_start
    sql: "select organizer, week_start, sum(cancelled) as cancelled from flake_rate_weekly where :region is null or region in :region group by all"
  - {title: Shifts by region, type: bar, table: shifts, x: region, measures: {n: count(*)}, where: long_shift}
  - {title: Flags, type: kpi, measures: {n: count(*)}, where: is_current_week, compare: {label: all, where: is_current_week}}
"""
SHIFTS_BOARD = """\
title: Shifts
table: shifts
filters:
  - {type: date_range, column: starts_at, name: day}
  - {type: week, column: starts_at, name: shift_week}
  - {column: region}
charts:
  - {title: Per region, type: table, group_by: [region], measures: {n: count(*)}}
"""
LINE, BAR, STACKED, TABLE, KPI, PIVOT, SQL_LINE, SQL_TABLE, SQL_KPI, SQL_PIVOT, SHIFTS_BAR, FLAGS = range(12)


# --- the published data, and the same rows in Python ------------------------------------------------


def mart_rows() -> list[dict[str, object]]:
    rows = []
    for row in synthetic_rows():
        flakes = row["no_show"] + row["cancelled"]  # type: ignore[operator]
        signups = row["completed"] + flakes + row["scheduled"]  # type: ignore[operator]
        rows.append({**row, "total_flakes": flakes, "total_signups": signups, "is_current_week": row["week_start"] == CURRENT})
    return rows


def shift_rows() -> list[dict[str, object]]:
    return [{"starts_at": SHIFT_START + dt.timedelta(hours=7 * i), "region": REGIONS[i % 3], "long_shift": i % 4 == 0} for i in range(SHIFTS)]


def publish(project: LoadedProject, name: str = "run-000001") -> None:
    """The synthetic mart (as conftest_web publishes it) and a ``shifts`` table with timestamps, on
    the project's warehouse (tests/warehouses.py `publish_built`)."""

    def build(con: duckdb.DuckDBPyConnection) -> None:
        for table in ("m", "flake_rate_weekly", "shifts"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute("CREATE TABLE m (week_start DATE, region VARCHAR, organizer VARCHAR, completed INTEGER, no_show INTEGER, cancelled INTEGER, scheduled INTEGER)")
        con.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?, ?, ?)", [[r[c] for c in ("week_start", "region", "organizer", "completed", "no_show", "cancelled", "scheduled")] for r in synthetic_rows()])
        con.execute(
            """CREATE TABLE flake_rate_weekly AS SELECT week_start, region, organizer, completed, no_show, cancelled,
                no_show + cancelled AS total_flakes, completed + no_show + cancelled + scheduled AS total_signups,
                CAST(no_show + cancelled AS DOUBLE) / nullif(completed + no_show + cancelled + scheduled, 0) AS flake_rate,
                week_start = DATE '2024-01-20' AS is_current_week, scheduled FROM m"""
        )
        con.execute("CREATE TABLE shifts (starts_at TIMESTAMP, region VARCHAR, long_shift BOOLEAN)")
        con.executemany("INSERT INTO shifts VALUES (?, ?, ?)", [[r["starts_at"], r["region"], r["long_shift"]] for r in shift_rows()])

    publish_built(project, name, build, ["flake_rate_weekly", "shifts"])


def lab_project(root: Path, warehouse: Target | None = None) -> LoadedProject:
    project = make_project(root)
    (project.root / "dashboards" / "lab.yml").write_text(LAB)
    (project.root / "dashboards" / "shifts.yml").write_text(SHIFTS_BOARD)
    project = load_project(project.root)
    if warehouse is not None:
        project = warehouse.apply(project)
    publish(project)
    return project


@pytest.fixture(scope="module", name="lab", params=KINDS)
def lab_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoadedProject, PublishedData]]:
    """The lab's data published once per module on each warehouse of the matrix: every chart and
    filter test reads what that warehouse's publish left for the dashboards."""
    with ExitStack() as stack:
        target = Target("duckdb")
        if request.param == "postgres":
            target = postgres_target(stack.enter_context(new_pg_database(request.getfixturevalue("postgres_url"))))
        if request.param == "bigquery":
            emulator = request.getfixturevalue("bigquery_emulator")
            target = bigquery_target(emulator)
            stack.callback(drop_bigquery_datasets, emulator, target.prefix)
        assert target.kind == request.param
        project = lab_project(tmp_path_factory.mktemp("lab") / "project", target)
        data = PublishedData(open_warehouse(project.root, project.config.warehouse))
        yield project, data
        data.close()


def run(lab: tuple[LoadedProject, PublishedData], chart: int, selections: dict[str, list[str]] | None = None, board: str = "lab") -> dashboards.ChartData:
    project, data = lab
    dashboard = project.config.dashboards[board]
    spec = dashboard.charts[chart]
    return dashboards.fetch(data, spec, dashboards.chart_query(data, dashboard, spec, selections or {}), 10_000)


def selected(rows: list[dict[str, object]], regions: list[str] | None = None, organizers: list[str] | None = None, start: dt.date | None = None, end: dt.date | None = None, week: dt.date | None = None) -> list[dict[str, object]]:
    """The rows a selection keeps, decided in Python."""
    return [
        r
        for r in rows
        if (regions is None or r["region"] in regions)
        and (organizers is None or r["organizer"] in organizers)
        and (start is None or r["week_start"] >= start)  # type: ignore[operator]
        and (end is None or r["week_start"] <= end)  # type: ignore[operator]
        and (week is None or r["week_start"] == week)
    ]


def sums(rows: list[dict[str, object]], keys: tuple[str, ...], *columns: str) -> dict[tuple[object, ...], dict[str, int]]:
    out: dict[tuple[object, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        for column in columns:
            out[tuple(row[k] for k in keys)][column] += row[column]  # type: ignore[operator]
    return out


def as_dict(result: dashboards.ChartData) -> list[dict[str, object]]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


# --- chart types ------------------------------------------------------------------------------------


def test_line_chart_per_series_equals_python(lab) -> None:
    result = run(lab, LINE, {"region": ["North", "South"], "organizer": ["Ben"]})
    expected = sums(selected(mart_rows(), ["North", "South"], ["Ben"]), ("week_start", "region"), "total_flakes", "total_signups")
    assert result.columns == ["week_start", "region", "rate"]
    assert [(w, r) for w, r, _ in result.rows] == sorted(expected)
    for week, region, rate in result.rows:
        assert rate == pytest.approx(expected[(week, region)]["total_flakes"] / expected[(week, region)]["total_signups"])


def test_grouped_bar_chart_with_two_measures(lab) -> None:
    result = run(lab, BAR, {"weeks_from": ["2024-01-13"]})
    expected = sums(selected(mart_rows(), start=dt.date(2024, 1, 13)), ("region",), "completed", "total_flakes")
    assert result.columns == ["region", "completed", "flakes"]
    assert result.rows == [(region, expected[(region,)]["completed"], expected[(region,)]["total_flakes"]) for region in REGIONS]
    figure = present.figure(lab[0].config.dashboards["lab"].charts[BAR], result)
    assert [t["type"] for t in figure["data"]] == ["bar", "bar"] and figure["layout"]["barmode"] == "group"


def test_stacked_bar_by_series(lab) -> None:
    result = run(lab, STACKED, {"region": ["East"]})
    expected = sums(selected(mart_rows(), ["East"]), ("week_start", "organizer"), "completed")
    assert result.rows == [(w, o, expected[(w, o)]["completed"]) for w, o in sorted(expected)]
    figure = present.figure(lab[0].config.dashboards["lab"].charts[STACKED], result)
    assert figure["layout"]["barmode"] == "stack" and [t["name"] for t in figure["data"]] == ORGANIZERS


def test_table_grouped_and_ordered(lab) -> None:
    result = run(lab, TABLE, {"week": ["2024-01-13"]})
    rows = selected(mart_rows(), week=dt.date(2024, 1, 13))
    expected = sums(rows, ("organizer",), "total_signups")
    assert result.rows == sorted(((o, expected[(o,)]["total_signups"], 3) for (o,) in expected), key=lambda r: -r[1])


def test_kpi_counts_the_flagged_rows_and_compares_with_all(lab) -> None:
    for regions in (None, ["North"], ["East", "South"]):
        result = run(lab, KPI, {"region": regions} if regions else {})
        rows = selected(mart_rows(), regions)
        current = [r for r in rows if r["is_current_week"]]
        rate = sum(r["total_flakes"] for r in current) / sum(r["total_signups"] for r in current)  # type: ignore[misc]
        overall = sum(r["total_flakes"] for r in rows) / sum(r["total_signups"] for r in rows)  # type: ignore[misc]
        assert result.columns == ["rate", "rate (all weeks)"]
        assert result.rows[0] == pytest.approx((rate, overall))
        view = present.kpi(lab[0].config.dashboards["lab"].charts[KPI], result)
        assert view["value"] == f"{rate:.1%}"
        assert view["compare"] == {"label": "all weeks", "value": f"{overall:.1%}", "delta": f"{'+' if rate > overall else '−'}{abs(rate - overall) * 100:.1f} pts"}


def test_kpi_with_no_matching_rows_shows_a_dash(lab) -> None:
    result = run(lab, KPI, {"weeks_to": ["2024-01-13"]})  # the current week is filtered out
    rows = selected(mart_rows(), end=dt.date(2024, 1, 13))
    assert result.rows == [(None, pytest.approx(sum(r["total_flakes"] for r in rows) / sum(r["total_signups"] for r in rows)))]  # type: ignore[misc]
    view = present.kpi(lab[0].config.dashboards["lab"].charts[KPI], result)
    assert view["value"] == "—" and view["compare"]["delta"] is None  # type: ignore[index]


def test_kpi_compare_where_uses_its_own_flag(lab) -> None:
    result = run(lab, FLAGS)
    assert result.rows == [(6, 6)]  # both count the current week's rows: 3 regions x 2 organizers


def test_pivot_rows_by_columns(lab) -> None:
    result = run(lab, PIVOT, {"weeks_from": ["2024-01-13"], "weeks_to": ["2024-01-13"]})
    expected = sums(selected(mart_rows(), start=dt.date(2024, 1, 13), end=dt.date(2024, 1, 13)), ("region", "organizer"), "completed")
    assert result.columns == ["region", *ORGANIZERS]
    assert result.rows == [(region, *(expected[(region, o)]["completed"] for o in ORGANIZERS)) for region in REGIONS]


def test_pivot_has_empty_cells_where_a_combination_has_no_rows(lab) -> None:
    result = run(lab, SQL_PIVOT, {"region": ["North"]})
    assert result.columns == ["organizer", *(w.isoformat() for w in WEEKS)]
    assert len(result.rows) == 2 and all(None not in row for row in result.rows)
    project, data = lab
    dashboard = project.config.dashboards["lab"]
    chart = dashboard.charts[SQL_PIVOT].model_copy(update={"sql": "select organizer, week_start, sum(cancelled) as c from flake_rate_weekly where not (organizer = 'Ana' and week_start = DATE '2024-01-06') group by all"})
    rows = dashboards.fetch(data, chart, dashboards.chart_query(data, dashboard, chart, {}), 100).rows
    assert rows[0][:2] == ("Ana", None) and rows[1][1] is not None


def test_sql_pivot_equals_python(lab) -> None:
    result = run(lab, SQL_PIVOT, {"region": ["East", "South"]})
    expected = sums(selected(mart_rows(), ["East", "South"]), ("organizer", "week_start"), "cancelled")
    assert result.rows == [(o, *(expected[(o, w)]["cancelled"] for w in WEEKS)) for o in ORGANIZERS]


def test_pivot_rows_in_the_order_asked_for(lab) -> None:
    project, data = lab
    dashboard = project.config.dashboards["lab"]
    for index in (PIVOT, SQL_PIVOT):
        chart = dashboard.charts[index]
        chart = chart.model_copy(update={"order_by": [f"{chart.rows[0]} desc"]})
        rows = dashboards.fetch(data, chart, dashboards.chart_query(data, dashboard, chart, {}), 100).rows
        assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True) and len(rows) > 1


def test_too_many_pivot_columns_is_a_clear_error(lab, monkeypatch) -> None:
    monkeypatch.setattr(dashboards.query, "PIVOT_COLUMNS", 1)
    with pytest.raises(HeadwaterError, match="more than 1 columns") as caught:
        run(lab, PIVOT)
    assert "Filter" in (caught.value.fix or "")
    assert run(lab, PIVOT, {"organizer": ["Ana"]}).columns == ["region", "Ana"]


def test_a_sql_pivot_needs_exactly_one_value_column(lab) -> None:
    project, data = lab
    dashboard = project.config.dashboards["lab"]
    chart = dashboard.charts[SQL_PIVOT].model_copy(update={"sql": "select organizer, week_start, 1 as a, 2 as b from flake_rate_weekly"})
    with pytest.raises(ConfigError, match="one value column") as caught:
        dashboards.fetch(data, chart, dashboards.chart_query(data, dashboard, chart, {}), 10)
    assert "a, b" in (caught.value.why or "")


# --- SQL charts with named parameters -----------------------------------------------------------------


def test_sql_chart_gets_filters_as_bound_named_parameters(lab) -> None:
    project, data = lab
    dashboard = project.config.dashboards["lab"]
    query = dashboards.chart_query(data, dashboard, dashboard.charts[SQL_LINE], {"region": ["North", "' OR 1=1 --"], "week": ["2024-01-13"]})
    assert query.params == {"region": ["North", "' OR 1=1 --"], "week": dt.date(2024, 1, 13)}
    assert "$region" in query.sql and "$week" in query.sql and ":region" not in query.sql
    assert "North" not in query.sql and "1=1" not in query.sql
    assert query.unfiltered == ("organizer", "weeks")  # the SQL uses neither


def test_sql_line_chart_orders_x_and_series_first(lab) -> None:
    result = run(lab, SQL_LINE, {"region": ["South", "East"]})
    expected = sums(selected(mart_rows(), ["South", "East"]), ("week_start", "region"), "completed")
    assert result.columns == ["week_start", "region", "completed"]
    assert result.rows == [(w, r, expected[(w, r)]["completed"]) for w, r in sorted(expected)]
    assert run(lab, SQL_LINE, {"week": ["2024-01-06"]}).rows == [(WEEKS[0], r, sums(mart_rows(), ("week_start", "region"), "completed")[(WEEKS[0], r)]["completed"]) for r in REGIONS]


def test_sql_table_with_a_date_range_and_text_that_looks_like_a_parameter(lab) -> None:
    result = run(lab, SQL_TABLE, {"weeks_from": ["2024-01-07"], "organizer": ["Ana", "Ben"]})
    expected = sums(selected(mart_rows(), start=dt.date(2024, 1, 7)), ("organizer",), "no_show")
    assert result.rows == [(o, expected[(o,)]["no_show"], ":region is text") for o in sorted(ORGANIZERS, reverse=True)]


def test_sql_kpi_uses_its_first_and_second_column(lab) -> None:
    result = run(lab, SQL_KPI, {"region": ["North"]})
    rows = selected(mart_rows(), ["North"])
    assert result.rows == [(sum(r["completed"] for r in rows), sum(r["total_signups"] for r in rows))]  # type: ignore[misc]
    view = present.kpi(lab[0].config.dashboards["lab"].charts[SQL_KPI], result)
    completed, signups = result.rows[0]
    assert view["value"] == f"{completed:,}" and view["compare"]["delta"] == f"−{signups - completed:,}"  # type: ignore[index,operator]


def test_chart_on_another_table_is_not_filtered_by_columns_it_lacks(lab) -> None:
    project, data = lab
    dashboard = project.config.dashboards["lab"]
    query = dashboards.chart_query(data, dashboard, dashboard.charts[SHIFTS_BAR], {"region": ["North"], "organizer": ["Ana"], "weeks_from": ["2024-01-01"]})
    assert query.unfiltered == ("organizer", "week", "weeks")
    result = run(lab, SHIFTS_BAR, {"region": ["North"], "organizer": ["Ana"]})
    assert result.rows == [("North", sum(1 for s in shift_rows() if s["region"] == "North" and s["long_shift"]))]


# --- date and week filters ----------------------------------------------------------------------


def test_week_filter_options_are_the_weeks_newest_first(lab) -> None:
    project, data = lab
    assert dashboards.filter_options(data, project.config.dashboards["lab"], "week") == [w.isoformat() for w in reversed(WEEKS)]
    assert dashboards.date_bounds(data, project.config.dashboards["lab"], "weeks") == (WEEKS[0], WEEKS[-1])


@pytest.mark.parametrize(("start", "end"), [("2024-01-06", "2024-01-06"), ("2024-01-07", None), (None, "2024-01-19"), ("2024-01-13", "2024-01-20"), ("2023-01-01", "2023-12-31")])
def test_date_range_is_inclusive_at_both_ends(lab, start: str | None, end: str | None) -> None:
    picked = {k: [v] for k, v in (("weeks_from", start), ("weeks_to", end)) if v}
    result = run(lab, STACKED, picked)
    expected = sums(selected(mart_rows(), start=start and dt.date.fromisoformat(start), end=end and dt.date.fromisoformat(end)), ("week_start", "organizer"), "completed")  # type: ignore[arg-type]
    assert result.rows == [(w, o, expected[(w, o)]["completed"]) for w, o in sorted(expected)]


def test_date_filters_on_a_timestamp_column(lab) -> None:
    # starts_at is a TIMESTAMP: a day covers it from 00:00 to 23:59:59.999999 of that date.
    for start, end in [("2024-01-03", "2024-01-03"), ("2024-01-05", "2024-01-20"), ("2024-02-01", None)]:
        picked = {"day_from": [start]} | ({"day_to": [end]} if end else {})
        got = dict(run(lab, 0, picked, board="shifts").rows)
        keep = [s for s in shift_rows() if s["starts_at"].date() >= dt.date.fromisoformat(start) and (end is None or s["starts_at"].date() <= dt.date.fromisoformat(end))]  # type: ignore[attr-defined]
        assert got == {r: n for r in REGIONS if (n := sum(1 for s in keep if s["region"] == r))}
    day = dt.date(2024, 1, 4)
    assert dict(run(lab, 0, {"shift_week": [day.isoformat()]}, board="shifts").rows) == {r: n for r in REGIONS if (n := sum(1 for s in shift_rows() if s["starts_at"].date() == day and s["region"] == r))}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("selections", "message"),
    [
        pytest.param({"week": ["2024-13-01"]}, "is not a date", id="no-such-month"),
        pytest.param({"week": ["last week"]}, "is not a date", id="words"),
        pytest.param({"week": ["20240106"]}, "is not a date", id="compact-iso"),
        pytest.param({"week": ["2024-01-06", "2024-01-13"]}, "takes one week", id="two-weeks"),
        pytest.param({"weeks_from": ["2024-01-20"], "weeks_to": ["2024-01-06"]}, "ends (2024-01-06) before it starts", id="backwards"),
        pytest.param({"weeks_to": ["2024-01-06' OR '1'='1"]}, "is not a date", id="injection"),
        pytest.param({"weeks": ["2024-01-06"]}, "Cannot filter", id="range-needs-from-or-to"),
    ],
)
def test_bad_date_selections_are_user_errors(lab, selections: dict[str, list[str]], message: str) -> None:
    with pytest.raises(HeadwaterError, match=re.escape(message)) as caught:
        run(lab, TABLE, selections)
    assert not isinstance(caught.value, ConfigError)  # the request's fault (400), not the dashboard's
    assert caught.value.fix


def test_a_date_filter_on_a_text_column_is_a_config_error(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    (project.root / "dashboards" / "bad.yml").write_text("title: Bad\ntable: flake_rate_weekly\nfilters: [{type: week, column: region}]\ncharts: [{title: T, type: table, measures: {n: count(*)}}]\n")
    project = load_project(project.root)
    publish(project)
    data = PublishedData(Warehouse(project.root, project.config.warehouse))
    try:
        dashboard = project.config.dashboards["bad"]
        with pytest.raises(ConfigError, match="needs a date or timestamp column") as caught:
            dashboards.chart_query(data, dashboard, dashboard.charts[0], {"region": ["2024-01-06"]})
        assert "VARCHAR" in (caught.value.why or "")
    finally:
        data.close()


def test_where_must_name_a_boolean_column(lab) -> None:
    project, data = lab
    dashboard = project.config.dashboards["lab"]
    chart = dashboard.charts[KPI].model_copy(update={"where": "region"})
    with pytest.raises(ConfigError, match="not a boolean"):
        dashboards.chart_query(data, dashboard, chart, {})


# --- injection, in every kind of filter ---------------------------------------------------------------


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_in_multi_filters_matches_nothing_in_every_chart(lab, value: str) -> None:
    for index in (LINE, BAR, STACKED, TABLE, PIVOT, SQL_LINE, SQL_TABLE, SQL_PIVOT):
        assert run(lab, index, {"region": [value]}).rows == [] or index == SQL_TABLE, index  # SQL_TABLE ignores region
        assert run(lab, index, {"organizer": [value]}).rows == [] or index in (SQL_LINE, SQL_PIVOT)
    assert run(lab, KPI, {"region": [value]}).rows == [(None, None)]
    assert run(lab, SQL_KPI, {"region": [value]}).rows == [(None, None)]
    assert len(run(lab, TABLE).rows) == len(ORGANIZERS)  # nothing was dropped or changed


@pytest.mark.parametrize("value", [*INJECTIONS, "2024-01-06' OR '1'='1", "2024-01-06; DROP TABLE shifts", "2024-01-06 --"])
def test_injection_in_date_filters_is_refused_before_any_sql(lab, value: str) -> None:
    for key in ("week", "weeks_from", "weeks_to"):
        with pytest.raises(HeadwaterError, match="is not a date"):
            run(lab, SQL_LINE, {key: [value]})
    assert len(run(lab, TABLE).rows) == len(ORGANIZERS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(regions=st.none() | st.lists(st.sampled_from([*REGIONS, "north", "East ", "", "Nowhere"]), max_size=4), organizers=st.none() | st.lists(st.sampled_from([*ORGANIZERS, "ana"]), max_size=3))
def test_any_multi_selection_equals_python(lab, regions: list[str] | None, organizers: list[str] | None) -> None:
    picked = {k: v for k, v in (("region", regions), ("organizer", organizers)) if v is not None}
    # An empty value means "no filter" (what an empty form field sends); a list of only empty values too.
    effective = {k: [x for x in v if x] or None for k, v in picked.items()}
    rows = selected(mart_rows(), effective.get("region"), effective.get("organizer"))
    expected = sums(rows, ("organizer",), "total_signups")
    got = run(lab, TABLE, picked)
    assert sorted((o, s) for o, s, _ in got.rows) == sorted((o, v["total_signups"]) for (o,), v in expected.items())
    sql = run(lab, SQL_TABLE, {"organizer": organizers} if organizers is not None else {})
    assert {o for o, _, _ in sql.rows} == {r["organizer"] for r in selected(mart_rows(), organizers=effective.get("organizer"))}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.none() | st.dates(dt.date(2023, 12, 25), dt.date(2024, 1, 28)), length=st.integers(0, 30), open_end=st.booleans())
def test_any_date_range_equals_python(lab, start: dt.date | None, length: int, open_end: bool) -> None:
    end = None if open_end else (start or dt.date(2024, 1, 1)) + dt.timedelta(days=length)
    picked = {k: [v.isoformat()] for k, v in (("weeks_from", start), ("weeks_to", end)) if v}
    expected = sums(selected(mart_rows(), start=start, end=end), ("region",), "completed", "total_flakes")
    assert run(lab, BAR, picked).rows == [(r, expected[(r,)]["completed"], expected[(r,)]["total_flakes"]) for r in REGIONS if (r,) in expected]
    sql = run(lab, SQL_TABLE, picked)
    assert {o for o, _, _ in sql.rows} == {r["organizer"] for r in selected(mart_rows(), start=start, end=end)}


@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=30))
@example(value="2024-01-06")
@example(value="２０２４-01-06")  # full-width digits
def test_any_text_as_a_week_is_a_date_or_a_clean_error(value: str) -> None:
    dashboard = load_lab_config()
    try:
        params = dashboards.bind(dashboard, {"week": [value]})
    except HeadwaterError as exc:
        assert "is not a date" in exc.what or value == ""
        return
    if value == "":
        assert params["week"] is None
    else:
        assert isinstance(params["week"], dt.date) and params["week"].isoformat() == value


def load_lab_config() -> Dashboard:
    return Dashboard.model_validate(yaml.safe_load(LAB))


# --- the :name parameters of an author's SQL --------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "converted"),
    [
        ("select * from t where a = :a and b in :b", "select * from t where a = $a and b in $b"),
        ("select ':a', \"x:y\", $$ :c $$, $t$ :d $t$ from t -- :e\nwhere :f", "select ':a', \"x:y\", $$ :c $$, $t$ :d $t$ from t -- :e\nwhere $f"),
        ("select /* /* :a */ :b */ 1 where x::date = :c and f(y := 1)", "select /* /* :a */ :b */ 1 where x::date = $c and f(y := 1)"),
        ("select E'it\\'s :a', e'\\\\', :b", "select E'it\\'s :a', e'\\\\', $b"),
        ("select arr[1:n], arr[a:b], {'k':v}, :x::int", "select arr[1:n], arr[a:b], {'k':v}, $x::int"),
        ("select 'it''s :a' || :b", "select 'it''s :a' || $b"),
    ],
)
def test_named_parameters_become_duckdb_parameters_outside_literals(sql: str, converted: str) -> None:
    assert duckdb_sql(sql) == converted


_LITERAL = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20)


@settings(max_examples=200, deadline=None)
@given(literal=_LITERAL, name=st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True))
def test_a_parameter_inside_a_string_literal_stays_text(literal: str, name: str) -> None:
    quoted = "'" + literal.replace("'", "''") + "'"
    sql = f"select {quoted} as v, :{name} as p"
    text, names = sql_parameters(sql)
    assert text == f"select {quoted} as v, ${name} as p"
    assert names == [name]
    import duckdb

    assert duckdb.execute(text, {name: 1}).fetchall() == [(literal, 1)]


# --- dashboard files: strict, with errors naming the line ---------------------------------------------

BASE = """\
title: T
table: flake_rate_weekly
filters:
  - {column: region}
  - {type: date_range, column: week_start, name: weeks}
charts:
"""


@pytest.mark.parametrize(
    ("chart", "message"),
    [
        pytest.param("  - {title: K, type: kpi, measures: {a: sum(x), b: sum(y)}}", "a kpi chart shows one measure", id="kpi-two-measures"),
        pytest.param("  - {title: P, type: pivot, rows: [region], measures: {a: sum(x)}}", "a pivot chart needs rows", id="pivot-no-columns"),
        pytest.param("  - {title: L, type: line, measures: {a: sum(x)}}", "needs x", id="line-no-x"),
        pytest.param("  - {title: L, type: table, x: region, measures: {a: sum(x)}}", "a table chart takes group_by, not x", id="table-with-x"),
        pytest.param("  - {title: L, type: line, x: a, compare: {label: b}, measures: {a: sum(x)}}", "compare and format are for kpi", id="compare-on-line"),
        pytest.param("  - {title: K, type: kpi, width: half, measures: {a: sum(x)}}", "a kpi chart takes no width", id="kpi-width"),
        pytest.param("  - {title: S, type: table, sql: 'select 1', measures: {a: sum(x)}}", "remove measures", id="sql-and-measures"),
        pytest.param("  - {title: S, type: table}", "needs measures", id="neither"),
        pytest.param("  - {title: S, type: table, sql: 'select 1; select 2'}", "one SELECT statement", id="two-statements"),
        pytest.param("  - {title: S, type: table, sql: 'delete from flake_rate_weekly'}", "one SELECT statement", id="delete"),
        pytest.param("  - {title: S, type: table, sql: 'select * from t where a = ?'}", "named parameters", id="positional"),
        pytest.param("  - {title: S, type: table, sql: 'selec 1'}", "sql does not parse", id="syntax"),
        pytest.param("  - {title: S, type: table, sql: 'select * from t where r in :regoin'}", "did you mean ':region'?", id="unknown-parameter"),
        pytest.param("  - {title: S, type: table, sql: 'select * from t where w >= :weeks'}", "did you mean ':weeks_to'?", id="range-parameter"),
        pytest.param("  - {title: M, type: table, measures: {a: 'sum(x) from t; drop table t'}}", "must be one SQL expression", id="measure-semicolon"),
        pytest.param("  - {title: M, type: table, measures: {a: 'sum(x'}}", "measure 'a' does not parse", id="measure-syntax"),
        pytest.param("  - {title: M, type: table, measures: {a: 'sum(x) + $region'}}", "without parameters", id="measure-parameter"),
        pytest.param("  - {title: K, type: kpi, sql: 'select 1', compare: {label: x, where: flag}}", "compare.where needs a table", id="sql-compare-where"),
        pytest.param("  - {title: P, type: pivot, rows: [region], columns: week_start, order_by: [week_start], measures: {a: sum(x)}}", "a pivot chart orders its rows", id="pivot-order"),
        pytest.param("  - {title: K, type: kpi, order_by: [a], measures: {a: sum(x)}}", "a kpi chart takes no order_by", id="kpi-order"),
    ],
)
def test_bad_chart_is_an_error_naming_file_and_line(tmp_path: Path, chart: str, message: str) -> None:
    (tmp_path / "headwater.yml").write_text("name: t\n")
    board = tmp_path / "dashboards" / "board.yml"
    board.parent.mkdir()
    board.write_text(BASE + chart + "\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path, env={})
    assert message in caught.value.what
    assert f"{board}:7: charts.0" in caught.value.what


@pytest.mark.parametrize(
    ("filters", "message", "line"),
    [
        pytest.param("  - {type: weekly, column: week_start}", "Input should be 'multi', 'week' or 'date_range'", 4, id="unknown-kind"),
        pytest.param("  - {column: region}\n  - {column: region}", "'region' is already used", 5, id="duplicate"),
        pytest.param("  - {type: date_range, column: week_start, name: w}\n  - {column: w_to}", "'w_to' is already used", 5, id="range-names"),
        pytest.param("  - {type: date_range, colum: week_start}", "did you mean 'column'?", 4, id="typo"),
    ],
)
def test_bad_filter_is_an_error(tmp_path: Path, filters: str, message: str, line: int) -> None:
    (tmp_path / "headwater.yml").write_text("name: t\n")
    board = tmp_path / "dashboards" / "board.yml"
    board.parent.mkdir()
    board.write_text(f"title: T\ntable: t\nfilters:\n{filters}\ncharts:\n  - {{title: C, type: table, measures: {{n: count(*)}}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path, env={})
    assert message in caught.value.what
    assert f"{board}:{line}:" in caught.value.what


def test_the_demo_dashboard_uses_every_feature_it_advertises() -> None:
    from conftest_web import DEMO

    project = load_project(DEMO, env={})
    board = project.config.dashboards["flake_rate"]
    assert [c.type for c in board.charts][:3] == ["line", "stacked_bar", "table"]  # download URLs keep their numbers
    assert {c.type for c in board.charts} >= {"line", "stacked_bar", "table", "kpi", "pivot"}
    assert [f.type for f in board.filters] == ["multi", "multi", "date_range"]
    kpi = next(c for c in board.charts if c.type == "kpi")
    assert kpi.where == "is_current_week" and kpi.format == "percent"


# --- the page ------------------------------------------------------------------------------------------

DASH = "/dashboards/flake_rate"


def test_page_shows_kpis_first_with_their_comparison(client) -> None:
    html = client.get(DASH).text
    rows = mart_rows()
    current = [r for r in rows if r["is_current_week"]]
    rate = sum(r["total_flakes"] for r in current) / sum(r["total_signups"] for r in current)  # type: ignore[misc]
    overall = sum(r["total_flakes"] for r in rows) / sum(r["total_signups"] for r in rows)  # type: ignore[misc]
    assert html.index('class="kpis"') < html.index('class="charts"')
    value = re.search(r'<p class="kpi-value" id="chart-3"[^>]*>([^<]*)</p>', html)
    assert value and value.group(1) == f"{rate:.1%}"
    assert f"All weeks shown: {overall:.1%}" in html
    flakes = re.search(r'<p class="kpi-value" id="chart-4"[^>]*>([^<]*)</p>', html)
    assert flakes and flakes.group(1) == str(sum(r["total_flakes"] for r in current))


def test_page_with_a_date_range_filters_every_chart(client) -> None:
    response = client.get(DASH, params={"weeks_from": "2024-01-07", "weeks_to": "2024-01-13"})
    assert response.status_code == 200
    table = html_table(response.text, "chart-2")
    assert {row[0] for row in table[1:]} == {"2024-01-13"}
    assert 'value="2024-01-07" min="2024-01-06" max="2024-01-20"' in response.text  # the form keeps the selection
    pivot = html_table(response.text, "chart-5")
    assert pivot[0] == ["week_start", *REGIONS] and [row[0] for row in pivot[1:]] == ["2024-01-13"]
    assert "No rows match these filters." in response.text  # the current week's KPI
    assert f'href="{DASH}/charts/2.xlsx?weeks_from=2024-01-07&amp;weeks_to=2024-01-13"' in response.text


def test_page_with_a_bad_date_is_a_400_page(client) -> None:
    response = client.get(DASH, params={"weeks_from": "<script>x</script>"})
    assert response.status_code == 400
    assert "is not a date" in response.text and "<script>x" not in response.text


def test_page_says_which_filters_do_not_apply(project, client) -> None:
    board = project.root / "dashboards" / "flake_rate.yml"
    board.write_text(board.read_text() + "  - {title: By region only, type: table, sql: 'select region, count(*) as n from flake_rate_weekly where :region is null or region in :region group by all'}\n")
    from conftest_web import log_in
    from fastapi.testclient import TestClient

    from headwater.web import create_app

    with TestClient(create_app(load_project(project.root))) as app_client:
        log_in(app_client, project)
        html = app_client.get(DASH, params={"organizer": "Ana", "region": "North"}).text
        assert html.count("Not filtered by Organizer") == 1
        assert html_table(html, "chart-6")[1:] == [["North", "6"]]  # 3 weeks x 2 organizers: not filtered by organizer


def test_page_lists_every_published_table_for_download(client) -> None:
    html = client.get(DASH, params={"region": "North"}).text
    assert f'href="{DASH}/tables/flake_rate_weekly.csv?region=North"' in html
    assert f'href="{DASH}/tables/flake_rate_weekly.xlsx?region=North"' in html
    assert "1,048,575 rows" in html and "further sheets" in html


def test_week_filter_on_the_page(tmp_path: Path) -> None:
    from conftest_web import log_in
    from fastapi.testclient import TestClient

    from headwater.web import create_app

    project = lab_project(tmp_path / "p")
    with TestClient(create_app(project)) as app_client:
        log_in(app_client, project)
        html = app_client.get("/dashboards/lab", params={"week": "2024-01-13"}).text
        assert '<option value="2024-01-13" selected>2024-01-13</option>' in html
        assert '<option value="">All weeks</option>' in html
        rows = html_table(html, f"chart-{TABLE}")[1:]
        assert sum(int(r[2]) for r in rows) == len(REGIONS) * len(ORGANIZERS)  # one week's rows
        api = app_client.get(f"/api/dashboards/lab/charts/{SQL_LINE}", params={"week": "2024-01-13", "region": "East"}).json()
        assert [r[:2] for r in api["rows"]] == [["2024-01-13", "East"]]
        bad = app_client.get(f"/api/dashboards/lab/charts/{SQL_LINE}", params={"week": "x' OR 1=1"})
        assert bad.status_code == 400 and "is not a date" in bad.json()["error"]["message"]


def test_every_chart_type_has_its_kind_and_every_plotted_or_headline_kind_its_view():
    import typing

    from headwater.config.charts import CHART_KINDS
    from headwater.config.model import Chart
    from headwater.web.present import PLOTS, VIEWS

    assert set(typing.get_args(Chart.model_fields["type"].annotation)) == set(CHART_KINDS)
    assert all(name == kind.name for name, kind in CHART_KINDS.items())
    assert set(PLOTS) <= set(CHART_KINDS) and set(VIEWS) <= set(CHART_KINDS)
    for kind in CHART_KINDS.values():  # each kind is drawn somehow: a plot, a headline number or an HTML table
        assert (kind.name in PLOTS) + kind.headline + kind.tabular == 1, kind.name
