"""Fixtures for the web tests: a demo-shaped project whose published data is a small synthetic
``flake_rate_weekly`` table, written straight into a snapshot (no dbt run); and an install with two
organisations, each with such a project and data of its own (`make_install`).

Test modules import the ``*_fixture`` functions; pytest knows them by their ``name=``, so test
arguments do not shadow the imported names."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from warehouses import matrix_target, publish_built

import headwater
from headwater.cli.orgs import point_at_install
from headwater.config import LoadedProject, load_project
from headwater.system import open_system_db
from headwater.system.accounts import Accounts, DuplicateEmail, SessionUser
from headwater.system.orgs import Install, Organisations, project_name
from headwater.web import create_app
from headwater.web.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE

DEMO = Path(headwater.__file__).parent / "demo" / "project"
WEEKS = [dt.date(2024, 1, 6), dt.date(2024, 1, 13), dt.date(2024, 1, 20)]
REGIONS = ["East", "North", "South"]
ORGANIZERS = ["Ana", "Ben"]
COLUMNS = ["week_start", "region", "organizer", "completed", "no_show", "cancelled", "scheduled"]
# Cheap argon2 parameters for the accounts tests create (the app itself hashes with argon2's defaults).
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery staple"


def synthetic_rows(scale: int = 1, regions: list[str] = REGIONS, organizers: list[str] = ORGANIZERS) -> list[dict[str, object]]:
    """Base counts of the mart, different for every (week, region, organizer)."""
    rows = []
    for w, week in enumerate(WEEKS):
        for r, region in enumerate(regions):
            for o, organizer in enumerate(organizers):
                rows.append(
                    {
                        "week_start": week,
                        "region": region,
                        "organizer": organizer,
                        "completed": scale * (10 + 3 * w + 5 * r + o),
                        "no_show": scale * (1 + (w + r + o) % 3),
                        "cancelled": scale * (2 + (w * r + o) % 4),
                        "scheduled": scale * (o + w),
                    }
                )
    return rows


def publish_rows(project: LoadedProject, rows: list[dict[str, object]], name: str) -> Path | None:
    """Publish ``rows`` as ``flake_rate_weekly``, computing the derived columns as the mart does, on
    the project's warehouse (tests/warehouses.py `publish_built`); the DuckDB snapshot's path."""

    def build(con: Any) -> None:
        con.execute("DROP TABLE IF EXISTS base")
        con.execute("DROP TABLE IF EXISTS flake_rate_weekly")
        con.execute("CREATE TABLE base (week_start DATE, region VARCHAR, organizer VARCHAR, completed INTEGER, no_show INTEGER, cancelled INTEGER, scheduled INTEGER)")
        con.executemany("INSERT INTO base VALUES (?, ?, ?, ?, ?, ?, ?)", [[row[c] for c in COLUMNS] for row in rows])
        con.execute(
            """CREATE TABLE flake_rate_weekly AS SELECT
                week_start, region, organizer, completed, no_show, cancelled,
                no_show + cancelled AS total_flakes,
                completed + no_show + cancelled + scheduled AS total_signups,
                CAST(no_show + cancelled AS DOUBLE) / nullif(completed + no_show + cancelled + scheduled, 0) AS flake_rate,
                week_start = DATE '2024-01-20' AS is_current_week,
                scheduled
            FROM base"""
        )

    return publish_built(project, name, build, ["flake_rate_weekly"])


def make_project(root: Path) -> LoadedProject:
    (root / "dashboards").mkdir(parents=True)
    for name in ("headwater.yml", "dbt_project.yml", "dashboards/flake_rate.yml"):
        shutil.copy(DEMO / name, root / name)
    return load_project(root)


@pytest.fixture(name="empty_project")
def empty_project_fixture(tmp_path: Path, request: pytest.FixtureRequest) -> LoadedProject:
    """The demo's project files, nothing published; on each warehouse of the matrix for a test
    marked `on_both_warehouses` (tests/warehouses.py), else on DuckDB."""
    project = make_project(tmp_path / "project")
    target = matrix_target(request)
    return target.apply(project) if target is not None else project


@pytest.fixture(name="project")
def project_fixture(empty_project: LoadedProject) -> LoadedProject:
    publish_rows(empty_project, synthetic_rows(), "run-000001")
    return empty_project


def account(project: LoadedProject, role: str = "admin", email: str | None = None) -> str:
    """The account ``email`` (default ``<role>@example.org``) with password PASSWORD, created if missing."""
    email = email or f"{role}@example.org"
    db = open_system_db(project)
    try:
        Accounts(db, hasher=FAST_HASHER).create_user(email, PASSWORD, role)
    except DuplicateEmail:
        pass
    finally:
        db.close()
    return email


def log_in(client: TestClient, project: LoadedProject, role: str = "admin") -> SessionUser:
    """Make ``client`` signed in as ``<role>@example.org`` (a real session; the login form is tested in test_auth.py).

    Returns the session's user; ``.csrf_token`` is what forms and ``X-CSRF-Token`` must carry."""
    email = account(project, role)
    db = open_system_db(project)
    try:
        new = Accounts(db, hasher=FAST_HASHER).login(email, PASSWORD, ip="testclient")
    finally:
        db.close()
    client.cookies.set(SESSION_COOKIE, new.token)
    return new.user


@contextmanager
def logged_in_client(project: LoadedProject, role: str = "admin", **options: object) -> Iterator[TestClient]:
    """A client of a new app for ``project``, signed in with ``role``."""
    with TestClient(create_app(project), **options) as test_client:  # type: ignore[arg-type]
        log_in(test_client, project, role)
        yield test_client


@pytest.fixture(name="client")
def client_fixture(project: LoadedProject) -> Iterator[TestClient]:
    """A client signed in as an admin (``log_in(client, project, "viewer")`` to be someone else)."""
    with logged_in_client(project) as test_client:
        yield test_client


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._rows: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._rows = self.tables.setdefault(dict(attrs).get("id") or "", [])
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._rows = None
        elif tag in ("td", "th") and self._cell is not None and self._rows is not None:
            self._rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_table(html: str, table_id: str) -> list[list[str]]:
    """The header row and the data rows of ``<table id=table_id>``, as the text a reader sees."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables[table_id]


# --- an install with two organisations -------------------------------------------------------------

# Each organisation's data has region and organizer names no other one has, so a leak shows.
ORG_DATA = {"acme": (["East", "North", "South"], ["Ana", "Ben"]), "beta": (["Bravo-Hills", "Delta-Coast"], ["Zed", "Yan"])}


def make_install(root: Path, orgs: dict[str, tuple[list[str], list[str]]] = ORG_DATA) -> Install:
    """An install whose organisations each have the demo's project files and a published snapshot
    of synthetic rows with their own regions and organizers."""
    install = Install.create(root, title="Test install")
    db = install.open_db()
    try:
        for slug, (regions, organizers) in orgs.items():
            folder = root / "orgs" / slug
            project = make_project(folder)
            project.file.write_text(point_at_install(project.file.read_text(), project_name(slug), install.project_system_url()))
            project = load_project(folder)
            publish_rows(project, synthetic_rows(1 + len(regions), regions, organizers), "run-000001")
            Organisations(db).create(slug, name=slug.title(), project_path=str(folder.resolve()))
    finally:
        db.close()
    return install


def member(install: Install, email: str, org: str, role: str, attributes: dict[str, list[str]] | None = None) -> str:
    """``email`` (password PASSWORD) as ``role`` of ``org``: the account is created, or joins."""
    db = install.open_db()
    try:
        accounts = Accounts(db, hasher=FAST_HASHER)
        if accounts.exists(email):
            accounts.set_role(email, role, org=org, attributes=attributes or {})
        else:
            accounts.create_user(email, PASSWORD, role, org=org, attributes=attributes)
    finally:
        db.close()
    return email


def form_log_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    """Log ``client`` in through the login form, as a browser does."""
    client.get("/login")
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE) or ""}, follow_redirects=False)
    assert response.status_code == 303, response.text


@pytest.fixture(name="install")
def install_fixture(tmp_path: Path) -> Install:
    return make_install(tmp_path / "install")


@contextmanager
def served(app: object, *, shutdown_timeout: float = 10) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL.
    The socket is bound before the server starts, so there is no race for the port."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=shutdown_timeout)
        sock.close()
