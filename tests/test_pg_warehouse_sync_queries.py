"""What the sync asks of a PostgreSQL warehouse: counts of raw run in PostgreSQL (DuckDB's own count of
an attached table reads a NULL per row over the wire), changed rows are deleted by PostgreSQL joining
raw with their keys (DuckDB's DELETE reads every raw row's key and ctid first) where its equality is
DuckDB's, and the sync sends the server no CHECKPOINT (DuckDB's checkpoint of its default catalog is
PostgreSQL's: a forced server-wide flush). The queries are what DuckDB's postgres extension prints
with ``pg_debug_show_queries``; the results are checked against the source."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from headwater.config.model import PostgresWarehouse
from headwater.config.sources import PostgresSettings
from headwater.errors import HeadwaterError
from headwater.sources.postgres import PostgresSource
from headwater.sqltext import one_value
from headwater.sync.stats import TableStats
from headwater.warehouse import open_warehouse

pytestmark = pytest.mark.postgres


def plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def warehouse_url(postgres_url: str) -> Iterator[str]:
    """A second fresh database on the session's server, for the warehouse (the source has its own)."""
    name = f"hw_wh_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(plain(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield plain(make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    with psycopg.connect(plain(postgres_url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sync(tmp_path: Path, source_url: str, warehouse_url: str, table: str = "items", threads: list[str] | None = None, **settings: Any) -> TableStats:
    """One sync of ``table``; ``threads``, when given, gets DuckDB's threads setting before and after."""
    warehouse = open_warehouse(tmp_path, PostgresWarehouse(type="postgres", url=warehouse_url))
    config = PostgresSettings.model_validate({"type": "postgres", "url": source_url, "tables": [table], **settings})
    con = warehouse.connect_build()
    setting = "SELECT current_setting('threads')"
    try:
        con.execute("SET pg_debug_show_queries = true")  # every query sent to PostgreSQL, on stderr
        if threads is not None:
            threads.append(one_value(con.execute(setting)))
        (stats,) = warehouse.load_raw(con, PostgresSource("app", config, tmp_path), lambda _: None)
    finally:
        if threads is not None:
            threads.append(one_value(con.execute(setting)))
        con.close()
    return stats


@pytest.mark.parametrize("deletes", ["tombstone", "remove"])
def test_raw_is_counted_by_postgresql_and_the_server_is_never_checkpointed(
    fresh_pg_database: str, warehouse_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], deletes: str
) -> None:
    source_url = plain(fresh_pg_database)
    with psycopg.connect(source_url, autocommit=True) as src:
        src.execute("CREATE TABLE items (id bigint PRIMARY KEY, name text, updated_at timestamptz NOT NULL DEFAULT now())")
        src.execute("INSERT INTO items SELECT g, 'item ' || g, now() FROM generate_series(1, 2000) g")
        settings = {"deletes": deletes, "check_deletes_every": 0}  # a pass every sync: the counts that compare raw with the source
        capfd.readouterr()
        full = sync(tmp_path, source_url, warehouse_url, **settings)
        full_queries = capfd.readouterr().err
        src.execute("UPDATE items SET name = 'changed', updated_at = now() WHERE id % 10 = 0")
        src.execute("INSERT INTO items SELECT g, 'new', now() FROM generate_series(2001, 2300) g")
        src.execute("DELETE FROM items WHERE id % 100 = 1 AND id <= 2000")
        changed = sync(tmp_path, source_url, warehouse_url, **settings)
        queries = capfd.readouterr().err
        # Updates and inserts alone: nothing for the pass to compare key by key (deletes are, in DuckDB).
        src.execute("UPDATE items SET name = 'again', updated_at = now() WHERE id % 10 = 5")
        src.execute("INSERT INTO items SELECT g, 'newer', now() FROM generate_series(2301, 2400) g")
        again = sync(tmp_path, source_url, warehouse_url, **settings)
        merge_queries = capfd.readouterr().err
        source = src.execute("SELECT id, name FROM items ORDER BY id").fetchall()

    with psycopg.connect(warehouse_url) as wh:
        alive = wh.execute("SELECT id, name FROM raw_app.items WHERE " + ("_headwater_deleted_at IS NULL" if deletes == "tombstone" else "true") + " ORDER BY id").fetchall()
        stored = wh.execute("SELECT count(*) FROM raw_app.items").fetchone()
    assert alive == source
    assert (full.rows, full.rows_read) == (2000, 2000)
    assert changed.deleted == 20 and changed.rows_read == 500  # 200 updated + 300 inserted
    assert changed.rows == (2300 if deletes == "tombstone" else 2280)
    assert stored is not None and again.rows == stored[0] == changed.rows + 100 and again.rows_read == 330  # 230 updated + 100 inserted
    assert 'SELECT count(*) FROM "raw_app"."items"' in queries
    assert 'FROM "raw_app"."items"' not in full_queries, "a full load counted the rows it had just written"
    assert 'SELECT NULL FROM "raw_app"."items"' not in full_queries + queries + merge_queries, "a count of raw read every row through DuckDB"
    assert 'DELETE FROM "raw_app"."items" AS r USING _headwater._hw_matching_keys AS k WHERE r."id" = k."id"' in merge_queries
    assert 'ctid FROM "raw_app"."items"' not in merge_queries, "DuckDB read raw's keys to delete the changed rows"
    assert not [line for line in (full_queries + queries + merge_queries).splitlines() if line.strip().rstrip(";").upper() == "CHECKPOINT"], "the sync checkpointed the PostgreSQL server"


@pytest.mark.parametrize(
    ("create", "key", "change"),
    [
        (  # a declared key with NULLs: PostgreSQL's = would match none of them
            "CREATE TABLE t (k text, n bigint, v text); INSERT INTO t SELECT CASE WHEN g % 7 = 0 THEN NULL ELSE 'k' || (g % 5) END, g, 'v' FROM generate_series(1, 300) g",
            ["k", "n"],
            "UPDATE t SET v = 'changed' WHERE n % 7 = 0 OR n % 11 = 0; INSERT INTO t VALUES (NULL, 1000, 'new'), ('x', 1001, 'new')",
        ),
        (  # a float key: NaN and -0.0 are equal to other things in PostgreSQL than in DuckDB
            "CREATE TABLE t (k double precision PRIMARY KEY, v text); INSERT INTO t SELECT g / 4.0, 'v' FROM generate_series(1, 300) g; INSERT INTO t VALUES ('NaN', 'v')",
            None,
            "UPDATE t SET v = 'changed' WHERE k < 20 OR k = 'NaN'; INSERT INTO t VALUES (-1.5, 'new')",
        ),
    ],
    ids=["null-keys", "float-key"],
)
def test_keys_postgresql_would_match_differently_are_deleted_duckdbs_way(
    fresh_pg_database: str, warehouse_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], create: str, key: list[str] | None, change: str
) -> None:
    source_url = plain(fresh_pg_database)
    settings: dict[str, Any] = {"check_deletes_every": 0} | ({"overrides": {"t": {"primary_key": key}}} if key else {})
    with psycopg.connect(source_url, autocommit=True) as src:
        src.execute(create)
        sync(tmp_path, source_url, warehouse_url, "t", **settings)
        src.execute(change)
        capfd.readouterr()
        changed = sync(tmp_path, source_url, warehouse_url, "t", **settings)
        source = src.execute("SELECT * FROM t ORDER BY 1, 2").fetchall()
    queries = capfd.readouterr().err
    with psycopg.connect(warehouse_url) as wh:
        raw = wh.execute("SELECT " + ("k, n, v" if key else "k, v") + " FROM raw_app.t ORDER BY 1, 2").fetchall()
    assert changed.rows_read > 2 and changed.rows == len(source)
    assert [tuple(map(repr, r)) for r in raw] == [tuple(map(repr, r)) for r in source]  # repr: NaN is not == NaN
    assert "_hw_matching_keys" not in queries and 'ctid FROM "raw_app"."t"' in queries


PEAK_RSS = """
import resource, sys
from pathlib import Path
from headwater.config.model import PostgresWarehouse
from headwater.config.sources import PostgresSettings
from headwater.sources.postgres import PostgresSource
from headwater.warehouse import open_warehouse
root, source_url, warehouse_url, table, limit = sys.argv[1:]
warehouse = open_warehouse(Path(root), PostgresWarehouse(type="postgres", url=warehouse_url, memory_limit=limit))
con = warehouse.connect_build()
source = PostgresSource(table, PostgresSettings(type="postgres", url=source_url, tables=[table]), Path(root))
(stats,) = warehouse.load_raw(con, source, lambda _: None)  # a source each: raw_tiny, raw_wide
con.close()
print(stats.rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
WIDE_ROWS = 400_000  # of 512 bytes: ~195 MB


def assert_flat_memory(tmp_path: Path, source_url: str, warehouse_url: str) -> None:
    """Peak memory of a full load of table ``wide`` (WIDE_ROWS rows) against one of table ``tiny``
    (one row), each in a fresh process, with a 64 MB limit: the difference is well under the data
    (held in full, as DuckDB's extension did, it was 191 MB more). Not nothing: DuckDB writing an
    Arrow stream into PostgreSQL grows as it goes in some runs (~100 MB here; bench/pg_arrow_insert_memory.py)."""
    data_mb = WIDE_ROWS * 512 // 2**20

    def peak(table: str) -> tuple[int, int]:
        done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(tmp_path / table), source_url, warehouse_url, table, "64MB"], capture_output=True, text=True, check=False, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert len(done.stdout.split()) == 2, done.stdout[-2000:]  # (DuckDB's progress bar once printed here)
        count, mb = done.stdout.split()
        return int(count), int(mb)

    (tiny_rows, base_mb), (wide_rows, wide_mb) = peak("tiny"), peak("wide")
    assert (tiny_rows, wide_rows) == (1, WIDE_ROWS)
    assert wide_mb - base_mb < data_mb * 3 / 4, f"a full load of {data_mb} MB of rows took {wide_mb - base_mb} MB more than one of a single row (peak {wide_mb} MB)"


def test_a_full_load_streams_in_flat_memory_not_the_tables_size(fresh_pg_database: str, warehouse_url: str, tmp_path: Path) -> None:
    """DuckDB's postgres extension would hold every row of a PostgreSQL source in memory, outside
    DuckDB's limit, before writing them to PostgreSQL: the load reads them on a second connection
    and hands them over in batches while raw is written (warehouse/postgres/load.py)."""
    source_url = plain(fresh_pg_database)
    with psycopg.connect(source_url, autocommit=True) as src:
        src.execute("CREATE TABLE tiny (id bigint PRIMARY KEY, body text); INSERT INTO tiny VALUES (1, 'x')")
        src.execute("CREATE TABLE wide (id bigint PRIMARY KEY, body text)")
        src.execute("INSERT INTO wide SELECT g, repeat(md5(g::text), 16) FROM generate_series(1, %s) g", [WIDE_ROWS])
    assert_flat_memory(tmp_path, source_url, warehouse_url)


def test_a_warehouse_that_fails_mid_load_stops_the_read_and_is_named(fresh_pg_database: str, warehouse_url: str, tmp_path: Path) -> None:
    """A full load reads the source on a second connection while raw is written
    (warehouse/postgres/load.py). When the warehouse fails (here: raw is locked by another session,
    past lock_timeout), the sync ends with the warehouse's error, not the source's, raw keeps its
    rows, and DuckDB's threads (one for the load) are put back."""
    source_url = plain(fresh_pg_database)
    with psycopg.connect(source_url, autocommit=True) as src:
        src.execute("CREATE TABLE items (id bigint, body text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 10) g")  # no key: reloaded in full each sync
    assert sync(tmp_path, source_url, warehouse_url).rows == 10
    with psycopg.connect(source_url, autocommit=True) as src:
        src.execute("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(11, 200000) g")
    name = make_url(warehouse_url).database
    with psycopg.connect(warehouse_url, autocommit=True) as wh:
        wh.execute(f'ALTER DATABASE "{name}" SET lock_timeout = \'1s\'')
        with wh.transaction():
            wh.execute("LOCK TABLE raw_app.items IN ACCESS EXCLUSIVE MODE")
            threads: list[str] = []
            with pytest.raises(HeadwaterError) as failed:
                sync(tmp_path, source_url, warehouse_url, threads=threads)
        assert wh.execute("SELECT count(*) FROM raw_app.items").fetchone() == (10,)
    assert "warehouse" in failed.value.what and "lock timeout" in (failed.value.why or "")
    assert threads[0] == threads[1], threads  # (the load ran on 1: on a machine of 2 cores or more, this fails if not put back)


def test_a_source_that_fails_mid_load_is_the_sources_error_as_the_reader_raised_it(fresh_pg_database: str, warehouse_url: str, tmp_path: Path) -> None:
    """The reader's error reaches the writing connection only as text through Arrow's stream; it is
    raised again as the reader raised it, so the source's failure (here: its statement_timeout
    cancels the read) is the source's, and transient, and raw keeps its rows."""
    source_url = plain(fresh_pg_database)
    with psycopg.connect(source_url, autocommit=True) as src:
        src.execute("CREATE TABLE items (id bigint, body text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 10) g")  # no key: reloaded in full
        assert sync(tmp_path, source_url, warehouse_url).rows == 10
        src.execute("INSERT INTO items SELECT g, repeat(md5(g::text), 8) FROM generate_series(11, 600000) g")
        src.execute(f'ALTER DATABASE "{make_url(source_url).database}" SET statement_timeout = \'300ms\'')
    with pytest.raises(HeadwaterError) as failed:
        sync(tmp_path, source_url, warehouse_url)
    assert "Source 'app'" in failed.value.what and "arrow" not in str(failed.value.why)
    assert failed.value.transient, (failed.value.what, failed.value.why)
    with psycopg.connect(warehouse_url) as wh:
        assert wh.execute("SELECT count(*) FROM raw_app.items").fetchone() == (10,)
