"""The warehouse matrix: tests whose behaviour depends on the warehouse run on DuckDB and on PostgreSQL.

A test asks for the ``warehouse`` fixture (tests/conftest.py), parametrised ``duckdb`` and
``postgres`` (the latter marked ``postgres``, on a fresh database of the session's server), and
gets a `Target`:

    def test_x(tmp_path, warehouse):
        project = warehouse.apply(make_project(tmp_path / "demo", 1_000))   # headwater.yml on that warehouse
        run_pipeline(project)
        warehouse.query(project.root, "SELECT ... FROM raw_app.t", settings=project.config.warehouse)
        before = warehouse.published_state(project)                        # what readers see, exactly

A suite whose harness fixture builds on `matrix_target` (test_sync_postgres's ``h``, test_checks'
``project`` and ``build``, conftest_web's ``empty_project``) puts a test on both with the mark
`on_both_warehouses` instead.

Reads go through the warehouse's own read path, the build connection `connect_build` gives (for
PostgreSQL: DuckDB with the database attached as its default catalog), so the same SQL reads raw
and its state on both; the published side is compared by what each engine's readers see (DuckDB:
the snapshot file; PostgreSQL: every table's checksum and oid in ``published``, the published*
schemas, and the dashboards' local copy). The PostgreSQL side is marked ``postgres``: ``-m "not
postgres"`` leaves it out; ``-k duckdb`` or ``-k postgres`` picks a side by name (README, "Developing").
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pg_warehouse import WAREHOUSE_BLOCK, plain_url, rows, schema_checksums
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from headwater.config import LoadedProject, load_project
from headwater.config.model import DuckDBWarehouse, PostgresWarehouse
from headwater.sources import extensions_for, open_source
from headwater.sqltext import ident
from headwater.sync import TableStats
from headwater.warehouse import WarehouseEngine, open_warehouse

KINDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")]

# A test of a suite whose harness fixture reads `matrix_target` (e.g. test_sync_postgres's ``h``)
# runs on both warehouses when marked so; other tests ask for ``warehouse`` themselves.
on_both_warehouses = pytest.mark.usefixtures("warehouse")


@dataclass(frozen=True)
class Target:
    """The warehouse a matrix test runs on: ``kind``, and for PostgreSQL the URL of its own fresh database."""

    kind: str  # "duckdb" | "postgres"
    url: str | None = None  # postgresql://... (PostgreSQL only)

    @property
    def postgres(self) -> bool:
        return self.kind == "postgres"

    # -- projects ---------------------------------------------------------------------------------------

    def apply(self, project: LoadedProject, env: dict[str, str] | None = None) -> LoadedProject:
        """The same project folder, its headwater.yml now on this warehouse (unchanged on DuckDB).
        A ``warehouse:`` block is replaced; a file without one gets one."""
        if not self.postgres:
            return project
        path = project.root / "headwater.yml"
        text = path.read_text()
        block = f"warehouse:\n  type: postgres\n  url: {self.url}\n"
        blocks = WAREHOUSE_BLOCK.findall(text)
        assert len(blocks) <= 1, "headwater.yml should have at most one warehouse: block"
        text = WAREHOUSE_BLOCK.sub(block, text) if blocks else text.rstrip("\n") + "\n" + block
        assert len(re.findall(r"^warehouse:", text, re.MULTILINE)) == 1
        path.write_text(text)
        loaded = load_project(project.root, env=env)
        assert loaded.config.warehouse.type == "postgres"
        return loaded

    def settings(self, path: str = ".headwater/warehouse") -> DuckDBWarehouse | PostgresWarehouse:
        """Warehouse settings for a harness without a headwater.yml."""
        if self.postgres:
            assert self.url is not None
            return PostgresWarehouse(type="postgres", url=self.url, path=path)
        return DuckDBWarehouse(path=path)

    # -- the build side: raw and its state ------------------------------------------------------------

    def engine(self, root: Path, settings: Any | None = None) -> WarehouseEngine:
        return open_warehouse(root, settings if settings is not None else self.settings())

    def sync(self, root: Path, name: str, source_settings: Any, *, settings: Any | None = None, log: Callable[[str], None] | None = None, **options: Any) -> list[TableStats]:
        """One source synced as a run's sync step does it: `connect_build` with the source's
        extensions, then the engine's `load_raw` (``options``: tables, full_refresh, prune)."""
        warehouse = self.engine(root, settings)
        con = warehouse.connect_build(sync_extensions=extensions_for([source_settings]))
        try:
            return warehouse.load_raw(con, open_source(name, source_settings, root), log or (lambda _: None), **options)
        finally:
            con.close()

    def query(self, root: Path, sql: str, params: list[Any] | None = None, *, settings: Any | None = None) -> list[tuple[Any, ...]]:
        """``sql`` on the warehouse's build connection (DuckDB's SQL; raw_<source>.<table> names resolve on both)."""
        con = self.engine(root, settings).connect_build()
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    # -- the published side -----------------------------------------------------------------------------

    def published_state(self, project: LoadedProject) -> tuple[Any, ...]:
        """Everything a reader of the published data could see, exactly: the dashboards' snapshot
        (name, sha256), and on PostgreSQL every published table's checksum and identity and the
        schemas named published* (a staged or old one left behind would show)."""
        warehouse = open_warehouse(project.root, project.config.warehouse)
        snapshot = warehouse.current_snapshot()
        assert snapshot is not None, "nothing published"
        local = (snapshot.name, hashlib.sha256(snapshot.read_bytes()).hexdigest())
        if not self.postgres:
            return local
        assert self.url is not None
        oids = rows(self.url, "SELECT c.relname, c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'published' ORDER BY 1")
        schemas = rows(self.url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'published%' ORDER BY 1")
        return local, schema_checksums(self.url, "published"), oids, schemas


@contextmanager
def new_pg_database(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's server, dropped afterwards; its URL."""
    name = f"hw_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as con:
            con.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as con:
            con.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def publish_built(project: LoadedProject, name: str, build: Callable[[duckdb.DuckDBPyConnection], None], tables: list[str]) -> Path | None:
    """Publish ``tables`` as the project's warehouse publishes: ``build(con)`` makes them on the
    build connection (DuckDB's SQL; on PostgreSQL they land in its ``public`` schema), then DuckDB
    writes a snapshot and switches to it, or PostgreSQL's engine swaps ``published`` and writes the
    dashboards' copy (`publish`). The DuckDB snapshot's path is returned (None on PostgreSQL)."""
    engine: Any = open_warehouse(project.root, project.config.warehouse)
    con = engine.connect_build()
    try:
        build(con)
        if project.config.warehouse.type == "postgres":
            engine.publish(con, name, {t: f"{ident(engine.database)}.public.{ident(t)}" for t in tables}, [])
            return None
        snapshot: Path = engine.write_snapshot(con, name, {t: f"main.{t}" for t in tables}, [])
    finally:
        con.close()
    engine.switch(snapshot)
    return snapshot


def matrix_target(request: pytest.FixtureRequest) -> Target | None:
    """The ``warehouse`` of a test marked `on_both_warehouses` (None for any other test)."""
    if "warehouse" not in request.fixturenames:
        return None
    target = request.getfixturevalue("warehouse")
    assert isinstance(target, Target)
    return target


def postgres_target(url: str) -> Target:
    return Target("postgres", plain_url(url))
