"""Filter values that cannot mean anything are user errors, never every row (issue #20).

Through the real CLI on the demo (a few hundred sign-ups, built by `headwater run`), the web app's
chart data and downloads on the same published data, and Chromium for the page a reader sees."""

from __future__ import annotations

import csv
import io
import os
import shlex
import string
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_process import run_cli
from conftest_web import account, logged_in_client, served
from demo_project import make_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater.config import load_project
from headwater.errors import ExitCode
from headwater.web import create_app

# A second dashboard over the demo's mart, with filters of every kind on columns of several types.
KINDS = """title: Kinds
table: flake_rate_weekly
filters:
  - column: completed
  - column: is_current_week
  - type: week
    column: week_start
    name: week
  - type: date_range
    column: week_start
    name: weeks
charts:
  - title: Sign-ups by region
    type: table
    group_by: [region]
    measures: {signups: sum(total_signups)}
  - title: Sign-ups by week and region
    type: pivot
    rows: [week_start]
    columns: region
    measures: {signups: sum(total_signups)}
  - title: Completed, from SQL
    type: table
    sql: select region, sum(completed) as completed from flake_rate_weekly where (:completed is null or cast(completed as varchar) in :completed) group by region
"""


def headwater(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "HEADWATER_NO_DAEMON": "1"})


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("answers") / "demo"
    make_project(root, 300)
    (root / "dashboards" / "kinds.yml").write_text(KINDS)
    result = headwater("run", "-p", root)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def export(demo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`headwater export flake_rate_weekly -o - ARGS`: the CSV on standard output."""
    return headwater("export", "flake_rate_weekly", "-p", demo, "-o", "-", *args)


def published(demo: Path) -> list[dict[str, str]]:
    """The published mart as `headwater export` writes it (read once, in this process)."""
    if demo not in _PUBLISHED:
        result = export(demo)
        assert result.returncode == 0, result.stderr
        _PUBLISHED[demo] = list(csv.DictReader(io.StringIO(result.stdout)))
    return _PUBLISHED[demo]


_PUBLISHED: dict[Path, list[dict[str, str]]] = {}


def assert_user_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == ExitCode.USER_ERROR, (result.returncode, result.stderr)
    assert result.stdout == "", "rows were written for a filter that cannot apply"
    assert "Traceback" not in result.stderr and result.stderr.count("Error:") == 1 and "Fix:" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


# --- unknown names, unbindable values -------------------------------------------------------------------


def test_an_unknown_filter_name_is_a_user_error_naming_the_filters_and_kinds(demo: Path) -> None:
    assert_user_error(
        export(demo, "-d", "flake_rate", "--filter", "distrct=North"),
        "'distrct'",
        "region (multi",
        "organizer (multi",
        "weeks_from / weeks_to (date_range",
    )
    assert_user_error(export(demo, "-d", "flake_rate", "--filter", "regoin=North Metro"), "Did you mean region?")
    assert_user_error(export(demo, "-d", "flake_rate", "--filter", "region="), "has no value", "every row would be written")  # `region=$UNSET`


@pytest.mark.parametrize(
    ("selection", "words"),
    [
        ("completed=abc", ["completed='abc'", "numbers (BIGINT)"]),
        ("is_current_week=maybe", ["is_current_week='maybe'", "true or false (BOOLEAN)"]),
        ("week=tuesday", ["week='tuesday'", "is not a date"]),
        ("weeks_from=2026-02-30", ["is not a date"]),
    ],
)
def test_a_value_its_filter_cannot_hold_is_a_user_error(demo: Path, selection: str, words: list[str]) -> None:
    assert_user_error(export(demo, "-d", "kinds", "--filter", selection), *words)


def test_a_value_of_the_filters_kind_filters(demo: Path) -> None:
    rows = published(demo)
    wanted = rows[0]["completed"]
    result = export(demo, "-d", "kinds", "--filter", f"completed={wanted}", "--filter", "is_current_week=false")
    assert result.returncode == 0, result.stderr
    got = list(csv.DictReader(io.StringIO(result.stdout)))
    assert got and len(got) == sum(1 for r in rows if r["completed"] == wanted and r["is_current_week"] == "false")
    assert {r["completed"] for r in got} == {wanted}


def test_a_filter_the_table_cannot_take_is_refused_not_ignored(demo: Path) -> None:
    """A dashboard's filter on a column the exported table lacks would write every row."""
    with headwater_duckdb(demo) as con:
        con.execute("CREATE TABLE IF NOT EXISTS regions_only AS SELECT DISTINCT region FROM flake_rate_weekly")
    result = headwater("export", "regions_only", "-p", demo, "-o", "-", "-d", "kinds", "--filter", "completed=3")
    assert_user_error(result, "cannot apply to table 'regions_only'", "'completed'")
    result = headwater("export", "regions_only", "-p", demo, "-o", "-", "-d", "flake_rate", "--filter", "region=Highlands")
    assert result.returncode == 0 and result.stdout.splitlines() == ["\"region\"", "\"Highlands\""], result.stderr


@contextmanager
def headwater_duckdb(demo: Path) -> Iterator[Any]:
    """The current published snapshot, writable: for a table the dashboard's filters do not fit (a
    test's own addition; `headwater run` publishes only the marts)."""
    import duckdb

    from headwater.warehouse import open_warehouse

    project = load_project(demo)
    path = open_warehouse(project.root, project.config.warehouse).current_snapshot()
    assert path is not None
    with duckdb.connect(str(path)) as con:
        yield con


NOT_A_NUMBER = st.text(alphabet=string.ascii_letters + " /_", min_size=1, max_size=12).filter(lambda v: v.strip() != "" and v.strip().lower() not in {"inf", "nan", "infinity"})
NOT_A_DATE = st.one_of(
    st.dates().map(lambda d: d.strftime("%d/%m/%Y")),
    st.dates().map(lambda d: d.strftime("%m/%d/%Y")),
    st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=10).filter(str.strip),
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(1, 9999), st.integers(13, 99), st.integers(1, 28)),
)
NOT_A_BOOLEAN = st.text(alphabet=string.ascii_letters, min_size=2, max_size=8).filter(lambda v: v.lower() not in {"true", "false", "yes", "no", "on", "off"})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(NOT_A_NUMBER.map(lambda v: f"completed={v}"), NOT_A_DATE.map(lambda v: f"week={v}"), NOT_A_DATE.map(lambda v: f"weeks_to={v}"), NOT_A_BOOLEAN.map(lambda v: f"is_current_week={v}")))
def test_a_value_that_cannot_be_bound_is_exit_2_never_rows(demo: Path, selection: str) -> None:
    assert_user_error(export(demo, "-d", "kinds", "--filter", selection), selection.partition("=")[0])


# --- values that match nothing, and the README's examples -----------------------------------------------


def test_a_value_that_matches_nothing_says_which_values_there_are(demo: Path) -> None:
    regions = sorted({r["region"] for r in published(demo)})
    result = export(demo, "-d", "flake_rate", "--filter", "region=North")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [], "region=North is no region of the demo"
    notes = [line for line in result.stderr.splitlines() if line.startswith("Note:")]
    assert notes == [f"Note: region=North matches no row of flake_rate_weekly; its values: {', '.join(regions)}."]
    assert "Note" not in result.stdout  # notes never go into the data

    weeks = sorted({r["week_start"] for r in published(demo)})
    result = export(demo, "-d", "flake_rate", "--filter", "weeks_from=2099-01-01")
    assert result.returncode == 0 and f"its week_start runs from {weeks[0]} to {weeks[-1]}" in result.stderr, result.stderr
    result = export(demo, "-d", "kinds", "--filter", "week=2099-01-02")
    assert result.returncode == 0 and f"week=2099-01-02 matches no row of flake_rate_weekly; {min(10, len(weeks))}" in result.stderr, result.stderr
    assert weeks[-1] in result.stderr  # newest first


def test_a_value_that_matches_is_quiet(demo: Path) -> None:
    region = published(demo)[0]["region"]
    result = export(demo, "-d", "flake_rate", "--filter", f"region={region}", "--filter", "region=Nowhere")
    assert result.returncode == 0
    got = list(csv.DictReader(io.StringIO(result.stdout)))
    assert got and {r["region"] for r in got} == {region}
    assert [line for line in result.stderr.splitlines() if line.startswith("Note:")] == [line for line in result.stderr.splitlines() if "region=Nowhere" in line]


def test_the_readmes_export_examples_run_as_printed(demo: Path, tmp_path: Path) -> None:
    """Every `headwater export ... --filter` line of the README, run in the demo: rows, no note."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("headwater export") and "--filter" in line]
    assert lines, "the README shows a filtered export"
    for line in lines:
        args = [a if a != "north.csv" else str(tmp_path / a) for a in shlex.split(line)[1:]]
        result = headwater(*args, "-p", demo)
        assert result.returncode == 0 and "Note:" not in result.stderr, (line, result.stderr)
        written = next(Path(a) for a in args if a.endswith(".csv"))
        assert len(written.read_text().splitlines()) > 1, (line, "no rows")


# --- the web app: the same mistakes are 400s with the message, never 500s nor every row -----------------

ENDPOINTS = [
    "/dashboards/{d}",
    "/api/dashboards/{d}/charts/0",
    "/api/dashboards/{d}/charts/1",  # kinds: a pivot; flake_rate: a stacked bar
    "/dashboards/{d}/charts/1.csv",
    "/dashboards/{d}/charts/2.csv",  # kinds: a chart over the author's SQL
    "/dashboards/{d}/charts/0.csv",
    "/dashboards/{d}/charts/0.xlsx",
    "/dashboards/{d}/tables/flake_rate_weekly.csv",
    "/dashboards/{d}/tables/flake_rate_weekly.xlsx",
]


@pytest.mark.parametrize(
    ("dashboard", "params", "words"),
    [
        ("flake_rate", {"distrct": "North"}, "Cannot filter"),
        ("kinds", {"completed": "abc"}, "completed=&#39;abc&#39; is not a value"),
        ("kinds", {"is_current_week": "maybe"}, "is not a value"),
        ("kinds", {"week": "tuesday"}, "is not a date"),
    ],
)
def test_web_answers_the_same_mistakes_with_400(demo: Path, dashboard: str, params: dict[str, str], words: str) -> None:
    project = load_project(demo)
    with logged_in_client(project) as client:
        for endpoint in ENDPOINTS:
            response = client.get(endpoint.format(d=dashboard), params=params)
            assert response.status_code == 400, (endpoint, response.status_code)
            text = response.json()["error"]["message"].replace("'", "&#39;") if endpoint.startswith("/api/") else response.text
            assert words in text, (endpoint, text[:300])
        bare = client.get("/tables/flake_rate_weekly.csv", params=params)  # a bare table takes no filters: refused, not ignored
        assert bare.status_code == 400 and "Filters need a dashboard" in bare.text


def test_web_takes_a_value_of_the_filters_kind_on_every_endpoint(demo: Path) -> None:
    wanted = published(demo)[0]["completed"]
    with logged_in_client(load_project(demo)) as client:
        for endpoint in ENDPOINTS:
            response = client.get(endpoint.format(d="kinds"), params={"completed": wanted})
            assert response.status_code == 200, (endpoint, response.text[:300])
        rows = client.get("/api/dashboards/kinds/charts/2", params={"completed": wanted}).json()["rows"]
        expected: dict[str, int] = {}
        for row in published(demo):
            if row["completed"] == wanted:
                expected[row["region"]] = expected.get(row["region"], 0) + int(row["completed"])
        assert dict(map(tuple, rows)) == expected


@pytest.fixture(scope="module")
def demo_url(demo: Path) -> Iterator[str]:
    project = load_project(demo)
    account(project, "viewer", "viewer@example.org")
    with served(create_app(project)) as url:
        yield url


@pytest.mark.browser
def test_browser_shows_a_readable_error_for_a_bad_filter(browser: Any, demo_url: str) -> None:
    from conftest_web import PASSWORD

    context = browser.new_context()
    page = context.new_page()
    try:
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(demo_url) else route.abort())
        page.goto(f"{demo_url}/login")
        page.get_by_label("E-mail address").fill("viewer@example.org")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        for path in ("/dashboards/kinds?completed=abc", "/dashboards/kinds/tables/flake_rate_weekly.csv?completed=abc"):
            response = page.goto(demo_url + path)
            assert response is not None and response.status == 400, path
            alert = page.get_by_role("alert")
            assert "completed='abc' is not a value of the 'completed' filter" in alert.inner_text()
            assert "Error 400" in alert.inner_text() and "How to fix it" in alert.inner_text()
    finally:
        context.close()
