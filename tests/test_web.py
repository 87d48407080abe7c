"""The web app in-process: every route, filters, downloads, errors, escaping, snapshot switches."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections import defaultdict

import pytest
from conftest_web import REGIONS, WEEKS, client_fixture, empty_project_fixture, html_table, logged_in_client, project_fixture, publish_rows, synthetic_rows  # noqa: F401
from fastapi.testclient import TestClient

from headwater import dashboards
from headwater.config import LoadedProject, load_project
from headwater.errors import ConfigError, HeadwaterError
from headwater.publish import PublishedData
from headwater.system import Run, open_system_db
from headwater.warehouse import Warehouse

DASH = "/dashboards/flake_rate"
LINE, STACKED, TABLE = 0, 1, 2
INJECTIONS = ["' OR 1=1 --", "North' OR '1'='1", "North'); DROP TABLE flake_rate_weekly; --", '" OR ""="', "North\\' --"]


def totals(rows: list[dict[str, object]], regions: set[str] | None = None) -> dict[tuple[str, str], dict[str, int]]:
    """(week, region) -> summed counts, computed straight from the synthetic rows."""
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        if regions is None or row["region"] in regions:
            sums = out[(row["week_start"].isoformat(), row["region"])]  # type: ignore[attr-defined]
            for key in ("completed", "no_show", "cancelled", "scheduled"):
                sums[key] += row[key]  # type: ignore[operator]
            sums["flakes"] += row["no_show"] + row["cancelled"]  # type: ignore[operator]
            sums["signups"] += row["completed"] + row["no_show"] + row["cancelled"] + row["scheduled"]  # type: ignore[operator]
    return out


def reload(project: LoadedProject) -> LoadedProject:
    """The project read again, after a test changed its files."""
    return load_project(project.root)


def chart_json(client: TestClient, index: int, query: str = "") -> dict[str, list]:
    response = client.get(f"/api/dashboards/flake_rate/charts/{index}{query}")
    assert response.status_code == 200, response.text
    return response.json()


# --- the query service ---------------------------------------------------------------------------


def test_filter_values_are_bound_parameters_never_sql(project) -> None:
    dashboard = project.config.dashboards["flake_rate"]
    data = PublishedData(Warehouse(project.root, project.config.warehouse))
    try:
        query = dashboards.chart_query(data, dashboard, dashboard.charts[TABLE], {"region": ["North", "' OR 1=1 --"], "organizer": []})
    finally:
        data.close()
    assert query.params == {"region": ["North", "' OR 1=1 --"]}
    assert "1=1" not in query.sql and "North" not in query.sql
    assert 'list_contains($region, CAST("region" AS VARCHAR))' in query.sql
    assert "organizer" not in query.sql  # an empty selection is no filter
    assert query.sql.endswith('ORDER BY "week_start" DESC, "region" ASC')


def test_undeclared_filter_is_refused_by_the_service(project) -> None:
    dashboard = project.config.dashboards["flake_rate"]
    with pytest.raises(HeadwaterError, match="Cannot filter") as caught:
        dashboards.check_selections(dashboard, {"completed": ["1"]})
    assert "region, organizer" in (caught.value.fix or "")


def test_a_measure_with_a_semicolon_is_refused(project) -> None:
    dashboard = project.config.dashboards["flake_rate"]
    chart = dashboard.charts[LINE].model_copy(update={"measures": {"x": "sum(completed); DROP TABLE flake_rate_weekly"}})
    data = PublishedData(Warehouse(project.root, project.config.warehouse))
    try:
        with pytest.raises(ConfigError, match="one SQL expression"):
            dashboards.chart_query(data, dashboard, chart, {})
    finally:
        data.close()


def test_filter_options_are_distinct_sorted_text(project) -> None:
    dashboard = project.config.dashboards["flake_rate"]
    data = PublishedData(Warehouse(project.root, project.config.warehouse))
    try:
        assert dashboards.filter_options(data, dashboard, "region") == REGIONS
        assert dashboards.filter_options(data, dashboard, "organizer", limit=1) == ["Ana"]
    finally:
        data.close()


# --- pages -----------------------------------------------------------------------------------------


def test_index_redirects_to_the_only_dashboard(client) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == DASH


def test_index_lists_dashboards_and_published_tables(project) -> None:
    second = project.root / "dashboards" / "second.yml"
    second.write_text("title: Second board\ntable: flake_rate_weekly\ncharts:\n  - {title: Rows, type: table, measures: {n: count(*)}}\n")
    with logged_in_client(reload(project)) as app_client:
        response = app_client.get("/")
    assert response.status_code == 200
    assert 'href="/dashboards/flake_rate"' in response.text and 'href="/dashboards/second"' in response.text
    assert 'href="/tables/flake_rate_weekly.csv"' in response.text


def test_dashboard_renders_title_filters_charts_and_table(client) -> None:
    response = client.get(DASH)
    assert response.status_code == 200
    html = response.text
    assert "<h1>Volunteer flake rate</h1>" in html
    assert '<label for="filter-region">Region</label>' in html
    for region in REGIONS:
        assert f'<option value="{region}">{region}</option>' in html
    assert html.count('class="plot"') == 2  # line + stacked bar
    assert '<script src="/static/plotly.min.js?v=' in html
    table = html_table(html, f"chart-{TABLE}")
    assert table[0] == ["week_start", "region", "completed", "no_show", "cancelled", "total_flakes", "total_signups", "flake_rate", "scheduled"]
    assert len(table) - 1 == len(WEEKS) * len(REGIONS)
    assert [row[0] for row in table[1:]] == sorted((row[0] for row in table[1:]), reverse=True)  # week_start desc
    assert f'href="{DASH}/charts/{TABLE}.csv"' in html


def test_region_filter_changes_the_table(client) -> None:
    expected = totals(synthetic_rows(), {"North"})
    response = client.get(f"{DASH}?region=North")
    assert response.status_code == 200
    rows = html_table(response.text, f"chart-{TABLE}")[1:]
    assert {row[1] for row in rows} == {"North"}
    assert len(rows) == len(WEEKS)
    for week, region, completed, _no_show, _cancelled, flakes, signups, rate, _scheduled in rows:
        sums = expected[(week, region)]
        assert (int(completed), int(flakes), int(signups)) == (sums["completed"], sums["flakes"], sums["signups"])
        assert float(rate) == pytest.approx(round(sums["flakes"] / sums["signups"], 4))
    assert '<option value="North" selected>North</option>' in response.text
    assert f'href="{DASH}/charts/{TABLE}.csv?region=North"' in response.text


def test_region_filter_changes_the_chart_data(client) -> None:
    everything = chart_json(client, LINE)
    assert {row[1] for row in everything["rows"]} == set(REGIONS)
    picked = chart_json(client, LINE, "?region=North&region=South")
    assert picked["columns"] == ["week_start", "region", "flake_rate"]
    expected = totals(synthetic_rows(), {"North", "South"})
    assert [(r[0], r[1]) for r in picked["rows"]] == sorted(expected)
    for week, region, rate in picked["rows"]:
        assert rate == pytest.approx(expected[(week, region)]["flakes"] / expected[(week, region)]["signups"])


def test_stacked_bar_sums_over_the_filtered_rows(client) -> None:
    data = chart_json(client, STACKED, "?region=East&organizer=Ben")
    rows = [r for r in synthetic_rows() if r["region"] == "East" and r["organizer"] == "Ben"]
    assert data["columns"] == ["week_start", "completed", "flaked"]
    assert data["rows"] == [[r["week_start"].isoformat(), r["completed"], r["no_show"] + r["cancelled"]] for r in rows]


def test_empty_filter_value_means_no_filter(client) -> None:
    assert chart_json(client, STACKED, "?region=") == chart_json(client, STACKED)


def test_chart_csv_equals_the_filtered_chart_data(client) -> None:
    response = client.get(f"{DASH}/charts/{TABLE}.csv?region=South&region=East")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="flake_rate-weekly-totals.csv"'
    got = list(csv.reader(io.StringIO(response.text)))
    data = chart_json(client, TABLE, "?region=South&region=East")
    assert got[0] == data["columns"]
    assert [[str(v) for v in row] for row in data["rows"]] == got[1:]
    assert {row[1] for row in got[1:]} == {"South", "East"}


def test_whole_table_csv(client) -> None:
    response = client.get("/tables/flake_rate_weekly.csv")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="flake_rate_weekly.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(synthetic_rows())
    assert sum(int(r["completed"]) for r in rows) == sum(r["completed"] for r in synthetic_rows())


def test_unknown_table_csv_is_404(client) -> None:
    response = client.get("/tables/nope.csv")
    assert response.status_code == 404
    assert "No published table named" in response.text


def test_runs_page_lists_recent_runs(client, project) -> None:
    assert "No runs yet" in client.get("/runs").text
    db = open_system_db(project)
    started = dt.datetime(2024, 1, 21, 9, 0, tzinfo=dt.UTC)
    with db.session() as session:
        session.add(Run(project="flake_demo", pipeline="flake_rate", status="success", trigger="cli", started_at=started, finished_at=started + dt.timedelta(seconds=83), rows_synced=12345))
        session.add(Run(project="flake_demo", pipeline="flake_rate", status="failed", trigger="cli", started_at=started, finished_at=started, error="dbt test failed\nWhy: <details>"))
        session.add(Run(project="other", pipeline="x", status="success", trigger="cli", started_at=started))
        session.commit()
    db.close()
    response = client.get("/runs")
    rows = html_table(response.text, "runs")
    assert rows[0] == ["Run", "Pipeline", "Status", "Started", "Duration", "Rows synced", "Error"]
    assert rows[1:] == [
        ["2", "flake_rate", "failed", "2024-01-21 09:00 UTC", "0s", "", "dbt test failed"],
        ["1", "flake_rate", "success", "2024-01-21 09:00 UTC", "1m 23s", "12,345", ""],
    ]


def test_healthz_names_the_published_snapshot(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "published": "run-000001.duckdb"}


def test_static_files_and_plotly_with_a_long_cache(client) -> None:
    plotly_js = client.get("/static/plotly.min.js")
    assert plotly_js.status_code == 200
    assert "immutable" in plotly_js.headers["cache-control"] and "max-age=31536000" in plotly_js.headers["cache-control"]
    assert plotly_js.headers["content-encoding"] == "gzip"
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/dashboard.js").status_code == 200


def test_security_headers(client) -> None:
    headers = client.get(DASH).headers
    assert "script-src" not in headers["content-security-policy"]  # falls back to default-src 'self': no inline scripts
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_dashboard_is_a_404_page(client) -> None:
    response = client.get("/dashboards/nope")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No dashboard named &#39;nope&#39;" in response.text
    assert "flake_rate" in response.text  # the fix lists the dashboards there are


def test_unknown_chart_and_route_are_404(client) -> None:
    assert client.get(f"{DASH}/charts/7.csv").status_code == 404
    response = client.get("/no/such/page")
    assert response.status_code == 404 and "Page not found" in response.text
    api = client.get("/api/dashboards/flake_rate/charts/7")
    assert api.status_code == 404
    assert api.json()["error"]["message"] == "Dashboard 'flake_rate' has no chart number 7"


def test_filter_on_an_undeclared_column_is_400(client) -> None:
    page = client.get(f"{DASH}?completed=1")
    assert page.status_code == 400
    assert "Cannot filter" in page.text and "region, organizer" in page.text
    api = client.get("/api/dashboards/flake_rate/charts/0?is_current_week=true")
    assert api.status_code == 400
    assert set(api.json()["error"]) == {"message", "why", "fix"}
    assert client.get(f"{DASH}/charts/0.csv?scheduled=1").status_code == 400


@pytest.mark.parametrize("value", INJECTIONS)
def test_sql_injection_in_filter_values_matches_nothing(client, value: str) -> None:
    assert chart_json(client, TABLE, f"?region={value}")["rows"] == []
    page = client.get(DASH, params={"region": value, "organizer": value})
    assert page.status_code == 200 and "No rows match these filters." in page.text
    csv_rows = list(csv.reader(io.StringIO(client.get(f"{DASH}/charts/{TABLE}.csv", params={"region": value}).text)))
    assert len(csv_rows) == 1  # the header only
    assert len(chart_json(client, TABLE)["rows"]) == len(WEEKS) * len(REGIONS)  # the table is still there


def test_script_in_data_is_escaped(client, project) -> None:
    evil = "<script>alert('x')</script>"
    rows = synthetic_rows()
    rows[0] = {**rows[0], "region": evil, "organizer": evil}
    publish_rows(project, rows, "run-000002")
    response = client.get(DASH)
    assert response.status_code == 200
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in response.text  # the option and the table cell
    assert "\\u003cscript\\u003e" in response.text  # inside the chart's JSON
    assert evil in [row[1] for row in html_table(response.text, f"chart-{TABLE}")]  # shown as text
    filtered = client.get(DASH, params={"region": evil})
    assert [row[1] for row in html_table(filtered.text, f"chart-{TABLE}")[1:]] == [evil]


def test_nothing_published_says_so_and_how_to_fix_it(empty_project) -> None:
    with logged_in_client(empty_project) as app_client:
        page = app_client.get(DASH)
        assert page.status_code == 503
        assert "Nothing has been published yet" in page.text and "headwater run" in page.text
        api = app_client.get("/api/dashboards/flake_rate/charts/0")
        assert api.status_code == 503 and "headwater run" in api.json()["error"]["fix"]
        assert app_client.get(f"{DASH}/charts/0.csv").status_code == 503
        assert app_client.get("/tables/flake_rate_weekly.csv").status_code == 503
        assert app_client.get("/healthz").json() == {"status": "ok", "published": None}
        assert app_client.get("/dashboards/nope").status_code == 404  # an unknown dashboard is still unknown


def test_a_new_snapshot_is_picked_up_by_the_next_request(client, project) -> None:
    before = chart_json(client, STACKED, "?region=North")
    publish_rows(project, synthetic_rows(scale=10), "run-000002")
    after = chart_json(client, STACKED, "?region=North")
    assert [row[1] * 10 for row in before["rows"]] == [row[1] for row in after["rows"]]
    assert client.get("/healthz").json()["published"] == "run-000002.duckdb"
    table = html_table(client.get(DASH).text, f"chart-{TABLE}")
    assert sum(int(row[2].replace(",", "")) for row in table[1:]) == 10 * sum(r["completed"] for r in synthetic_rows())


def test_a_broken_measure_is_a_clear_error_card(project) -> None:
    board = project.root / "dashboards" / "flake_rate.yml"
    board.write_text(board.read_text().replace("sum(completed)\n      flaked", "sum(no_such_column)\n      flaked"))
    with logged_in_client(reload(project)) as app_client:
        page = app_client.get(DASH)
        assert page.status_code == 200  # the other charts are shown (issue #20); the broken one says why, to an admin
        assert 'id="chart-1-error"' in page.text and 'id="chart-0-figure"' in page.text
        assert "The chart &#39;Completed vs flaked&#39; could not be computed" in page.text
        assert "no_such_column" in page.text
        assert app_client.get(f"{DASH}/charts/{STACKED}.csv").status_code == 500  # before any byte of CSV is sent


def test_a_bug_is_a_500_page_without_a_traceback(project, monkeypatch, caplog) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(dashboards, "fetch", boom)
    with caplog.at_level(logging.ERROR, logger="headwater.web"), logged_in_client(project, raise_server_exceptions=False) as app_client:
        page = app_client.get(DASH)
        api = app_client.get("/api/dashboards/flake_rate/charts/0")
    assert page.status_code == 500 and api.status_code == 500
    assert "Something went wrong" in page.text
    for body in (page.text, api.text):
        assert "secret internals" not in body and "Traceback" not in body
    assert "secret internals" in caplog.text


def test_run_detail_page_shows_steps_checks_samples_and_log(client, project) -> None:
    from headwater.system import CheckResult, RunLog, RunStep

    db = open_system_db(project)
    started = dt.datetime(2024, 1, 21, 9, 0, tzinfo=dt.UTC)
    with db.session() as session:
        run = Run(project="flake_demo", pipeline="flake_rate", status="failed", trigger="schedule", started_at=started, finished_at=started + dt.timedelta(seconds=5), error="1 check(s) failed\nWhy: <b>bad</b>")
        session.add(run)
        session.flush()
        session.add(RunStep(run_id=run.id, position=1, name="dbt:build", status="success", started_at=started, finished_at=started + dt.timedelta(seconds=3), rows=10))
        session.add(RunStep(run_id=run.id, position=2, name="checks", status="failed", started_at=started, finished_at=started, error="1 check(s) failed"))
        session.add(CheckResult(
            run_id=run.id, name="totals_match", kind="reconcile", status="fail", severity="error", observed="1 of 3 keys differ", expected="0 keys differ",
            message="left ≠ right", sample='{"columns": ["region", "left", "right"], "rows": [["<script>x</script>", 5, 4]]}',
        ))
        session.add(RunLog(run_id=run.id, at=started, level="error", message="check totals_match: fail"))
        session.commit()
        run_id = run.id
    other = Run(project="other", pipeline="x", status="success", trigger="cli", started_at=started)
    with db.session() as session:
        session.add(other)
        session.commit()
        other_id = other.id
    db.close()

    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert html_table(page.text, "steps")[1:] == [["dbt:build", "success", "3s", "10", ""], ["checks", "failed", "0s", "", "1 check(s) failed"]]
    assert html_table(page.text, "checks")[1] == ["totals_match", "reconcile", "fail", "1 of 3 keys differ", "0 keys differ", "left ≠ right"]
    assert "&lt;script&gt;x&lt;/script&gt;" in page.text and "<script>x</script>" not in page.text
    assert "&lt;b&gt;bad&lt;/b&gt;" in page.text and "check totals_match: fail" in page.text
    assert client.get(f"/runs/{other_id}").status_code == 404  # another project's run is not this app's
    assert client.get("/runs/999999").status_code == 404
    assert client.get(f"/runs/{2**64}").status_code == 404  # past SQLite's integers: no such run, not a 500
    assert f'href="/runs/{run_id}"' in client.get("/runs").text


def test_chart_data_is_computed_once_per_snapshot_and_filters(client) -> None:
    cache = client.app.state.ctx._results
    first = chart_json(client, STACKED, "?region=North&region=South")
    entries = len(cache)
    assert chart_json(client, STACKED, "?region=South&region=North") == first  # same selection, other order
    assert len(cache) == entries
    chart_json(client, STACKED, "?region=North")
    assert len(cache) == entries + 1
