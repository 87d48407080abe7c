"""Security corpora against the web app, in an install with two organisations (and the one-project
app where it differs): injection strings in filter values, dashboard parameters, export and table
names and in the data itself; path traversal in every kind of name; cookies; the login rate limit.

What must hold for every string: no 500 (no SQL error reaches anyone), nothing from the string is
executed (pages escape it, JSON carries it as data, CSV quotes it), and nothing outside the
organisation's published data is ever answered. The browser half is test_browser_security.py."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest_web import FAST_HASHER, PASSWORD, form_log_in, make_install, member
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater.system.accounts import Policy
from headwater.system.orgs import Install
from headwater.web import create_app
from headwater.web.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, AuthSettings

# Strings that have broken web apps before: SQL, HTML and script injection, template syntax, our
# own parameter syntax, Unicode (right-to-left override, combining marks, astral plane), control
# characters, NUL, CRLF (header splitting), path traversal, formula injection, and length.
NASTY = [
    "'",
    '"',
    "';--",
    "North'; DROP TABLE flake_rate_weekly; --",
    "' OR '1'='1",
    '" OR ""="',
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=2">',
    "'><svg onload=window.__xss=3>",
    "javascript:window.__xss=4",
    "</script><script>window.__xss=5</script>",
    "<!--",
    "{{7*7}}",
    "${7*7}",
    "$region",
    ":region",
    "%s%n",
    "Ünïcödé ✓ 北京 \u202eevil\u202c 🦆 e\u0301",
    "a\x00b",
    "tab\there",
    "line\r\nSet-Cookie: hw=1",
    "../../etc/passwd",
    "..\\..\\windows",
    "=HYPERLINK(\"http://evil.example\")",
    "x" * 2000,
]
SCRIPTY = [s for s in NASTY if "<" in s]  # markup: must never reach a page as it is
ORG_DATA = {"acme": (["North", *NASTY[:12]], ["Ana", *NASTY[12:]]), "beta": (["Bravo-Hills"], ["Zed"])}
# Literal ../ is resolved by the HTTP client before it is sent (RFC 3986), so the corpus sends the
# forms that reach the server as they are: encoded, double-encoded, overlong UTF-8, backslashes.
TRAVERSAL = [
    "%2e%2e",
    "..%2fheadwater.yml",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "..%2f..%2fheadwater.yml",
    "%2e%2e%2f%2e%2e%2fheadwater.yml",
    "..%252f..%252fheadwater.yml",
    "....//....//headwater.yml",
    "..\\..\\headwater.yml",
    "%2fetc%2fpasswd",
    "flake_rate%00",
    "flake_rate%2f..%2f..",
    "%c0%ae%c0%ae%2f",
    "FLAKE_RATE",
]
LEAKS = ("root:x:0", "name: acme", "sqlite:///", "Bravo-Hills", "[extensions]")


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    install = make_install(tmp_path_factory.mktemp("security") / "install", ORG_DATA)
    member(install, "ana@example.org", "acme", "admin")
    member(install, "bob@example.org", "beta", "admin")
    return install


@pytest.fixture(scope="module")
def ana(install: Install) -> Any:
    with TestClient(create_app(install, AuthSettings(hasher=FAST_HASHER))) as client:
        form_log_in(client, "ana@example.org")
        yield client


def csrf(client: TestClient, path: str = "/o/acme/admin/users") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)  # type: ignore[union-attr]


def assert_escaped(html: str) -> None:
    """No injected markup survives into the page as markup."""
    for payload in SCRIPTY:
        assert payload not in html, f"unescaped in the page: {payload!r}"
    for tag in re.findall(r"<(?:img|svg|script)\b[^>]*>", html):
        assert "onerror" not in tag and "onload" not in tag and "__xss" not in tag, tag


def assert_safe(response: Any) -> None:
    """An HTML page escapes what it shows; JSON (errors too) carries it as data, and says it is JSON."""
    if response.headers["content-type"].startswith("application/json"):
        assert response.headers["x-content-type-options"] == "nosniff"
        response.json()
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert_escaped(response.text)


# --- values from the data ------------------------------------------------------------------------


def test_data_values_are_shown_escaped_and_exported_exactly(ana: TestClient) -> None:
    page = ana.get("/o/acme/dashboards/flake_rate")
    assert page.status_code == 200
    assert_escaped(page.text)
    options = re.findall(r'<option value="([^"]*)"', page.text)
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in options  # the value is there, as text
    figure = re.search(r'<script type="application/json" id="chart-0-figure">(.*?)</script>', page.text, re.S).group(1)  # type: ignore[union-attr]
    assert "</script" not in figure.lower() and "<!--" not in figure and "\\u003c" in figure  # tojson escapes <, > and &
    chart = ana.get("/o/acme/api/dashboards/flake_rate/charts/2").json()
    assert set(NASTY[:12]) <= {row[1] for row in chart["rows"]}  # JSON carries every value exactly
    download = ana.get("/o/acme/tables/flake_rate_weekly.csv")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    exported = {row["organizer"] for row in csv.DictReader(io.StringIO(download.text))}
    formulas = {v for v in NASTY[12:] if v.startswith(("=", "+", "-", "@", "\t", "\r"))}
    assert formulas and exported == {"Ana", *(set(NASTY[12:]) - formulas), *("'" + v for v in formulas)}  # a spreadsheet never runs them
    raw = ana.get("/o/acme/tables/flake_rate_weekly.csv", params={"hw_raw": "1"})
    exact = {row["organizer"] for row in csv.DictReader(io.StringIO(raw.text))}
    assert exact == {"Ana", *NASTY[12:]}  # raw: quoted, not mangled: CRLF, NUL, quotes and all
    xlsx = ana.get("/o/acme/tables/flake_rate_weekly.xlsx")
    sheet = zipfile.ZipFile(io.BytesIO(xlsx.content)).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet  # a value like =HYPERLINK(...) is a string in XLSX, never a formula


@pytest.mark.parametrize("value", NASTY)
def test_filter_values_are_only_ever_bound(ana: TestClient, value: str) -> None:
    """Each string as a selected region and organizer, and as a date: a page, chart data and
    downloads that hold only the rows with that exact value (or a clear 400), never a 500."""
    query = f"?region={quote(value, safe='')}&organizer={quote(value, safe='')}"
    page = ana.get(f"/o/acme/dashboards/flake_rate{query}")
    assert page.status_code == 200, page.text[:500]
    assert_escaped(page.text)
    for path in ("/o/acme/api/dashboards/flake_rate/charts/2", "/o/acme/dashboards/flake_rate/charts/2.csv", "/o/acme/dashboards/flake_rate/tables/flake_rate_weekly.csv"):
        assert ana.get(path + query).status_code == 200, path
    rows = ana.get(f"/o/acme/api/dashboards/flake_rate/charts/2?region={quote(value, safe='')}").json()["rows"]
    assert {row[1] for row in rows} <= {value}  # the exact value, never an injected condition
    dated = ana.get(f"/o/acme/api/dashboards/flake_rate/charts/2?weeks_from={quote(value, safe='')}")
    assert dated.status_code == 400 and "is not a date" in dated.json()["error"]["message"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.text(max_size=30), min_size=1, max_size=3), key=st.sampled_from(["region", "organizer", "weeks_from", "week", "nope", "hw_scope_region"]))
def test_any_selection_is_answered_without_a_server_error(ana: TestClient, values: list[str], key: str) -> None:
    query = "&".join(f"{quote(key)}={quote(v, safe='')}" for v in values)
    response = ana.get(f"/o/acme/api/dashboards/flake_rate/charts/0?{query}")
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["message"]


@pytest.mark.parametrize("value", NASTY)
def test_names_in_urls_are_looked_up_never_used(ana: TestClient, value: str) -> None:
    """Dashboard, chart, table, source and pipeline names and chart numbers from the URL are only
    ever compared with the project's own names."""
    name = quote(value, safe="")
    paths = [
        f"/o/acme/dashboards/{name}",
        f"/o/acme/api/dashboards/{name}/charts/0",
        f"/o/acme/api/dashboards/flake_rate/charts/{name}",
        f"/o/acme/dashboards/{name}/charts/0.csv",
        f"/o/acme/dashboards/flake_rate/tables/{name}.csv",
        f"/o/acme/tables/{name}.csv",
        f"/o/acme/tables/{name}.xlsx",
        f"/o/acme/sources/{name}",
        f"/o/acme/runs/{name}",
        f"/o/{name}/dashboards/flake_rate",
        f"/invite/{name}",
    ]
    for path in paths:
        response = ana.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert_safe(response)
        assert not [leak for leak in LEAKS if leak in response.text], path
    run = ana.post(f"/o/acme/pipelines/{name}/run", headers={"X-CSRF-Token": csrf(ana)})
    assert run.status_code == 404  # no such pipeline (or, with a '/', no such address)
    assert_safe(run)


@pytest.mark.parametrize("name", TRAVERSAL)
def test_path_traversal_in_names_is_refused(ana: TestClient, name: str) -> None:
    paths = [
        f"/o/acme/dashboards/{name}",
        f"/o/acme/dashboards/{name}/charts/0.csv",
        f"/o/acme/dashboards/flake_rate/tables/{name}.csv",
        f"/o/acme/tables/{name}.csv",
        f"/o/acme/tables/{name}.xlsx",
        f"/o/acme/sources/{name}",
        f"/o/{name}/dashboards/flake_rate",
        f"/o/{name}/tables/flake_rate_weekly.csv",
        f"/o/acme/{name}/tables/flake_rate_weekly.csv",
        f"/static/{name}",
        f"/invite/{name}",
    ]
    for path in paths:
        response = ana.get(path)  # a redirect (a trailing slash dropped) is followed: where it ends counts
        assert response.status_code in (404, 400), (path, response.status_code, response.text[:200])
        assert str(response.url).startswith("http://testserver/"), response.url
        assert not [leak for leak in LEAKS if leak in response.text], path


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8443", "testserver@evil.example"])
def test_the_trailing_slash_redirect_never_names_the_host_header(ana: TestClient, host: str) -> None:
    """Starlette built the redirect from the Host header: a forged one (a cache or proxy in between)
    sent people elsewhere. It is a path now, on whatever site the browser is on."""
    for path, target in [
        ("/o/acme/dashboards/flake_rate/", "/o/acme/dashboards/flake_rate"),
        ("/o/acme/dashboards/flake_rate/?region=North&region=%3Cx%3E", "/o/acme/dashboards/flake_rate?region=North&region=%3Cx%3E"),
        ("/login/", "/login"),
        ("/o/acme", "/o/acme/"),
    ]:
        response = ana.get(path, headers={"Host": host}, follow_redirects=False)
        assert response.status_code == 307 and response.headers["location"] == target, (path, response.headers.get("location"))
    for path in ("/%2f%2fevil.example/", "/%2F%2Fevil.example", "/o/acme/nope/"):  # no protocol-relative redirect, no redirect to nothing
        response = ana.get(path, headers={"Host": host}, follow_redirects=False)
        assert response.status_code == 404 and "evil" not in response.headers.get("location", ""), path


def test_an_organisation_name_in_another_case_or_with_a_slash_is_not_that_organisation(ana: TestClient) -> None:
    for slug in ("ACME", "acme%2f", "acme/", "%61cme", "acme%00", "acme.", " acme"):
        response = ana.get(f"/o/{slug}/dashboards/flake_rate", follow_redirects=False)
        if response.status_code == 200:  # only a spelling that IS acme once decoded may work (%61 is 'a')
            assert slug == "%61cme"
        else:
            assert response.status_code in (404, 307, 308), (slug, response.status_code)


def test_users_and_audit_pages_escape_what_people_typed(install: Install, ana: TestClient) -> None:
    token = csrf(ana)
    attrs = ", ".join(f"region={v}" for v in ("<script>window.__xss=1</script>", '"><img src=x onerror="window.__xss=2">'))
    added = ana.post("/o/acme/admin/users", data={"email": "zed@example.org", "role": "viewer", "password": PASSWORD, "attributes": attrs, "csrf_token": token})
    assert added.status_code == 200 and "zed@example.org" in added.text
    assert_escaped(added.text)
    ana.get(f"/o/acme/dashboards/flake_rate/charts/2.csv?region={quote(SCRIPTY[0], safe='')}")  # an export whose detail holds the value
    refused = ana.post("/o/acme/admin/users", data={"email": SCRIPTY[1], "role": SCRIPTY[0], "password": "x", "csrf_token": token})
    assert refused.status_code == 400
    assert_escaped(refused.text)
    audit_page = ana.get("/o/acme/admin/audit")
    assert audit_page.status_code == 200 and "window.__xss" in audit_page.text  # shown, as text
    assert_escaped(audit_page.text)


# --- cookies and the login rate limit, in an install with many organisations ------------------------


def test_session_cookies_are_httponly_samesite_and_secure_behind_tls(install: Install) -> None:
    for base, headers, trust, secure in (
        ("http://testserver", {}, False, False),
        ("https://testserver", {}, False, True),
        ("http://testserver", {"X-Forwarded-Proto": "https"}, True, True),
        ("http://testserver", {"X-Forwarded-Proto": "https"}, False, False),  # a header anyone can send counts only behind a trusted proxy
    ):
        app = create_app(install, AuthSettings(hasher=FAST_HASHER, trust_proxy_headers=trust))
        with TestClient(app, base_url=base, headers=headers) as client:
            form = client.get("/login")
            token = re.search(rf"{LOGIN_CSRF_COOKIE}=([^;]+)", form.headers["set-cookie"]).group(1)  # type: ignore[union-attr]
            # Sent by hand: behind the proxy the browser speaks https, the test client plain http.
            response = client.post("/login", data={"email": "ana@example.org", "password": PASSWORD, "csrf_token": token}, headers={"Cookie": f"{LOGIN_CSRF_COOKIE}={token}"}, follow_redirects=False)
            assert response.status_code == 303
            cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "="))
            attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
            assert {"httponly", "samesite=lax", "path=/"} <= attributes
            assert ("secure" in attributes) is secure, (base, headers, trust)


def test_failed_logins_are_limited_across_app_instances(tmp_path: Path) -> None:
    """The limit lives in the install's system database: two processes serving it count together."""
    install = make_install(tmp_path / "inst", {"acme": (["North"], ["Ana"])})
    member(install, "ana@example.org", "acme", "viewer")
    settings = AuthSettings(hasher=FAST_HASHER, policy=Policy(max_failures=4))
    first, second = create_app(install, settings), create_app(install, settings)
    for n in range(4):
        with TestClient(first if n % 2 else second) as client:
            client.get("/login")
            wrong = client.post("/login", data={"email": "ana@example.org", "password": "not it at all", "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE)})
            assert wrong.status_code == 401
    with TestClient(first) as client:
        client.get("/login")
        limited = client.post("/login", data={"email": "ana@example.org", "password": PASSWORD, "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE)})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0 and "Too many failed logins" in limited.text
        assert SESSION_COOKIE not in client.cookies
    db = install.open_db()
    try:
        from headwater.system import audit

        assert [e.detail["reason"] for e in audit.query(db, "acme")][:1] == ["rate limited"]
    finally:
        db.close()


def test_every_response_carries_the_security_headers(ana: TestClient) -> None:
    for path in ("/o/acme/dashboards/flake_rate", "/o/acme/api/dashboards/flake_rate/charts/0", "/login", "/o/beta/"):
        headers = ana.get(path).headers
        assert "script-src" not in headers["content-security-policy"] and "default-src 'self'" in headers["content-security-policy"]  # no inline script anywhere
        assert headers["x-content-type-options"] == "nosniff" and "frame-ancestors 'none'" in headers["content-security-policy"]
