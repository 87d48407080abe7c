"""A broken chart, filter or dashboard file in the web app (issue #20): its own card for analysts and
admins, "unavailable" for viewers, the rest of the page working; and the server following edits of
the project's files, keeping the last good version while a file does not load."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_process import HEADWATER, cli_env
from conftest_web import PASSWORD, REGIONS, account, logged_in_client, make_project, publish_rows, served, synthetic_rows

from headwater.config import LoadedProject
from headwater.system.orgs import open_project
from headwater.web import create_app
from headwater.web.auth import LOGIN_CSRF_COOKIE

DASHBOARD = Path("dashboards") / "flake_rate.yml"
ADMIN, VIEWER = "admin@example.org", "viewer@example.org"


def edit(project: LoadedProject, old: str, new: str, path: Path = DASHBOARD) -> None:
    file = project.root / path
    text = file.read_text()
    assert old in text, f"{old!r} not in {path}"
    file.write_text(text.replace(old, new, 1))


def wait_until(condition: Callable[[], object], seconds: float = 15, what: str = "the condition") -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.1)


def broken_project(root: Path) -> LoadedProject:
    """The demo's dashboard over synthetic data, its second chart measuring a column the table lacks
    and its organizer filter on one it lacks."""
    project = make_project(root)
    edit(project, "      completed: sum(completed)\n      flaked", "      completed: sum(completd)\n      flaked")
    edit(project, "  - column: organizer\n", "  - column: organiser\n    name: organizer\n")
    project = open_project(project.root)  # as `headwater serve` loads it
    publish_rows(project, synthetic_rows(), "run-000001")
    account(project, "admin", ADMIN)
    account(project, "viewer", VIEWER)
    return project


# --- in Chromium --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    project = broken_project(tmp_path_factory.mktemp("dashcheck-web") / "project")
    with served(create_app(project)) as url:
        yield url


def logged_in_page(browser: Any, base_url: str, email: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base_url) else route.abort())
    page.goto(f"{base_url}/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/dashboards/flake_rate")
    return page


@pytest.mark.browser
def test_a_broken_chart_shows_its_reason_to_an_admin_and_the_rest_of_the_page_works(browser: Any, base_url: str, tmp_path: Path) -> None:
    page = logged_in_page(browser, base_url, ADMIN)
    try:
        page.wait_for_selector("#chart-0.js-plotly-plot .main-svg")  # the charts that work are drawn
        error = page.locator("#chart-1-error").inner_text()
        assert "This chart cannot be shown" in error and '"completd"' in error and "Completed vs flaked" in error
        assert "organiser" in page.locator("#filter-organizer-unavailable").inner_text()
        assert page.locator("#chart-2 tbody tr").count() > 0
        # the filters that work still filter: the table chart shows one region
        page.locator("#filter-region").select_option(REGIONS[0])
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_url(f"**/dashboards/flake_rate?region={REGIONS[0].replace(' ', '+')}")
        regions = {row[1] for row in page.eval_on_selector_all("#chart-2 tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))")}
        assert regions == {REGIONS[0]}
        # and the downloads of the charts that work
        with page.expect_download() as download:
            page.locator("section:has(#chart-2) a.download").first.click()
        rows = list(csv.reader(Path(download.value.path()).read_text().splitlines()))
        assert rows[0][:2] == ["week_start", "region"] and {r[1] for r in rows[1:]} == {REGIONS[0]}
        assert page.problems == []
    finally:
        page.context.close()


@pytest.mark.browser
def test_a_viewer_is_told_the_chart_is_unavailable_not_why(browser: Any, base_url: str) -> None:
    page = logged_in_page(browser, base_url, VIEWER)
    try:
        page.wait_for_selector("#chart-0.js-plotly-plot .main-svg")
        assert page.locator("#chart-1-unavailable").inner_text() == "This chart is unavailable right now."
        assert page.locator("#chart-1-error").count() == 0
        assert page.locator("#filter-organizer-unavailable").inner_text().strip().endswith("This filter is unavailable right now.")
        text = page.content()
        assert "completd" not in text and "Binder Error" not in text
        assert page.locator("#chart-2 tbody tr").count() > 0
        assert page.problems == []
    finally:
        page.context.close()


# --- the server follows the project's files -----------------------------------------------------


def test_a_running_server_picks_up_edits_and_keeps_the_last_good_version(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    project = make_project(tmp_path / "project")
    publish_rows(project, synthetic_rows(), "run-000001")
    caplog.set_level(logging.INFO, logger="headwater.web")
    with logged_in_client(project, "admin") as client:
        assert "Volunteer flake rate" in client.get("/dashboards/flake_rate").text
        # an edit that loads is served
        edit(project, "title: Volunteer flake rate", "title: Flakes, edited")
        wait_until(lambda: "Flakes, edited" in client.get("/dashboards/flake_rate").text, what="the edited title")
        # chart data cached for this snapshot is computed again from the chart as edited
        assert client.get("/api/dashboards/flake_rate/charts/1").json()["columns"] == ["week_start", "completed", "flaked"]
        edit(project, "      flaked: sum(total_flakes)", "      flakes: sum(total_flakes)")
        wait_until(lambda: client.get("/api/dashboards/flake_rate/charts/1").json()["columns"] == ["week_start", "completed", "flakes"], what="the edited measure")
        # a typo: the last good version is served, the reason logged once and shown to admins
        edit(project, "charts:\n", "chrts:\n")
        page = wait_until(lambda: (r := client.get("/dashboards/flake_rate")).status_code == 200 and "does not load" in r.text and r, what="the notice")
        assert "Flakes, edited" in page.text and "unknown key &#39;chrts&#39;" in page.text
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        looked = ctx._looked
        wait_until(lambda: client.get("/dashboards/flake_rate") and ctx._looked > looked, what="another look at the files")  # which finds no change
        reasons = [r for r in caplog.records if "does not load" in r.getMessage()]
        assert len(reasons) == 1 and "chrts" in reasons[0].getMessage()
        # a new dashboard file that never loaded is unavailable, with its reason for an admin
        (project.root / "dashboards" / "second.yml").write_text("title: Second\ntable: flake_rate_weekly\n")
        broken = wait_until(lambda: (r := client.get("/dashboards/second")).status_code == 503 and r, what="the broken new dashboard")
        assert "charts: Field required" in broken.text
        # fixed: served as written, and the headwater.yml of the project is followed too
        edit(project, "chrts:\n", "charts:\n")
        (project.root / "dashboards" / "second.yml").write_text((project.root / DASHBOARD).read_text().replace("Flakes, edited", "Second board"))
        wait_until(lambda: "Second board" in client.get("/dashboards/second").text, what="the fixed second dashboard")
        assert "does not load" not in client.get("/dashboards/flake_rate").text
        edit(project, "name: ", "name: renamed_", Path("headwater.yml"))
        wait_until(lambda: any("reloaded" in r.getMessage() and "headwater.yml" in r.getMessage() for r in caplog.records[-3:]), what="the reload")
        # headwater.yml broken: everything keeps its last good version
        (project.root / "headwater.yml").write_text((project.root / "headwater.yml").read_text() + "pipelnes: {}\n")
        wait_until(lambda: "pipelnes" in client.get("/dashboards/flake_rate").text, what="the notice of headwater.yml")
        assert "Flakes, edited" in client.get("/dashboards/flake_rate").text


def test_a_viewer_gets_unavailable_for_a_dashboard_whose_file_never_loaded(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    publish_rows(project, synthetic_rows(), "run-000001")
    (project.root / "dashboards" / "second.yml").write_text("title: Second\ntable: flake_rate_weekly\ncharts: [}\n")
    project = open_project(project.root)  # as `headwater serve` loads it: the broken file is listed, not fatal
    assert list(project.broken_dashboards) == ["second"]
    with logged_in_client(project, "viewer") as client:
        response = client.get("/dashboards/second")
        assert response.status_code == 503
        assert "Dashboard &#39;second&#39; is unavailable" in response.text and "Try again later." in response.text
        assert "second.yml" not in response.text and "not valid" not in response.text  # the reason is for analysts and admins
        assert "Volunteer flake rate" in client.get("/dashboards/flake_rate").text  # the other dashboard is served


def test_headwater_serve_follows_a_dashboard_edit(tmp_path: Path) -> None:
    """The same through a real `headwater serve` process."""
    import socket
    import subprocess

    project = make_project(tmp_path / "project")
    publish_rows(project, synthetic_rows(), "run-000001")
    account(project, "admin", ADMIN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*HEADWATER, "serve", "-p", str(project.root), "--port", str(port), "--no-scheduler"], env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as http:
            wait_until(lambda: _up(http), seconds=60, what="the server")
            http.get("/login")
            assert http.post("/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": http.cookies.get(LOGIN_CSRF_COOKIE) or ""}).status_code == 303
            assert "Volunteer flake rate" in http.get("/dashboards/flake_rate").text
            edit(project, "title: Volunteer flake rate", "title: Edited under a running server")
            wait_until(lambda: "Edited under a running server" in http.get("/dashboards/flake_rate").text, what="the edit")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/login").status_code == 200
    except httpx.TransportError:
        return False
