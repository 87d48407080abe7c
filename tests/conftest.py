"""Shared fixtures. Tests using the PostgreSQL ones are marked ``@pytest.mark.postgres``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg
import pytest
import warehouses
from hypothesis import settings

# No per-example deadline: timings belong in benchmarks (bench/), and on a busy 2-core machine a pure
# function's example can take longer than hypothesis's default 200 ms without anything being wrong.
settings.register_profile("headwater", deadline=None)
settings.load_profile("headwater")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.Server]:
    """A real PostgreSQL server for this test session (its data folder, for tests that change pg_hba.conf)."""
    try:
        server = pg.start_server()
    except pg.Unavailable as exc:
        reason = f"PostgreSQL tests need a server: {exc}"
        if _in_ci():  # in CI a missing install must fail, not hide as a skip
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: pg.Server) -> str:
    """The URL of the session server's ``postgres`` database."""
    return postgres_server.url


@pytest.fixture
def fresh_pg_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's server (dropped afterwards); returns its URL."""
    with warehouses.new_pg_database(postgres_url) as url:
        yield url


# --- the warehouse matrix (tests/warehouses.py) --------------------------------------------------------


@pytest.fixture(params=warehouses.KINDS)
def warehouse_kind(request: pytest.FixtureRequest) -> str:
    """``duckdb``, ``postgres`` or ``bigquery`` (marked ``postgres``, ``bigquery``): a test asking for it runs on each."""
    return str(request.param)


@pytest.fixture
def warehouse(warehouse_kind: str, request: pytest.FixtureRequest) -> Iterator[warehouses.Target]:
    """The warehouse of a matrix test: DuckDB, a fresh PostgreSQL database of its own (not
    `fresh_pg_database`, which a PostgreSQL-source test uses as its source), or BigQuery on the
    session's emulator with datasets of its own (a fresh prefix; they are dropped afterwards)."""
    if warehouse_kind == "duckdb":
        yield warehouses.Target("duckdb")
        return
    if warehouse_kind == "bigquery":
        emulator = request.getfixturevalue("bigquery_emulator")
        target = warehouses.bigquery_target(emulator)
        try:
            yield target
        finally:
            warehouses.drop_bigquery_datasets(emulator, target.prefix)
        return
    with warehouses.new_pg_database(request.getfixturevalue("postgres_url")) as url:
        yield warehouses.postgres_target(url)


# --- the browser (Debian's Chromium driven by Playwright) ------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying the (closed) network at every start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install playwright")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _unavailable(reason: str) -> None:
    if _in_ci():  # CI installs Chromium and Playwright: a skip there would hide a broken install
        pytest.fail(f"{reason} (CI is set, so this is an error rather than a skip)", pytrace=False)
    pytest.skip(reason)


# --- MariaDB (tests/mysql.py) ------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mysql: needs a MariaDB server (started by the test suite)")


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Any]:
    """A real MariaDB server for this test session (`tests/mysql.Server`)."""
    import mysql

    try:
        server = mysql.start_server()
    except mysql.Unavailable as exc:
        _unavailable(f"MySQL tests need a MariaDB server: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_url(mysql_server: Any) -> str:
    """mysql://… of a database on the session's server, for tests that share one."""
    return mysql_server.url(mysql_server.create_database())


@pytest.fixture
def fresh_mysql_database(mysql_server: Any) -> Iterator[str]:
    """A new, empty database on the session's server (dropped afterwards); returns its name."""
    name = mysql_server.create_database()
    yield name
    mysql_server.drop_database(name)


# --- BigQuery (tests/bq.py: the bqemulator package, in its own venv) --------------------------------


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[Any]:
    """A BigQuery emulator for this test session (`tests/bq.Emulator`: ``.endpoint`` is its REST URL, ``.project`` its project)."""
    import bq

    try:
        import google.cloud.bigquery  # noqa: F401  (the [bigquery] extra, in [test])
    except ImportError:
        _unavailable("BigQuery tests need Google's client: pip install -e '.[test]' (it includes the [bigquery] extra)")
    try:
        emulator = bq.start_emulator()
    except bq.Unavailable as exc:
        _unavailable(f"BigQuery tests need the emulator: {exc}")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used the emulator shows the end of the emulator's log (it is deleted when the session ends)."""
    report = yield
    emulator = getattr(item, "funcargs", {}).get("bigquery_emulator")
    if report.failed and emulator is not None:
        report.sections.append(("BigQuery emulator log (last lines)", emulator.log(40)))
    return report


@pytest.fixture
def fresh_bq_dataset(bigquery_emulator: Any) -> Iterator[str]:
    """A new, empty dataset on the session's emulator (deleted afterwards with its tables); returns its id."""
    import bq

    client = bq.client(bigquery_emulator)
    name = f"hw_test_{uuid.uuid4().hex[:16]}"
    client.create_dataset(name)
    try:
        yield name
    finally:
        client.delete_dataset(name, delete_contents=True, not_found_ok=True)
        client.close()
