"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a real uvicorn server."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_web import (
    PASSWORD,
    REGIONS,
    WEEKS,
    account,
    make_project,
    publish_rows,
    served,
    synthetic_rows,
)

from headwater.web import create_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TABLE = "#chart-2"
ADMIN = "admin@example.org"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    project = make_project(tmp_path_factory.mktemp("browser") / "project")
    publish_rows(project, synthetic_rows(), "run-000001")
    account(project, "admin", ADMIN)
    with served(create_app(project)) as url:
        yield url


@pytest.fixture
def page(browser: Any, base_url: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page that refuses every request leaving the test server and records page errors."""
    param = getattr(request, "param", None)  # a viewport, or "anonymous" for a page that is not logged in
    viewport = param if isinstance(param, dict) else {"width": 1280, "height": 900}
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base_url) else route.abort())
    if param != "anonymous":
        page.goto(f"{base_url}/login")
        log_in(page)
        page.wait_for_url(f"{base_url}/dashboards/flake_rate")
    yield page
    context.close()


def log_in(page: Any, email: str = ADMIN, password: str = PASSWORD) -> None:
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def open_dashboard(page: Any, base_url: str, query: str = "") -> None:
    page.goto(f"{base_url}/dashboards/flake_rate{query}")
    page.wait_for_selector("#chart-0.js-plotly-plot .main-svg")
    page.wait_for_selector("#chart-1.js-plotly-plot .main-svg")


def table_rows(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(f"{TABLE} tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))")


def trace_names(page: Any, chart: str) -> list[str]:
    return page.evaluate(f"document.getElementById('{chart}').data.map(t => t.name)")


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("page", ["anonymous"], indirect=True)
def test_logging_in_leads_to_the_page_asked_for_and_out_again(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/dashboards/flake_rate?region=North")
    assert page.url == f"{base_url}/login?next=%2Fdashboards%2Fflake_rate%3Fregion%3DNorth"
    log_in(page, password="not the password")
    page.wait_for_selector("#login-error")
    assert "Wrong e-mail address or password" in page.locator("#login-error").inner_text()
    screenshot(page, "login-failed")
    assert page.problems == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]  # the form's answer
    page.problems.clear()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/dashboards/flake_rate?region=North")
    assert page.locator("#signed-in-as").inner_text() == f"{ADMIN} · admin"
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{base_url}/login?logged_out=1")
    assert "You have logged out." in page.content()
    page.goto(f"{base_url}/dashboards/flake_rate")
    assert page.url.startswith(f"{base_url}/login?next=")
    assert page.problems == []


def test_dashboard_draws_the_charts_and_the_table(page: Any, base_url: str) -> None:
    open_dashboard(page, base_url)
    screenshot(page, "dashboard-desktop")
    assert page.locator("#chart-0 svg .scatterlayer .trace").count() == len(REGIONS)
    assert page.locator("#chart-1 svg .barlayer .trace").count() == 2  # completed, flaked
    assert sorted(trace_names(page, "chart-0")) == REGIONS
    assert len(table_rows(page)) == len(WEEKS) * len(REGIONS)
    assert page.problems == []


def test_region_filter_updates_table_and_charts(page: Any, base_url: str) -> None:
    open_dashboard(page, base_url)
    before = page.evaluate("document.getElementById('chart-1').data[0].y")
    page.select_option("#filter-region", ["North"])
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**/dashboards/flake_rate?region=North")
    page.wait_for_selector("#chart-1.js-plotly-plot .main-svg")
    screenshot(page, "dashboard-filtered")
    rows = table_rows(page)
    assert len(rows) == len(WEEKS) and {row[1] for row in rows} == {"North"}
    assert trace_names(page, "chart-0") == ["North"]
    after = page.evaluate("document.getElementById('chart-1').data[0].y")
    expected = [sum(r["completed"] for r in synthetic_rows() if r["region"] == "North" and r["week_start"] == week) for week in WEEKS]
    assert after == expected and after != before
    assert page.locator("#filter-region option:checked").all_text_contents() == ["North"]
    assert page.problems == []


def test_csv_download_matches_the_table_shown(page: Any, base_url: str) -> None:
    open_dashboard(page, base_url, "?region=South&region=East")
    shown = table_rows(page)
    with page.expect_download() as info:
        page.locator(f"section:has({TABLE}) a.download").click()
    download = info.value
    assert download.suggested_filename == "flake_rate-weekly-totals.csv"
    with open(download.path(), newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == page.eval_on_selector_all(f"{TABLE} thead th", "cells => cells.map(c => c.textContent.trim())")
    assert len(rows) == len(shown) == len(WEEKS) * 2
    for got, seen in zip(rows, shown, strict=True):
        assert got[:2] == seen[:2]  # week, region
        assert [float(v) for v in got[2:]] == pytest.approx([float(v.replace(",", "")) for v in seen[2:]], abs=5e-5)


@pytest.mark.parametrize("page", [{"width": 390, "height": 844}], indirect=True)
def test_phone_width_has_no_horizontal_overflow(page: Any, base_url: str) -> None:
    open_dashboard(page, base_url)
    screenshot(page, "dashboard-phone")
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    widths = page.evaluate("[...document.querySelectorAll('.card')].map(c => c.getBoundingClientRect().right)")
    assert max(widths) <= 390
    assert page.problems == []


# --- KPIs, the date filter, XLSX downloads -------------------------------------------------------------


def test_kpis_are_the_headline_row(page: Any, base_url: str) -> None:
    open_dashboard(page, base_url)
    rows = synthetic_rows()
    current = [r for r in rows if r["week_start"] == WEEKS[-1]]
    flakes = sum(r["no_show"] + r["cancelled"] for r in current)
    rate = flakes / sum(r["completed"] + r["no_show"] + r["cancelled"] + r["scheduled"] for r in current)
    kpi = page.locator("#chart-3")
    assert kpi.is_visible() and kpi.inner_text() == f"{rate:.1%}"
    assert page.locator("#chart-4").inner_text() == str(flakes)
    kpi_top = page.evaluate("document.querySelector('.kpis').getBoundingClientRect().top")
    assert kpi_top < page.evaluate("document.querySelector('.charts').getBoundingClientRect().top")
    assert page.problems == []


def test_date_range_filter_narrows_every_chart(page: Any, base_url: str) -> None:
    open_dashboard(page, base_url)
    page.fill("#filter-weeks_from", "2024-01-07")
    page.fill("#filter-weeks_to", "2024-01-13")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**/dashboards/flake_rate?weeks_from=2024-01-07&weeks_to=2024-01-13")
    page.wait_for_selector("#chart-1.js-plotly-plot .main-svg")
    screenshot(page, "dashboard-date-range")
    assert {row[0] for row in table_rows(page)} == {"2024-01-13"}
    assert page.evaluate("document.getElementById('chart-1').data[0].x") == ["2024-01-13"]
    assert page.locator("#chart-5 thead th").all_text_contents() == ["week_start", *REGIONS]
    assert page.locator("#chart-5 tbody th, #chart-5 tbody td:first-child").all_text_contents() == ["2024-01-13"]
    assert page.locator("#filter-weeks_from").input_value() == "2024-01-07"
    assert page.locator("#chart-3").inner_text() == "—"  # the current week is outside the range
    assert page.problems == []


def test_xlsx_download_matches_the_table_shown(page: Any, base_url: str) -> None:
    import io

    import openpyxl

    open_dashboard(page, base_url, "?region=North&organizer=Ana")
    shown = table_rows(page)
    with page.expect_download() as info:
        page.locator(f"section:has({TABLE}) a.download-xlsx").click()
    download = info.value
    assert download.suggested_filename == "flake_rate-weekly-totals.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(Path(download.path()).read_bytes()), read_only=True)  # no .xlsx in the path
    header, *rows = [list(r) for r in book["data"].iter_rows(values_only=True)]
    book.close()
    assert header == page.eval_on_selector_all(f"{TABLE} thead th", "cells => cells.map(c => c.textContent.trim())")
    assert len(rows) == len(shown) == len(WEEKS)
    for got, seen in zip(rows, shown, strict=True):
        assert got[0].date().isoformat() == seen[0] and got[1] == seen[1] == "North"
        assert [float(v) for v in got[2:]] == pytest.approx([float(v.replace(",", "")) for v in seen[2:]], abs=5e-5)
