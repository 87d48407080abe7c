"""A full load into a PostgreSQL warehouse reads the source on a second DuckDB connection, in the
table's own snapshot, and hands the rows over as Arrow batches while raw is written
(src/headwater/warehouse/postgres/load.py). Two things make that safe, and each is tested here
against real PostgreSQL:

- the rows crossing Arrow arrive as themselves: every type raw holds in PostgreSQL, written the new
  way, equals what DuckDB's own ``CREATE TABLE ... AS`` writes, value by value (property-based);
- the second connection sees exactly the snapshot of the table's transaction, whatever was
  committed since it began.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from headwater.config.sources import PostgresSettings
from headwater.sources.postgres import PostgresSource
from headwater.sqltext import literal
from headwater.warehouse import connect, require_extension
from headwater.warehouse.postgres.load import load_full_from

pytestmark = pytest.mark.postgres


def plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# column -> (DuckDB type, SQL literals of edge values). The types are those `PostgresRaw.stored_type`
# gives raw's columns, scalars and lists (PostgreSQL arrays), with the values that crossed wrongly
# while this was built: TIMETZ offsets (Arrow's time has none) and lists of booleans (DuckDB's
# lossless Arrow types).
SCALARS: dict[str, tuple[str, list[str]]] = {
    "b": ("BOOLEAN", ["true", "false"]),
    "i2": ("SMALLINT", ["-32768", "0", "32767"]),
    "i4": ("INTEGER", ["-2147483648", "7"]),
    "i8": ("BIGINT", ["-9223372036854775808", "9223372036854775807", "0"]),
    "f4": ("FLOAT", ["'nan'", "'-0.0'", "'inf'", "1.5e-40", "3.4028235e38"]),
    "f8": ("DOUBLE", ["'nan'", "'-0.0'", "'-inf'", "5e-324", "0.1"]),
    "n38": ("DECIMAL(38,0)", ["99999999999999999999999999999999999999", "-1", "0"]),
    "n12": ("DECIMAL(12,2)", ["-0.01", "9999999999.99"]),
    "s": ("VARCHAR", ["''", "'héllo'", "'NULL'", "'a,b{c}\"d\\\\e'", "' '"]),
    "bytes": ("BLOB", ["'\\x00\\xff'::BLOB", "''::BLOB", "'abc'::BLOB"]),
    "d": ("DATE", ["'infinity'", "'-infinity'", "'2024-02-29'", "make_date(-4712, 1, 1)"]),
    "t": ("TIME", ["'24:00:00'", "'00:00:00.000001'", "'12:34:56'"]),
    "tz": ("TIME WITH TIME ZONE", ["'23:59:59.999999+14:59'", "'00:00:00-15:59'", "'12:00:00+00'"]),
    "ts": ("TIMESTAMP", ["'infinity'", "'-infinity'", "'2020-01-01 00:00:00.000001'", "make_timestamp(-4712, 1, 1, 0, 0, 0)"]),
    "tstz": ("TIMESTAMP WITH TIME ZONE", ["'infinity'", "'2024-01-01 00:00:00+03'", "'1999-12-31 23:59:59.999999+00'"]),
    "iv": ("INTERVAL", ["'1 month -1 day 3 microseconds'", "'-178000000 years'", "'0 seconds'"]),
    "u": ("UUID", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"]),
    "j": ("JSON", ["'{\"a\": [1, 2.50, null]}'", "'null'", "'  [1,2] '", "'\"x\"'"]),
}
LISTED = ["b", "i8", "f8", "n12", "s", "d", "tz", "ts", "tstz", "iv", "u"]  # as lists too: <column>_l


def _value(column: str) -> st.SearchStrategy[str]:
    duck_type, values = SCALARS[column]
    return st.one_of(st.just("NULL"), st.sampled_from(values)).map(lambda v: f"CAST({v} AS {duck_type})" if v != "NULL" else "NULL")


def _list(column: str) -> st.SearchStrategy[str]:
    duck_type, values = SCALARS[column]
    element = st.one_of(st.just("NULL"), st.sampled_from(values)).map(lambda v: f"CAST({v} AS {duck_type})")
    return st.one_of(
        st.just("NULL"),
        st.lists(element, max_size=5).map(lambda items: f"CAST([{', '.join(items)}] AS {duck_type}[])"),
    )


ROW = st.fixed_dictionaries({**{c: _value(c) for c in SCALARS}, **{f"{c}_l": _list(c) for c in LISTED}})
COLUMNS = [(c, t) for c, (t, _) in SCALARS.items()] + [(f"{c}_l", f"{SCALARS[c][0]}[]") for c in LISTED]


@pytest.fixture
def warehouse(postgres_url: str) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """An in-memory DuckDB with a fresh PostgreSQL database attached as ``wh``, and that database's URL."""
    name = f"hw_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = plain(make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    con = connect(":memory:")
    require_extension(con, "postgres")
    parts = make_url(url)
    con.execute(f"ATTACH {literal(f'host={parts.host} port={parts.port} user={parts.username} dbname={name}')} AS wh (TYPE postgres)")
    con.execute("USE wh")  # as the warehouse's build connection: raw's names are schema.table
    yield con, url
    con.close()
    with psycopg.connect(plain(postgres_url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _text(url: str, table: str) -> tuple[list[tuple[str, str]], list[tuple[object, ...]]]:
    """The table's columns (PostgreSQL's types) and rows, each value as PostgreSQL writes it."""
    with psycopg.connect(url) as con:
        types = con.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum", [table]).fetchall()
        rows = con.execute(f"SELECT id, {', '.join(f'{c}::text' for c, _ in COLUMNS)} FROM {table} ORDER BY id").fetchall()
    return types, rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=12))
def test_rows_crossing_arrow_arrive_in_postgresql_as_duckdb_writes_them(warehouse: tuple[duckdb.DuckDBPyConnection, str], rows: list[dict[str, str]]) -> None:
    con, url = warehouse
    con.execute(f"CREATE OR REPLACE TABLE memory.main.src (id INTEGER, {', '.join(f'{c} {t}' for c, t in COLUMNS)})")
    values = ", ".join(f"({i}, {', '.join(row[c] for c, _ in COLUMNS)})" for i, row in enumerate(rows))
    con.execute(f"INSERT INTO memory.main.src VALUES {values}")
    con.execute("CREATE OR REPLACE TABLE wh.public.direct AS SELECT * FROM memory.main.src")  # DuckDB's own writer
    reader = con.cursor()
    try:
        con.execute("BEGIN TRANSACTION")
        written = load_full_from(con, reader, "public", "streamed", "SELECT * FROM memory.main.src")
        con.execute("COMMIT")
    finally:
        reader.close()
    assert written == len(rows)
    direct, streamed = _text(url, "direct"), _text(url, "streamed")
    assert streamed[0] == direct[0]
    differences = [
        f"row {d[0]}, {name}: DuckDB's writer {a!r}, streamed {b!r}"
        for d, s in zip(direct[1], streamed[1], strict=True)
        for name, a, b in zip(["id"] + [c for c, _ in COLUMNS], d, s, strict=True)
        if a != b
    ]
    assert differences == []
    assert len(streamed[1]) == len(rows)


def test_the_second_reader_sees_the_tables_snapshot_not_later_commits(fresh_pg_database: str, tmp_path: Path) -> None:
    """The snapshot the table's state records (its xmin) is the one the full load reads: rows
    committed after the table's transaction began are read by neither connection."""
    url = plain(fresh_pg_database)
    with psycopg.connect(url, autocommit=True) as src:
        src.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 5000)")  # ~20 pages
        source = PostgresSource("app", PostgresSettings(type="postgres", url=url, tables=["t"]), tmp_path)
        con = connect(":memory:")
        source.attach(con)
        try:
            con.execute("BEGIN TRANSACTION")
            assert source.query(con, "SELECT count(*) FROM t") == [(5000,)]
            src.execute("INSERT INTO t SELECT generate_series(5001, 6000); UPDATE t SET id = -id WHERE id <= 10")  # committed after the snapshot
            with source.snapshot_reader(con) as reader:
                assert reader is not None
                reader.execute("SET pg_pages_per_task = 1")  # DuckDB's parallel scan: a task a page, each in the reader's snapshot
                scanned = reader.execute(f"SELECT count(*), min(id), max(id) FROM {source.alias}.public.t").fetchall()
                queried = reader.execute(f"SELECT * FROM postgres_query({literal(source.alias)}, 'SELECT count(*), min(id), max(id) FROM t')").fetchall()
            assert scanned == [(5000, 1, 5000)] and queried == [(5000, 1, 5000)]
            assert source.query(con, "SELECT count(*) FROM t") == [(5000,)]  # and the table's transaction still does
            con.execute("COMMIT")
            assert source.query(con, "SELECT count(*), min(id) FROM t") == [(6000, -10)]  # a new transaction sees it
        finally:
            source.detach(con)
            con.close()
