"""What the sync asks of a PostgreSQL warehouse: counts of raw run in PostgreSQL (DuckDB's own count of
an attached table reads a NULL per row over the wire), and the sync sends the server no CHECKPOINT
(DuckDB's checkpoint of its default catalog is PostgreSQL's: a forced server-wide flush). The queries
are what DuckDB's postgres extension prints with ``pg_debug_show_queries``; the results are checked
against the source, with deletes kept as tombstones and removed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from headwater.config.model import PostgresWarehouse
from headwater.config.sources import PostgresSettings
from headwater.sources.postgres import PostgresSource
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


def sync(tmp_path: Path, source_url: str, warehouse_url: str, **settings: Any) -> TableStats:
    warehouse = open_warehouse(tmp_path, PostgresWarehouse(type="postgres", url=warehouse_url))
    config = PostgresSettings.model_validate({"type": "postgres", "url": source_url, "tables": ["items"], **settings})
    con = warehouse.connect_build()
    try:
        con.execute("SET pg_debug_show_queries = true")  # every query sent to PostgreSQL, on stderr
        (stats,) = warehouse.load_raw(con, PostgresSource("app", config, tmp_path), lambda _: None)
    finally:
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
        src.execute("UPDATE items SET name = 'changed', updated_at = now() WHERE id % 10 = 0")
        src.execute("INSERT INTO items SELECT g, 'new', now() FROM generate_series(2001, 2300) g")
        src.execute("DELETE FROM items WHERE id % 100 = 1 AND id <= 2000")
        changed = sync(tmp_path, source_url, warehouse_url, **settings)
        source = src.execute("SELECT id, name FROM items ORDER BY id").fetchall()
    queries = capfd.readouterr().err

    with psycopg.connect(warehouse_url) as wh:
        alive = wh.execute("SELECT id, name FROM raw_app.items WHERE " + ("_headwater_deleted_at IS NULL" if deletes == "tombstone" else "true") + " ORDER BY id").fetchall()
        stored = wh.execute("SELECT count(*) FROM raw_app.items").fetchone()
    assert alive == source
    assert (full.rows, full.rows_read) == (2000, 2000)
    assert changed.deleted == 20 and changed.rows_read == 500  # 200 updated + 300 inserted
    assert stored is not None and changed.rows == stored[0] == (2300 if deletes == "tombstone" else 2280)
    assert 'SELECT count(*) FROM "raw_app"."items"' in queries
    assert 'SELECT NULL FROM "raw_app"."items"' not in queries, "a count of raw read every row through DuckDB"
    assert not [line for line in queries.splitlines() if line.strip().rstrip(";").upper() == "CHECKPOINT"], "the sync checkpointed the PostgreSQL server"
