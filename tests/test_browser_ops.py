"""The operations pages in headless Chromium against a real uvicorn server and a real demo project:
"Run now", the run's live log to the end, and every page at a phone's width."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest_web import PASSWORD, account, served
from demo_project import make_project

from headwater.web import create_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ANALYST, ADMIN = "analyst@example.org", "admin@example.org"
PHONE = {"width": 390, "height": 844}


@dataclass
class Server:
    url: str
    app: Any


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The demo project (~500 sign-ups, nothing run yet) served by uvicorn; no scheduler, so "Run now"
    uses the app's own launcher."""
    project = make_project(tmp_path_factory.mktemp("browser-ops") / "demo", 500)
    account(project, "analyst", ANALYST)
    account(project, "admin", ADMIN)
    app = create_app(project)
    with served(app, shutdown_timeout=60) as url:
        yield Server(url, app)


def new_page(browser: Any, server: Server, email: str, viewport: dict[str, int] | None = None, start: str = "/pipelines") -> Any:
    """A logged-in page that refuses every request leaving the test server and records page errors
    (CSP violations included: Chromium reports them on the console)."""
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url) else route.abort())
    page.goto(f"{server.url}/login?next={start}")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}{start}")
    return page


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_until(page: Any, expression: str, timeout: float = 30) -> None:
    """Poll ``expression`` in the page until it is true. (Playwright's wait_for_function evaluates a
    string inside the page, which the app's CSP refuses, rightly.) A reload meanwhile is fine."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if page.evaluate(expression):
                return
        except Exception as exc:
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
        assert time.monotonic() < deadline, f"timed out waiting for: {expression}"
        page.wait_for_timeout(200)


def log_line_count(page: Any) -> int:
    return page.evaluate("document.getElementById('run-log').textContent.split('\\n').filter(Boolean).length")


def test_analyst_runs_a_pipeline_and_watches_its_live_log(browser: Any, server: Server) -> None:
    page = new_page(browser, server, ANALYST)
    try:
        card = page.locator("#pipeline-flake_rate")
        assert "never run" in card.inner_text()
        assert "every day at 07:00" in card.inner_text()
        screenshot(page, "ops-pipelines-before")

        card.get_by_role("button", name="Run now").click()
        page.wait_for_url(f"{server.url}/pipelines?started=flake_rate#pipeline-flake_rate")
        assert "A run of flake_rate was queued." in page.locator("#flash").inner_text()
        # ops.js polls the pipelines' state: the new run's row appears without a reload
        page.evaluate("window.__notReloaded = true")
        last = card.locator("[data-role=last] a")
        last.wait_for(timeout=30_000)
        assert last.inner_text() == "Run 1"
        assert page.locator("#runs-flake_rate tbody tr").first.locator("td").nth(2).inner_text() == "web"
        assert page.evaluate("window.__notReloaded === true")
        screenshot(page, "ops-pipelines-run-started")

        # A second click while it runs starts nothing
        card.get_by_role("button", name="Run now").click()
        page.wait_for_url(f"{server.url}/pipelines?busy=flake_rate#pipeline-flake_rate")
        assert "already running" in page.locator("#flash").inner_text()
        card.locator("[data-role=last] a").click()

        page.wait_for_url(f"{server.url}/runs/1")
        status = page.locator("#run-status")
        assert status.inner_text() == "running", "the run ended before its page opened: the live log was not exercised"
        assert page.locator("#run-log[data-live]").count() == 1
        page.evaluate("window.__notReloaded = true")
        opened_with = log_line_count(page)
        wait_until(page, f"document.getElementById('run-log').textContent.split('\\n').filter(Boolean).length > {opened_with} && window.__notReloaded === true")
        screenshot(page, "ops-run-live")
        assert "dbt" in page.locator("#run-log").inner_text() or "source campaign" in page.locator("#run-log").inner_text()

        # At the end the page reloads itself with the final steps and checks
        wait_until(page, "document.getElementById('run-status').textContent.trim() === 'success' && !window.__notReloaded", timeout=120)
        page.wait_for_load_state("load")
        assert page.locator("#run-log[data-live]").count() == 0
        steps = page.eval_on_selector_all("#steps tbody tr", "rows => rows.map(r => [r.cells[0].textContent.trim(), r.cells[1].textContent.trim()])")
        assert steps == [["sync:campaign", "success"], ["sync:roster", "success"], ["dbt:build", "success"], ["checks", "success"], ["dashboards", "success"], ["publish", "success"]]
        assert "published flake_rate_weekly" in page.locator("#run-log").inner_text()
        assert page.locator("#checks").is_visible()
        screenshot(page, "ops-run-finished")
        assert page.problems == []
    finally:
        page.context.close()
    assert server.app.state.launcher.wait_idle(60)


def test_admin_adds_a_user_in_the_browser(browser: Any, server: Server) -> None:
    page = new_page(browser, server, ADMIN, start="/admin/users")
    try:
        page.get_by_label("E-mail address").fill("nia@example.org")
        page.get_by_label("Role", exact=True).select_option("analyst")
        page.get_by_label("Initial password").fill("a long enough password")
        page.get_by_role("button", name="Add", exact=True).click()
        page.wait_for_url(f"{server.url}/admin/users?done=added&email=nia%40example.org")
        assert page.locator("#flash").inner_text() == "Added nia@example.org."
        row = page.locator("#users tr", has_text="nia@example.org")
        assert row.locator("td").nth(1).inner_text() == "analyst"
        row.get_by_role("button", name="Disable").click()
        page.wait_for_url("**/admin/users?done=disabled*")
        assert page.locator("#users tr", has_text="nia@example.org").locator("td").nth(2).inner_text() == "disabled"
        screenshot(page, "ops-users")
        assert page.problems == []
    finally:
        page.context.close()


def _ensure_a_run(server: Server) -> None:
    launcher = server.app.state.launcher
    from headwater.services.runs import recent_runs
    from headwater.system import open_system_db

    db = open_system_db(launcher.project)
    try:
        ran = bool(recent_runs(db, launcher.project.config.name, 1))
    finally:
        db.close()
    if not ran:  # this test alone: make the pages show a run
        launcher.start("flake_rate")
    assert launcher.wait_idle(120)


@pytest.mark.parametrize(("who", "path", "name"), [
    (ANALYST, "/pipelines", "pipelines"),
    (ANALYST, "/sources", "sources"),
    (ANALYST, "/sources/campaign", "source"),
    (ANALYST, "/runs/1", "run"),
    (ANALYST, "/runs", "runs"),
    (ADMIN, "/admin/users", "users"),
])  # fmt: skip
def test_operations_pages_fit_a_phone(browser: Any, server: Server, who: str, path: str, name: str) -> None:
    _ensure_a_run(server)
    page = new_page(browser, server, who, viewport=PHONE, start=path)
    try:
        screenshot(page, f"ops-{name}-phone")
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth"), f"{path} scrolls sideways at 390 px"
        rights = page.evaluate("[...document.querySelectorAll('.card, h1, .flash, .note')].map(e => e.getBoundingClientRect().right)")
        assert max(rights) <= PHONE["width"]
        assert page.problems == []
    finally:
        page.context.close()
