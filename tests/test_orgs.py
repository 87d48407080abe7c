"""Many organisations on one install: organisation names, the install folder, `headwater org`,
`user add --org`, invitations, and isolation in the web app — each organisation's pages, data,
runs, people, cache and audit log are its own."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_process import HEADWATER, cli_env, run_cli
from conftest_web import FAST_HASHER, ORG_DATA, PASSWORD, form_log_in, install_fixture, make_install, member  # noqa: F401
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from loopback import free_port

from headwater.config import load_project
from headwater.errors import ConfigError, ExitCode
from headwater.system import audit
from headwater.system.accounts import Accounts, InvitationInvalid, LoginFailed, Role
from headwater.system.models import Run
from headwater.system.orgs import SLUG, Install, Organisations, OrgError, check_slug, parse_attributes, project_name
from headwater.web import create_app
from headwater.web.auth import LOGIN_CSRF_COOKIE, AuthSettings

START = dt.datetime(2024, 5, 6, 9, 0, tzinfo=dt.UTC)


def hw(*args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, stdin=stdin, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "250", **(env or {})})


def app_of(install: Install) -> Any:
    return create_app(install, AuthSettings(hasher=FAST_HASHER))


def signed_in(app: Any, email: str) -> TestClient:
    client = TestClient(app)
    form_log_in(client, email)
    return client


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["acme", "acme-ngo", "a", "ngo-2024", "x" * 63])
def test_good_organisation_names(name: str) -> None:
    assert check_slug(name) == name
    assert re.fullmatch(r"[a-z][a-z0-9_]*", project_name(name))


@pytest.mark.parametrize("name", ["", "Acme", "acme_ngo", "-acme", "acme-", "1acme", "../etc", "..", "a/b", "a%2fb", "a b", "é", "a\x00b", "x" * 64, "o/../../", "ac\nme"])
def test_bad_organisation_names_are_refused_with_what_to_do(name: str) -> None:
    with pytest.raises(OrgError, match="cannot name an organisation") as refused:
        check_slug(name)
    assert "lower-case letters, digits and single hyphens" in (refused.value.fix or "")


@given(st.text(max_size=70))
def test_a_name_is_accepted_only_if_it_is_safe_in_paths_and_urls(name: str) -> None:
    try:
        slug = check_slug(name)
    except OrgError:
        return
    assert SLUG.fullmatch(slug) and "/" not in slug and "." not in slug and "%" not in slug and slug == slug.lower()


def test_attributes_are_parsed_and_checked() -> None:
    assert parse_attributes(["region=North", "region=South", "team=a=b", "region=North"]) == {"region": ["North", "South"], "team": ["a=b"]}
    for bad in ("region", "=North", "1x=y", "region=", "region=a\nb", f"region={'x' * 201}"):
        with pytest.raises(OrgError):
            parse_attributes([bad])


# --- the install and its projects ---------------------------------------------------------------


def test_an_organisations_project_must_be_named_after_it_and_record_runs_here(install: Install, tmp_path: Path) -> None:
    db = install.open_db()
    try:
        acme = Organisations(db).get("acme")
    finally:
        db.close()
    project = install.load_project(acme)
    assert project.config.name == "acme" and project.root == install.root / "orgs" / "acme"
    original = project.file.read_text()
    project.file.write_text(original.replace("name: acme", "name: beta"))
    with pytest.raises(ConfigError, match="named 'beta', not 'acme'") as renamed:
        install.load_project(acme)
    assert "two organisations must never share one" in (renamed.value.why or "")
    project.file.write_text(re.sub(r'url: ".*"', f'url: "sqlite:///{tmp_path / "elsewhere.db"}"', original))
    with pytest.raises(ConfigError, match="records its runs in another system database") as elsewhere:
        install.load_project(acme)
    assert install.project_system_url() in (elsewhere.value.fix or "")


def test_org_create_list_and_user_add_from_the_command_line(tmp_path: Path) -> None:
    root = tmp_path / "inst"
    created = hw("org", "create", "acme-ngo", "--install", str(root), "--title", "Acme NGO", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert f"Created organisation acme-ngo with a new project in {root.resolve() / 'orgs' / 'acme-ngo'}" in created.stdout
    project = load_project(root / "orgs" / "acme-ngo")
    assert project.config.name == "acme_ngo"
    Install.load(root).check_project("acme-ngo", project)  # its runs go to the install's database
    assert hw("org", "create", "acme-ngo", "--install", str(root), cwd=tmp_path).returncode == ExitCode.USER_ERROR
    bad = hw("org", "create", "../evil", "--install", str(root), cwd=tmp_path)
    assert bad.returncode == ExitCode.USER_ERROR and "cannot name an organisation" in bad.stderr and not (tmp_path / "evil").exists()
    assert hw("org", "create", "second", cwd=root).returncode == 0  # the install is found from the current folder

    listed = json.loads(hw("org", "list", "--json", cwd=root).stdout)
    assert [(o["name"], o["title"], o["members"]) for o in listed] == [("acme-ngo", "Acme NGO", 0), ("default", "Default", 0), ("second", "second", 0)]

    added = hw("user", "add", "ana@example.org", "--org", "acme-ngo", "--role", "admin", "--password-stdin", cwd=root, stdin=PASSWORD + "\n")
    assert added.returncode == 0 and "Added ana@example.org as admin in acme-ngo" in added.stdout, added.stderr
    joined = hw("user", "add", "ANA@example.org", "--org", "second", "--role", "viewer", "--attr", "region=North", cwd=root)  # no password asked: she has one
    assert joined.returncode == 0 and "sees only rows with region = North" in joined.stdout and "with the password they already have" in joined.stdout, joined.stderr
    no_org = hw("user", "add", "bob@example.org", "--role", "viewer", "--password-stdin", cwd=root, stdin=PASSWORD + "\n")
    assert no_org.returncode == ExitCode.USER_ERROR and "Which organisation?" in no_org.stderr
    inside = json.loads(hw("user", "list", "--json", cwd=root / "orgs" / "second").stdout)  # in an organisation's project: that organisation
    assert inside == [{"email": "ana@example.org", "role": "viewer", "attributes": {"region": ["North"]}, "disabled": False, "created_at": inside[0]["created_at"], "last_login_at": None}]
    role = hw("user", "set-role", "ana@example.org", "analyst", "--org", "second", "--attr", "region=South", cwd=root)
    assert role.returncode == 0 and "is now analyst in second" in role.stdout

    db = Install.load(root).open_db()
    try:
        accounts = Accounts(db)
        assert accounts.get("ana@example.org", org="acme-ngo").role is Role.admin
        assert accounts.get("ana@example.org", org="second").attributes == {"region": ("South",)}
        assert [(e.actor.startswith("cli:"), e.action) for e in reversed(audit.query(db, "second"))] == [(True, "org_created"), (True, "user_added"), (True, "role_changed")]
    finally:
        db.close()


def test_an_existing_project_joins_only_if_it_belongs_to_the_install(tmp_path: Path) -> None:
    root = tmp_path / "inst"
    assert hw("org", "create", "first", "--install", str(root), cwd=tmp_path).returncode == 0
    outside = tmp_path / "outside"
    assert hw("init", str(outside), "--name", "outside", cwd=tmp_path).returncode == 0
    refused = hw("org", "create", "outside", "--install", str(root), "--project", str(outside), cwd=tmp_path)
    assert refused.returncode == ExitCode.USER_ERROR and "records its runs in another system database" in refused.stderr
    (outside / "headwater.yml").write_text((outside / "headwater.yml").read_text().replace("url: sqlite:///.headwater/system.db", f'url: "{Install.load(root).system_url}"'))
    joined = hw("org", "create", "outside", "--install", str(root), "--project", str(outside), cwd=tmp_path)
    assert joined.returncode == 0 and "with its existing project" in joined.stdout, joined.stderr


# --- invitations ---------------------------------------------------------------------------------


def test_an_invitation_works_once_for_its_address_until_it_expires(install: Install) -> None:
    db = install.open_db()
    now = [START]
    try:
        accounts = Accounts(db, hasher=FAST_HASHER, clock=lambda: now[0])
        token = accounts.invite("New@Example.org", "analyst", org="acme", created_by="admin@example.org", attributes={"region": ["North"]})
        with db.engine.connect() as con:
            stored = json.dumps([list(map(str, r)) for r in con.exec_driver_sql("SELECT * FROM invitations")])
        assert token not in stored  # only its hash
        view = accounts.invitation(token)
        assert (view.org, view.email, view.role, view.has_account) == ("acme", "new@example.org", Role.analyst, False)
        new = accounts.accept_invitation(token, PASSWORD, ip="1.2.3.4")
        assert new.user.email == "new@example.org" and new.user.in_org("acme").role is Role.analyst
        assert accounts.get("new@example.org", org="acme").attributes == {"region": ("North",)}
        for used in (token, token[:-1] + "x", "", "x" * 500):
            with pytest.raises(InvitationInvalid):
                accounts.accept_invitation(used, PASSWORD, ip="1.2.3.4")
        late = accounts.invite("late@example.org", "viewer", org="acme", created_by="x")
        now[0] = START + dt.timedelta(days=7, seconds=1)
        with pytest.raises(InvitationInvalid):
            accounts.invitation(late)
        # Someone with an account joins with their own password (checked as a login is).
        accounts.create_user("ben@example.org", PASSWORD, "viewer", org="beta")
        joining = accounts.invite("ben@example.org", "viewer", org="acme", created_by="x")
        with pytest.raises(LoginFailed):
            accounts.accept_invitation(joining, "not ben's password", ip="1.2.3.4")
        assert accounts.accept_invitation(joining, PASSWORD, ip="1.2.3.4").user.in_org("acme").role is Role.viewer
        assert sorted(accounts.organisations_of("ben@example.org")) == ["acme", "beta"]
    finally:
        db.close()


def test_accepting_an_invitation_in_the_browser_flow(install: Install) -> None:
    member(install, "admin-acme@example.org", "acme", "admin")
    app = app_of(install)
    with signed_in(app, "admin-acme@example.org") as admin:
        token = re.search(r'name="csrf_token" value="([^"]+)"', admin.get("/o/acme/admin/users").text).group(1)  # type: ignore[union-attr]
        page = admin.post("/o/acme/admin/invitations", data={"email": "cy@example.org", "role": "analyst", "attributes": "region=East", "csrf_token": token})
        assert page.status_code == 200
        link = re.search(r'<code id="invitation-link">([^<]+)</code>', page.text).group(1)  # type: ignore[union-attr]
    path = httpx.URL(link).path
    with TestClient(app) as cy:
        form = cy.get(path)
        assert form.status_code == 200 and "Join Acme" in form.text and "cy@example.org" in form.text
        csrf = cy.cookies.get(LOGIN_CSRF_COOKIE)
        differ = cy.post(path, data={"password": PASSWORD, "confirm": PASSWORD + "x", "csrf_token": csrf})
        assert differ.status_code == 400 and "The two passwords differ" in differ.text
        joined = cy.post(path, data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": csrf}, follow_redirects=False)
        assert joined.status_code == 303 and joined.headers["location"] == "/o/acme/"
        assert cy.get("/o/acme/runs").status_code == 200  # signed in, as an analyst of acme
        assert cy.get("/o/beta/").status_code == 404
        again = cy.get(path)
        assert again.status_code == 404 and "This invitation link does not work" in again.text
    db = install.open_db()
    try:
        events = [(e.actor, e.action, e.target) for e in reversed(audit.query(db, "acme"))]
    finally:
        db.close()
    assert ("admin-acme@example.org", "invitation_created", "cy@example.org") in events
    assert events[-2:] == [("cy@example.org", "invitation_accepted", "cy@example.org"), ("cy@example.org", "login", "cy@example.org")]


def test_invite_from_the_command_line_prints_a_link_that_works(install: Install) -> None:
    result = hw("invite", "dee@example.org", "--org", "beta", "--role", "viewer", "--base-url", "https://data.example.org/", "--install", str(install.root), cwd=install.root)
    assert result.returncode == 0, result.stderr
    link = re.search(r"https://data\.example\.org/invite/(\S+)", result.stdout)
    assert link, result.stdout
    db = install.open_db()
    try:
        assert Accounts(db).invitation(link.group(1)).org == "beta"
    finally:
        db.close()


# --- isolation in the web app ----------------------------------------------------------------------


def test_each_organisation_sees_only_its_own_data(install: Install) -> None:
    member(install, "ana@example.org", "acme", "viewer")
    member(install, "ana@example.org", "beta", "viewer")
    member(install, "bob@example.org", "beta", "admin")
    app = app_of(install)
    with signed_in(app, "ana@example.org") as ana, signed_in(app, "bob@example.org") as bob:
        chooser = ana.get("/")
        assert chooser.status_code == 200 and 'href="/o/acme/"' in chooser.text and 'href="/o/beta/"' in chooser.text
        assert bob.get("/", follow_redirects=False).headers["location"] == "/o/beta/"  # one organisation: straight there
        for slug, (regions, _organizers) in ORG_DATA.items():
            others = [name for other, (r, o) in ORG_DATA.items() if other != slug for name in r + o]
            page = ana.get(f"/o/{slug}/dashboards/flake_rate")
            chart = ana.get(f"/o/{slug}/api/dashboards/flake_rate/charts/2").json()
            table = ana.get(f"/o/{slug}/tables/flake_rate_weekly.csv").text
            assert page.status_code == 200 and {r[1] for r in chart["rows"]} == set(regions)
            for text in (page.text, json.dumps(chart), table):
                assert not [name for name in others if name in text], f"{slug} shows another organisation's data"
            assert f'href="/o/{slug}/dashboards/flake_rate/charts/0.csv"' in page.text and 'id="org-switch"' in page.text
        assert bob.get("/o/acme/dashboards/flake_rate").status_code == 404
        assert bob.get("/o/acme/api/dashboards/flake_rate/charts/0").status_code == 404
        opened = {site.slug: site.ctx.data.warehouse.folder for site in app.state.tenancy.sites()}
    assert opened == {slug: (install.root / "orgs" / slug / ".headwater" / "warehouse").resolve() for slug in ORG_DATA}  # each read its own warehouse, nothing else


def test_the_chart_cache_is_per_organisation(install: Install) -> None:
    member(install, "ana@example.org", "acme", "viewer")
    member(install, "ana@example.org", "beta", "viewer")
    app = app_of(install)
    with signed_in(app, "ana@example.org") as ana:
        acme = ana.get("/o/acme/api/dashboards/flake_rate/charts/1").json()
        beta = ana.get("/o/beta/api/dashboards/flake_rate/charts/1").json()  # same dashboard, chart and filters
        assert acme != beta
        sites = {site.slug: site for site in app.state.tenancy.sites()}
        assert len(sites["acme"].ctx._results) == 1 and len(sites["beta"].ctx._results) == 1


def test_runs_people_and_audit_are_each_organisations_own(install: Install) -> None:
    member(install, "admin-acme@example.org", "acme", "admin")
    member(install, "viewer-beta@example.org", "beta", "viewer")
    db = install.open_db()
    try:
        with db.session() as session:
            for org in ("acme", "beta"):
                session.add(Run(project=project_name(org), pipeline=f"pipeline_of_{org}", status="success", trigger="cli", started_at=START, finished_at=START))
            session.commit()
        beta_id = Accounts(db).get("viewer-beta@example.org", org="beta").id
    finally:
        db.close()
    app = app_of(install)
    with signed_in(app, "admin-acme@example.org") as admin:
        runs = admin.get("/o/acme/runs").text
        assert "pipeline_of_acme" in runs and "pipeline_of_beta" not in runs
        users = admin.get("/o/acme/admin/users").text
        assert "admin-acme@example.org" in users and "viewer-beta@example.org" not in users
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', users).group(1)  # type: ignore[union-attr]
        for action, data in (("role", {"role": "admin"}), ("disabled", {"disabled": "1"})):
            refused = admin.post(f"/o/acme/admin/users/{beta_id}/{action}", data={**data, "csrf_token": csrf})
            assert refused.status_code == 404 and f"No account number {beta_id} in this organisation" in refused.text
        audit_page = admin.get("/o/acme/admin/audit").text
        assert "admin-acme@example.org" in audit_page and "viewer-beta@example.org" not in audit_page
        assert admin.get("/o/beta/admin/audit").status_code == 404
    db = install.open_db()
    try:
        accounts = Accounts(db)
        assert accounts.get("viewer-beta@example.org", org="beta").role is Role.viewer and not accounts.get("viewer-beta@example.org").disabled
        assert accounts.get("viewer-beta@example.org", org="acme").role is None  # not made a member by acme's admin
    finally:
        db.close()


def test_an_admin_cannot_disable_someone_who_also_belongs_elsewhere(install: Install) -> None:
    member(install, "admin-acme@example.org", "acme", "admin")
    member(install, "both@example.org", "acme", "viewer")
    member(install, "both@example.org", "beta", "viewer")
    db = install.open_db()
    try:
        both = Accounts(db).get("both@example.org", org="acme").id
    finally:
        db.close()
    with signed_in(app_of(install), "admin-acme@example.org") as admin:
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', admin.get("/o/acme/admin/users").text).group(1)  # type: ignore[union-attr]
        refused = admin.post(f"/o/acme/admin/users/{both}/disabled", data={"disabled": "1", "csrf_token": csrf})
        assert refused.status_code == 400 and "also belong to other organisations" in refused.text
        assert admin.post(f"/o/acme/admin/users/{both}/role", data={"role": "analyst", "csrf_token": csrf}).status_code == 200  # their role here is acme's business


def test_a_broken_project_breaks_only_its_own_organisation(install: Install) -> None:
    member(install, "ana@example.org", "acme", "viewer")
    member(install, "ana@example.org", "beta", "viewer")
    (install.root / "orgs" / "beta" / "headwater.yml").write_text("name: beta\nsourcez: {}\n")
    with signed_in(app_of(install), "ana@example.org") as ana:
        assert ana.get("/o/acme/dashboards/flake_rate").status_code == 200
        broken = ana.get("/o/beta/dashboards/flake_rate")
        assert broken.status_code == 500 and "unknown key &#39;sourcez&#39;" in broken.text


def test_an_unknown_organisation_and_a_strangers_one_look_the_same(install: Install) -> None:
    member(install, "bob@example.org", "beta", "viewer")
    with signed_in(app_of(install), "bob@example.org") as bob, TestClient(app_of(install)) as anonymous:
        strangers, unknown = bob.get("/o/acme/dashboards/flake_rate"), bob.get("/o/nope/dashboards/flake_rate")
        assert strangers.status_code == unknown.status_code == 404
        assert strangers.text.replace("/o/acme/", "/o/X/") == unknown.text.replace("/o/nope/", "/o/X/")
        for path in ("/o/acme/dashboards/flake_rate", "/o/nope/dashboards/flake_rate"):  # anonymous: to the login page either way
            assert anonymous.get(path, follow_redirects=False).headers["location"].startswith("/login?next=")


def test_least_recently_used_snapshot_connections_are_let_go(install: Install) -> None:
    from headwater.web.tenancy import Tenancy

    tenancy = Tenancy(install=install, open_snapshots=1)
    try:
        acme, beta = tenancy.site("acme"), tenancy.site("beta")
        assert acme is not None and beta is not None and tenancy.site("nope") is None
        tenancy.touch(acme)
        assert acme.ctx.data.tables() == ["flake_rate_weekly"] and acme.ctx.data.is_open
        with acme.ctx.data.cursor() as in_flight:
            tenancy.touch(beta)  # over the limit: acme's connection is let go
            assert beta.ctx.data.tables() == ["flake_rate_weekly"]
            assert not acme.ctx.data.is_open and beta.ctx.data.is_open
            assert in_flight.execute("SELECT count(*) FROM flake_rate_weekly").fetchone()[0] > 0  # a query in flight finishes
        tenancy.touch(acme)
        assert acme.ctx.data.tables() == ["flake_rate_weekly"]  # opened again when needed
    finally:
        tenancy.shutdown()


def test_one_organisation_loading_its_files_does_not_hold_up_the_others(install: Install) -> None:
    """An organisation whose files take long to read (here a dashboard file that is a FIFO nobody has
    written yet; before, an alias bomb took 40 s) must not stop the install from serving the others."""
    import errno
    import os
    import threading

    from headwater.web.tenancy import Tenancy

    fifo = install.root / "orgs" / "acme" / "dashboards" / "slow.yml"
    os.mkfifo(fifo)
    tenancy = Tenancy(install=install)
    loaded: dict[str, object] = {}
    acme = threading.Thread(target=lambda: loaded.update(acme=tenancy.site("acme")), daemon=True)
    acme.start()
    deadline = time.monotonic() + 60
    while True:  # acme's load is inside the file once the FIFO has a reader
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            assert exc.errno == errno.ENXIO and time.monotonic() < deadline and acme.is_alive()
            time.sleep(0.01)
    try:
        beta = threading.Thread(target=lambda: loaded.update(beta=tenancy.site("beta")), daemon=True)
        beta.start()
        beta.join(timeout=60)
        assert not beta.is_alive() and loaded["beta"].slug == "beta"  # type: ignore[attr-defined]
        assert acme.is_alive() and "acme" not in loaded  # still reading its file
    finally:
        os.write(writer, b"title: Slow\ntable: flake_rate_weekly\ncharts: [{title: Rows, type: kpi, measures: {rows: count(*)}}]\n")
        os.close(writer)
    acme.join(timeout=60)
    try:
        assert "slow" in loaded["acme"].project.config.dashboards  # type: ignore[attr-defined]
    finally:
        tenancy.shutdown()


def _first_answer(client: httpx.Client, path: str, server: subprocess.Popen[bytes], seconds: float = 60) -> httpx.Response:
    """``path``'s response once the server listens; fails, with the server's stderr, if it exits or never does."""
    deadline = time.monotonic() + seconds
    while True:
        if server.poll() is not None:
            pytest.fail(f"the server exited ({server.returncode}) before answering {path}: {server.communicate()[1].decode()[-3000:]}")
        try:
            return client.get(path)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the server did not answer {path} within {seconds:.0f}s: {server.communicate()[1].decode()[-3000:]}")
            time.sleep(0.1)


def test_serve_install_serves_every_organisation(install: Install) -> None:
    member(install, "ana@example.org", "beta", "viewer")
    port = free_port()
    server = subprocess.Popen([*HEADWATER, "serve", "--install", str(install.root), "--port", str(port), "--no-scheduler"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env({"PATH": "/usr/bin:/bin"}))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            health = _first_answer(client, "/healthz", server)
            assert health.json() == {"status": "ok"}  # nothing about the organisations to anonymous callers
            client.get("/login")
            client.post("/login", data={"email": "ana@example.org", "password": PASSWORD, "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE) or ""})
            page = client.get("/o/beta/dashboards/flake_rate")
            assert page.status_code == 200 and "Bravo-Hills" in page.text
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_one_project_install_is_served_as_before(tmp_path: Path) -> None:
    """`headwater serve -p DIR`: the one organisation at unprefixed URLs; /o/... does not exist."""
    from conftest_web import account, log_in, make_project, publish_rows, synthetic_rows

    project = make_project(tmp_path / "p")
    publish_rows(project, synthetic_rows(), "run-000001")
    account(project, "viewer")
    with TestClient(create_app(project)) as client:
        log_in(client, project, "viewer")
        assert client.get("/dashboards/flake_rate").status_code == 200
        assert client.get("/o/default/dashboards/flake_rate").status_code == 404
        assert client.get("/healthz").json() == {"status": "ok", "published": "run-000001.duckdb"}


def test_two_installs_in_one_process_do_not_mix(tmp_path: Path) -> None:
    first = make_install(tmp_path / "one", {"acme": (["North"], ["Ana"])})
    second = make_install(tmp_path / "two", {"acme": (["Elsewhere"], ["Zoe"])})
    for target in (first, second):
        member(target, "ana@example.org", "acme", "viewer")
    with signed_in(app_of(first), "ana@example.org") as one, signed_in(app_of(second), "ana@example.org") as two:
        assert {r[1] for r in one.get("/o/acme/api/dashboards/flake_rate/charts/0").json()["rows"]} == {"North"}
        assert {r[1] for r in two.get("/o/acme/api/dashboards/flake_rate/charts/0").json()["rows"]} == {"Elsewhere"}
