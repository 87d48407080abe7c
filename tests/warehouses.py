"""The warehouse matrix: tests whose behaviour depends on the warehouse run on DuckDB, PostgreSQL and BigQuery.

A test asks for the ``warehouse`` fixture (tests/conftest.py), parametrised ``duckdb``,
``postgres`` (marked ``postgres``, on a fresh database of the session's server) and ``bigquery``
(marked ``bigquery``, on the session's emulator with datasets of its own: a fresh dataset prefix,
its datasets dropped afterwards), and gets a `Target`:

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

On BigQuery the build connection is the local DuckDB mirror of raw, so `Target.query` does not read
it: it downloads the BigQuery tables of the datasets the SQL names (`types.read_table`) into an
in-memory DuckDB under the same schema and table names, and runs the test's DuckDB SQL there; sync
state comes from the mirror, after asserting BigQuery's token for each table agrees with it. The
published side is the snapshot, the current version, every published view's definition and the rows
of each published table in BigQuery. A test whose subject cannot exist on BigQuery leaves the
``bigquery`` kind out with its reason (`kinds_without_bigquery`), never by a silent skip.
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
from headwater.config.model import BigQueryWarehouse, DuckDBWarehouse, PostgresWarehouse
from headwater.sources import extensions_for, open_source
from headwater.sqltext import ident
from headwater.sync import TableStats
from headwater.warehouse import WarehouseEngine, open_warehouse

KINDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"), pytest.param("bigquery", marks=pytest.mark.bigquery, id="bigquery")]


def kinds_without_bigquery(reason: str) -> pytest.MarkDecorator:
    """The matrix without BigQuery, for a test whose subject cannot exist there (``reason`` says why).
    grep ``kinds_without_bigquery`` for the list of such tests and their reasons."""
    assert reason.strip(), "say why the test cannot run on BigQuery"
    return pytest.mark.parametrize("warehouse_kind", KINDS[:2], indirect=True)

# A test of a suite whose harness fixture reads `matrix_target` (e.g. test_sync_postgres's ``h``)
# runs on both warehouses when marked so; other tests ask for ``warehouse`` themselves.
on_both_warehouses = pytest.mark.usefixtures("warehouse")


@dataclass(frozen=True)
class Target:
    """The warehouse a matrix test runs on: ``kind``, and for PostgreSQL the URL of its own fresh database."""

    kind: str  # "duckdb" | "postgres" | "bigquery"
    url: str | None = None  # postgresql://... (PostgreSQL only)
    emulator: Any = None  # tests/bq.Emulator (BigQuery only)
    prefix: str = ""  # the dataset prefix: this test's datasets (BigQuery only)

    @property
    def postgres(self) -> bool:
        return self.kind == "postgres"

    @property
    def bigquery(self) -> bool:
        return self.kind == "bigquery"

    @property
    def through_engine(self) -> bool:
        """Written and read through the warehouse engine (`sync`, `query`), not a DuckDB file of the test's."""
        return self.kind != "duckdb"

    def held_as(self, duck_type: str) -> str:
        """The DuckDB type a raw column of ``duck_type`` reads back as from this warehouse: itself,
        except on BigQuery, where it is the type of the BigQuery column holding it (types.py's table:
        DECIMAL(10,2) is a NUMERIC there, read back as DECIMAL(38,9), every value exact)."""
        if not self.bigquery:
            return duck_type
        from headwater.warehouse.bigquery import types

        return types.duck_type(types.field("c", duck_type))

    def block(self) -> str:
        """The ``warehouse:`` block of headwater.yml for this warehouse ("" on DuckDB)."""
        if self.postgres:
            return f"warehouse:\n  type: postgres\n  url: {self.url}\n"
        if self.bigquery:
            return f"warehouse:\n  type: bigquery\n  project: {self.emulator.project}\n  api_endpoint: {self.emulator.endpoint}\n  dataset_prefix: {self.prefix}\n"
        return ""

    # -- projects ---------------------------------------------------------------------------------------

    def apply(self, project: LoadedProject, env: dict[str, str] | None = None) -> LoadedProject:
        """The same project folder, its headwater.yml now on this warehouse (unchanged on DuckDB).
        A ``warehouse:`` block is replaced; a file without one gets one."""
        if self.kind == "duckdb":
            return project
        path = project.root / "headwater.yml"
        text = path.read_text()
        block = self.block()
        blocks = WAREHOUSE_BLOCK.findall(text)
        assert len(blocks) <= 1, "headwater.yml should have at most one warehouse: block"
        text = WAREHOUSE_BLOCK.sub(block, text) if blocks else text.rstrip("\n") + "\n" + block
        if self.bigquery:
            text = prefixed_check_sql(text, self.prefix)
        assert len(re.findall(r"^warehouse:", text, re.MULTILINE)) == 1
        path.write_text(text)
        loaded = load_project(project.root, env=env)
        assert loaded.config.warehouse.type == self.kind
        return loaded

    def settings(self, path: str = ".headwater/warehouse") -> DuckDBWarehouse | PostgresWarehouse | BigQueryWarehouse:
        """Warehouse settings for a harness without a headwater.yml."""
        if self.bigquery:
            return BigQueryWarehouse(type="bigquery", project=self.emulator.project, api_endpoint=self.emulator.endpoint, dataset_prefix=self.prefix, path=path)
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

    def query(self, root: Path, sql: str, params: list[Any] | None = None, *, settings: Any | None = None, tokens_agree: bool = True) -> list[tuple[Any, ...]]:
        """``sql`` on the warehouse's build connection (DuckDB's SQL; raw_<source>.<table> names resolve on each).
        On BigQuery: on what BigQuery holds, downloaded (`bigquery_copy`), not on the local mirror; with
        ``tokens_agree`` (unless just after a kill, which may leave BigQuery a change ahead) it asserts
        BigQuery's token of each table is the one the mirror's state records."""
        if self.bigquery:
            con = bigquery_copy(self.engine(root, settings), sql, tokens_agree=tokens_agree)
            try:
                return con.execute(sql, params or []).fetchall()
            finally:
                con.close()
        con = self.engine(root, settings).connect_build()
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def mirror_query(self, root: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """BigQuery only: ``sql`` on the local DuckDB mirror of raw and its state (the build connection)."""
        assert self.bigquery
        con = self.engine(root).connect_build()
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    # -- the published side -----------------------------------------------------------------------------

    def published_state(self, project: LoadedProject) -> tuple[Any, ...]:
        """Everything a reader of the published data could see, exactly: the dashboards' snapshot
        (name, sha256), and on PostgreSQL every published table's checksum and identity and the
        schemas named published* (a staged or old one left behind would show); on BigQuery the current
        version, the datasets named published*, every published view's definition and the rows of
        each published table in BigQuery (`bigquery_published`)."""
        warehouse = open_warehouse(project.root, project.config.warehouse)
        snapshot = warehouse.current_snapshot()
        assert snapshot is not None, "nothing published"
        local = (snapshot.name, hashlib.sha256(snapshot.read_bytes()).hexdigest())
        if self.bigquery:
            return local, *bigquery_published(warehouse)
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
    build connection (DuckDB's SQL; on PostgreSQL they land in its ``public`` schema; on BigQuery in
    the local mirror, and are loaded from there into a scratch dataset), then DuckDB writes a snapshot
    and switches to it, or PostgreSQL's or BigQuery's engine publishes them and writes the dashboards'
    copy (`publish`). The DuckDB snapshot's path is returned (None on the others)."""
    engine: Any = open_warehouse(project.root, project.config.warehouse)
    con = engine.connect_build()
    try:
        build(con)
        if project.config.warehouse.type == "bigquery":  # loaded into a scratch dataset, published from there
            engine.publish(con, name, {t: upload(engine, con, "main", t, SCRATCH) for t in tables}, [])
            return None
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


# --- BigQuery (the emulator: tests/bq.py) -----------------------------------------------------------

SCRATCH = "hw_test_scratch"  # tables a test builds to publish (`publish_built`), in the test's prefix


def prefixed_check_sql(text: str, prefix: str) -> str:
    """headwater.yml's one-line check queries (``sql: ...``) naming Headwater's datasets (marts.t,
    raw_app.t, ...) with the dataset prefix, as a user with a prefix writes them: a check's warehouse
    query runs in BigQuery, where the datasets carry the prefix. (The demo's template names
    ``marts.flake_rate_weekly`` whatever the prefix: see the report of the bq-matrix branch.)"""
    return re.sub(r"^([ \t]*(?:- )?sql: )(.*)$", lambda m: m.group(1) + prefixed_sql(m.group(2), prefix), text, flags=re.MULTILINE)


def prefixed_sql(sql: str, prefix: str) -> str:
    """``sql``'s names of Headwater's datasets (marts.t, raw_app.t, ...) with the dataset prefix."""
    return re.sub(r"(?<![\w.`])(marts|staging|intermediate|raw_[a-z0-9_]+)\.(?=[a-z_])", lambda d: prefix + d.group(1) + ".", sql)


def bigquery_target(emulator: Any) -> Target:
    """BigQuery on the session's emulator, with datasets of its own (a fresh prefix)."""
    return Target("bigquery", emulator=emulator, prefix=f"m{uuid.uuid4().hex[:12]}_")


def drop_bigquery_datasets(emulator: Any, prefix: str) -> None:
    """Every dataset whose name starts with ``prefix``, with its tables."""
    import bq

    client = bq.client(emulator)
    try:
        for dataset in list(client.list_datasets(retry=None)):
            if dataset.dataset_id.startswith(prefix):
                client.delete_dataset(dataset.dataset_id, delete_contents=True, not_found_ok=True, retry=None)
    finally:
        client.close()


def bigquery_copy(engine: Any, sql: str, *, tokens_agree: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding what BigQuery holds of the datasets ``sql`` names (schema.table
    names, the prefix left out; every dataset for a catalog query): each table downloaded as it is
    (`types.read_table`), a view's rows by a query. ``_headwater.sync_state`` is the local mirror's,
    once BigQuery's token of each table is asserted to be the one the mirror's state records (the two
    agree on the last change)."""
    from headwater.warehouse.bigquery import types

    named = {m.lower() for m in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\.", sql) + re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'", sql)}  # raw_app.t, schema_name = 'raw_app'
    catalog = re.search(r"duckdb_(tables|columns)\s*\(|information_schema", sql, re.IGNORECASE) is not None  # a question about what exists: every dataset
    con = duckdb.connect()
    try:
        for dataset in engine.bq.datasets():
            if dataset == "_headwater" or not (catalog or dataset.lower() in named):
                continue
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(dataset)}")
            for table in engine.bq.tables(dataset):
                table_id = engine.bq.table_id(dataset, table)
                relation = f"{ident(dataset)}.{ident(table)}"
                if engine.bq.table(table_id).table_type == "TABLE":
                    types.read_table(engine.bq.client, table_id, con, relation)
                else:  # a view dbt built: its rows, by a query
                    rows = engine.bq.client.query(f"SELECT * FROM {engine.bq.quoted(table_id)}", retry=None, job_retry=None).result(retry=None)
                    view = rows.to_arrow(create_bqstorage_client=False)  # noqa: F841 (read by DuckDB by name)
                    con.execute(f"CREATE TABLE {relation} AS SELECT * FROM view")
        if "_headwater" in named:
            mirror = engine.connect_build()
            try:
                state = mirror.execute("SELECT * FROM _headwater.sync_state").fetch_arrow_table()
            finally:
                mirror.close()
            if tokens_agree:
                _assert_tokens_agree(engine, state.to_pylist())
            con.execute("CREATE SCHEMA _headwater")
            con.execute("CREATE TABLE _headwater.sync_state AS SELECT * FROM state")
    except BaseException:
        con.close()
        raise
    return con


def _assert_tokens_agree(engine: Any, mirror_state: list[dict[str, Any]]) -> None:
    import json

    in_bigquery = {}
    if engine.bq.table(engine.bq.table_id("_headwater", "sync_state")) is not None:
        rows = engine.bq.query(f"SELECT source, table_name, token FROM {engine.bq.quoted(engine.bq.table_id('_headwater', 'sync_state'))}", purpose="test")
        in_bigquery = {(r["source"], r["table_name"]): r["token"] for r in rows}
    for row in mirror_state:
        token = json.loads(row["state"]).get("warehouse_token")
        key = (row["source"], row["table_name"])
        assert in_bigquery.get(key) == token, f"{key}: BigQuery's token {in_bigquery.get(key)!r}, the mirror's {token!r}"


def bigquery_published(engine: Any) -> tuple[Any, ...]:
    """What BigQuery's readers see: the current version, the datasets named published*, each published
    view's definition (INFORMATION_SCHEMA: the emulator gives no view_query for a view made by DDL)
    and the rows of each published table (read from the version, sorted)."""
    bq = engine.bq
    version = engine.current_version()
    published = engine.settings.published_dataset
    datasets = sorted(d for d in bq.datasets() if d.startswith("published"))
    views = sorted(
        (r["table_name"], r["view_definition"])
        for r in bq.query(f"SELECT table_name, view_definition FROM `{bq.dataset_id(published)}.INFORMATION_SCHEMA.VIEWS`", purpose="test")
    ) if published in datasets else []
    tables = {}
    if version is not None:
        for table in bq.tables(version):
            rows = bq.client.list_rows(bq.table(bq.table_id(version, table)), retry=None)
            tables[table] = sorted((tuple(r.values()) for r in rows), key=repr)
    return version, datasets, views, tables


def upload(engine: Any, con: duckdb.DuckDBPyConnection, schema: str, table: str, dataset: str) -> str:
    """The DuckDB table ``schema.table`` loaded into BigQuery's ``dataset`` (a Parquet load job, as the
    sync sends raw); its table id."""
    from headwater.warehouse.bigquery import types
    from headwater.warehouse.bigquery.ship import _columns, _select

    columns = _columns(con, schema, table)
    table_id: str = engine.bq.table_id(dataset, table)
    engine.bq.ensure_dataset(dataset)
    engine.bq.create_table(table_id, [types.field(n, k) for n, k in columns])
    path = engine.folder / f"upload-{uuid.uuid4().hex}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con.execute(f"COPY (SELECT {_select(columns)} FROM {ident(schema)}.{ident(table)}) TO '{path}' (FORMAT parquet)")
        engine.bq.load_parquet(path, table_id, truncate=True, purpose="test")
    finally:
        path.unlink(missing_ok=True)
    return table_id
