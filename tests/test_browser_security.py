"""Script injection, checked where it would happen: in headless Chromium, against a real uvicorn
server for an install with two organisations whose data, filter values, dashboard names, people's
attributes and audit entries hold script payloads. Every payload sets ``window.__xss`` if it ever
runs; it must stay undefined, no dialog may open, and the page may log no error (a payload that got
into the markup as markup would be blocked by the CSP, and Chromium would say so)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest_web import PASSWORD, make_install, member, served

from headwater.web import create_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PAYLOADS = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=2">',
    "'><svg onload=window.__xss=3>",
    "</script><script>window.__xss=4</script>",
    "javascript:window.__xss=5",
    "<img src=x onerror=alert(6)>",
    "{{constructor.constructor('window.__xss=7')()}}",
]
ORGS = {"acme": (["North", *PAYLOADS[:4]], ["Ana", *PAYLOADS[4:]]), "beta": (["Bravo-Hills"], ["Zed"])}
ADMIN = "admin-acme@example.org"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    install = make_install(tmp_path_factory.mktemp("xss") / "install", ORGS)
    member(install, ADMIN, "acme", "admin")
    member(install, ADMIN, "beta", "viewer")
    with served(create_app(install)) as url:
        yield url


@pytest.fixture(scope="module")
def page(browser: Any, base_url: str) -> Iterator[Any]:
    """One signed-in page for the module; it records dialogs, page errors and console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []
    page.dialogs = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base_url) else route.abort())
    page.goto(f"{base_url}/login")
    page.get_by_label("E-mail address").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")
    yield page
    context.close()


def assert_nothing_ran(page: Any, what: str) -> None:
    page.wait_for_timeout(300)  # onerror/onload handlers fire after the load
    assert page.evaluate("typeof window.__xss") == "undefined", what
    assert page.dialogs == [], what
    assert page.problems == [], (what, page.problems)


def test_payloads_in_the_data_never_run_on_the_dashboard(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/o/acme/dashboards/flake_rate")
    page.wait_for_selector("#chart-0.js-plotly-plot .main-svg")
    assert_nothing_ran(page, "dashboard")
    options = page.eval_on_selector_all("#filter-region option", "os => os.map(o => o.textContent)")
    assert set(PAYLOADS[:4]) <= set(options)  # shown, as text
    legend = page.eval_on_selector_all("#chart-0 .legendtext", "ts => ts.map(t => t.textContent)")
    assert set(PAYLOADS[:4]) <= set(legend)  # Plotly draws them as text too
    cells = page.eval_on_selector_all("#chart-2 tbody td", "cs => cs.map(c => c.textContent)")
    assert set(PAYLOADS[:4]) <= set(cells)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "security-dashboard.png"), full_page=True)


def test_payloads_as_selected_filters_never_run(page: Any, base_url: str) -> None:
    for payload in PAYLOADS:
        query = f"?region={quote(payload, safe='')}&organizer={quote(payload, safe='')}"
        page.goto(f"{base_url}/o/acme/dashboards/flake_rate{query}")
        page.wait_for_load_state("load")
        assert_nothing_ran(page, f"filter {payload}")
        assert payload in page.eval_on_selector_all("#filter-region option:checked", "os => os.map(o => o.value)")


def test_payloads_in_names_in_the_address_never_run(page: Any, base_url: str) -> None:
    for payload in PAYLOADS:
        name = quote(payload, safe="")
        for path in (f"/o/acme/dashboards/{name}", f"/o/acme/tables/{name}.csv", f"/o/{name}/", f"/invite/{name}"):
            response = page.goto(f"{base_url}{path}")
            assert response.status == 404, path
            page.problems.clear()  # the 404 itself is logged by Chromium; what counts is that nothing ran
            assert_nothing_ran(page, path)


def test_payloads_typed_by_people_never_run_on_the_users_and_audit_pages(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/o/acme/admin/users")
    page.locator("#new-email").fill("zed@example.org")
    page.locator("#new-attributes").fill(", ".join(f"region={p}" for p in PAYLOADS[:3]))
    page.locator("#new-password").fill("a long enough password")
    page.get_by_role("button", name="Add", exact=True).click()
    page.wait_for_url("**/admin/users?done=added*")
    assert_nothing_ran(page, "users page")
    assert PAYLOADS[0] in page.locator("#users").inner_text()
    with page.expect_download():  # an export whose filters (in the audit entry) hold a payload
        page.evaluate("url => { const a = document.createElement('a'); a.href = url; a.download = ''; document.body.appendChild(a); a.click(); }", f"/o/acme/dashboards/flake_rate/charts/2.csv?region={quote(PAYLOADS[1], safe='')}")
    page.goto(f"{base_url}/o/acme/admin/audit")
    assert_nothing_ran(page, "audit page")
    assert "window.__xss" in page.locator("#audit").inner_text()
    page.screenshot(path=str(ARTIFACTS / "security-audit.png"), full_page=True)


def test_the_organisation_switcher_leads_only_to_ones_own_organisations(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/o/acme/dashboards/flake_rate")
    page.locator("#org-switch summary").click()
    links = page.eval_on_selector_all("#org-switch a", "as => as.map(a => a.getAttribute('href'))")
    assert links == ["/o/acme/", "/o/beta/"]
    page.locator("#org-switch a", has_text="Beta").click()
    page.wait_for_url(f"{base_url}/o/beta/dashboards/flake_rate")
    assert "Bravo-Hills" in page.content() and "North" not in page.eval_on_selector_all("#filter-region option", "os => os.map(o => o.textContent)")
    assert_nothing_ran(page, "beta")
