"""The MySQL/MariaDB source against a real MariaDB server (tests/mysql.py): types, modes, deletes,
schema drift, bad input, a read-only user, and convergence after SIGKILLs."""

from __future__ import annotations

import datetime as dt
import json
import random
import struct
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sync_harness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warehouses import Target, kinds_without_bigquery

from headwater.config import LoadedProject, load_project
from headwater.errors import ConfigError, HeadwaterError, NotFound, TransientFailure
from headwater.sources import open_source
from headwater.sources.mysql import MySQLSource
from headwater.sync import TableStats, sync_source
from headwater.sync.state import load_state
from headwater.warehouse import Warehouse, connect, open_warehouse

pytestmark = pytest.mark.mysql
UTC = dt.UTC


class Db:
    """One test's database on the session's server, written through pymysql."""

    def __init__(self, server: Any, name: str) -> None:
        self.server, self.name = server, name
        self.con = server.connect(name, init_command="SET time_zone = '+00:00'")

    def url(self, user: str | None = None, password: str | None = None, query: str = "") -> str:
        base = self.server.url(self.name) if user is None else self.server.url(self.name, user, password)
        return base + query

    def run(self, *statements: str) -> None:
        with self.con.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        with self.con.cursor() as cur:
            cur.executemany(statement, rows)

    def rows(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self.con.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def user(self, name: str, password: str, grants: list[str]) -> None:
        with self.con.cursor() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", [name, password])
        self.run(*(f"GRANT {g} TO '{name}'@'%'" for g in grants))


@pytest.fixture
def db(mysql_server: Any, fresh_mysql_database: str) -> Any:
    database = Db(mysql_server, fresh_mysql_database)
    yield database
    database.con.close()


def project(root: Path, url: str, body: str = "", warehouse: Target | None = None) -> LoadedProject:
    """A project with one MySQL source ``app`` (its URL from the environment, as users write it), on
    DuckDB or on the matrix's ``warehouse`` (tests/warehouses.py)."""
    root.mkdir(parents=True, exist_ok=True)
    source = "app:\n  type: mysql\n  url: ${MYSQL_URL}\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ")
    (root / "headwater.yml").write_text("name: mysql_test\nsources:\n" + textwrap.indent(source, "  ") + "\n")
    loaded = load_project(root, env={"MYSQL_URL": url})
    return warehouse.apply(loaded, env={"MYSQL_URL": url}) if warehouse is not None else loaded


def sync(p: LoadedProject, *, tables: list[str] | None = None, full_refresh: bool = False) -> dict[str, TableStats]:
    if p.config.warehouse.type != "duckdb":  # through the engine, as a run's sync step writes it
        stats = Target(p.config.warehouse.type).sync(p.root, "app", p.config.sources["app"], settings=p.config.warehouse, tables=tables, full_refresh=full_refresh)
        return {s.table: s for s in stats}
    con = Warehouse(p.root, p.config.warehouse).connect_build()
    try:
        stats = sync_source(con, open_source("app", p.config.sources["app"], p.root), tables=tables, full_refresh=full_refresh)
    finally:
        con.close()
    return {s.table: s for s in stats}


def raw(p: LoadedProject, sql: str) -> list[tuple[Any, ...]]:
    if p.config.warehouse.type == "bigquery":  # what BigQuery holds, not the local mirror (tests/warehouses.py)
        return Target("bigquery").query(p.root, sql, settings=p.config.warehouse)
    con = open_warehouse(p.root, p.config.warehouse).connect_build()
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def raw_table(p: LoadedProject, table: str, columns: str = "*", order: str = "id") -> list[tuple[Any, ...]]:
    return raw(p, f'SELECT {columns} FROM raw_app."{table}" ORDER BY {order}')


def state(p: LoadedProject, table: str) -> dict[str, Any]:
    if p.config.warehouse.type == "bigquery":  # the mirror's, once BigQuery's token is asserted to agree
        [(text,)] = Target("bigquery").query(p.root, "SELECT state FROM _headwater.sync_state WHERE source = 'app' AND table_name = ?", [table], settings=p.config.warehouse)
        return dict(json.loads(text))
    con = open_warehouse(p.root, p.config.warehouse).connect_build()
    try:
        found = load_state(con, "app", table)
    finally:
        con.close()
    assert found is not None
    return found


# --- types -----------------------------------------------------------------------------------------

TYPES_TABLE = """
CREATE TABLE types (
  id INT PRIMARY KEY,
  d65 DECIMAL(65,30), d10 DECIMAL(10,2), d38 DECIMAL(38,10),
  ub BIGINT UNSIGNED, ui INT UNSIGNED, us SMALLINT UNSIGNED, ut TINYINT UNSIGNED, um MEDIUMINT UNSIGNED,
  bi BIGINT, mi MEDIUMINT, si SMALLINT, ti TINYINT,
  e ENUM('a','b','c d'), s SET('x','y','z'),
  b1 BIT(1), b8 BIT(8), b64 BIT(64), y YEAR, j JSON, flag TINYINT(1),
  dt DATETIME, dt6 DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, da DATE, tm TIME, tm3 TIME(3),
  bin BINARY(4), vb VARBINARY(10), bl BLOB, tx TEXT, vc VARCHAR(20) COLLATE utf8mb4_bin, l1 VARCHAR(20) CHARACTER SET latin1, ch CHAR(5),
  fl FLOAT, db DOUBLE, uu UUID, ip INET6,
  g INT AS (id * 2) VIRTUAL, gs VARCHAR(30) AS (CONCAT('g', id)) STORED
)"""
TYPES_COLUMNS = "id, d65, d10, d38, ub, ui, us, ut, um, bi, mi, si, ti, e, s, b1, b8, b64, y, j, flag, dt, dt6, ts, da, tm, tm3, bin, vb, bl, tx, vc, l1, ch, fl, db, uu, ip"
TYPES_ROWS = [
    (
        1, "12345678901234567890123456789012345.123456789012345678901234567890", "12345678.91", "1234567890123456789012345678.0123456789",
        18446744073709551615, 4294967295, 65535, 255, 16777215, -9223372036854775808, -8388608, -32768, -128,
        "c d", "x,z", 1, 0xAA, 0xFFFFFFFFFFFFFFFF, 2155, '{"a": [1, 2.5, "x"], "b": {"c": null}}', 1,
        "9999-12-31 23:59:59", "2024-03-10 02:30:00.123456", "2038-01-19 03:14:07.999999", "1000-01-01", "838:59:59", "-12:34:56.789",
        b"\x00\x01\x02\x03", b"\xff\x00", b"\xde\xad\xbe\xef" * 100, "héllo ☃ 😀 'quoted' \\ back", "Ab😀", "Größe", "ab",
        1.5, 2.25, "123e4567-e89b-12d3-a456-426614174000", "2001:db8::1",
    ),
    (
        2, "-0.000000000000000000000000000001", "-0.01", "0", 0, 0, 0, 0, 0, 9223372036854775807, 8388607, 32767, 127,
        "a", "", 0, 0, 0, 1901, "[]", 0,
        "1000-01-01 00:00:00", "1970-01-01 00:00:00.000001", "1970-01-01 00:00:01", "9999-12-31", "-838:59:59", "00:00:00",
        b"\x00\x00\x00\x00", b"", b"", "", "", "", "",
        -3.4e38, -1.7976931348623157e308, "00000000-0000-0000-0000-000000000000", "::",
    ),
    (3, *([None] * 37)),
]  # fmt: skip
# Values that are not dates: stored by a server whose sql_mode allows them, read as NULL.
ZERO_DATES = (
    "INSERT INTO types (id, dt, dt6, ts, da) VALUES (4, '0000-00-00 00:00:00', '2024-00-10 10:00:00', '0000-00-00 00:00:00', '2024-02-00'), (5, NULL, '2023-02-30 01:02:03', NULL, '2024-02-31')"
)


def expected(column: str, value: Any) -> Any:
    """A value as pymysql reads it from the source, mapped as docs/sync.md says raw holds it."""
    if value is None:
        return None
    if column in ("dt", "dt6", "da") and isinstance(value, str):  # '0000-00-00' and friends: pymysql gives up and returns text
        return None
    if column == "ts":
        return None if isinstance(value, str) else value.replace(tzinfo=UTC)
    if column == "d65":
        return Decimal(value)
    if column in ("b1", "flag"):
        return bool(int.from_bytes(value, "big") if isinstance(value, bytes) else value)
    if column in ("b8", "b64"):
        return int.from_bytes(value, "big")
    if column == "j":
        return json.loads(value)
    if column == "fl":
        return struct.unpack("f", struct.pack("f", value))[0]
    return value


def comparable(column: str, value: Any) -> Any:
    """A raw value in the form `expected` gives."""
    if value is None:
        return None
    if column == "d65":
        return Decimal(value)
    if column == "j":
        return json.loads(value)
    if column == "ts":
        return value.astimezone(UTC)
    return value


def assert_same_rows(p: LoadedProject, db: Db, table: str, columns: str) -> None:
    names = [c.strip() for c in columns.split(",")]
    source = db.rows(f"SELECT {columns} FROM `{table}` ORDER BY id")
    synced = raw_table(p, table, columns)
    assert len(synced) == len(source)
    for src, got in zip(source, synced, strict=True):
        for name, a, b in zip(names, src, got, strict=True):
            assert comparable(name, b) == expected(name, a), f"{table}.{name} of row {src[0]}: raw has {b!r}, the source {a!r}"


def test_every_type_round_trips_with_its_documented_mapping(tmp_path: Path, db: Db) -> None:
    db.run(TYPES_TABLE, "CREATE VIEW types_view AS SELECT id, e, d65, ts FROM types")
    db.many(f"INSERT INTO types ({TYPES_COLUMNS}) VALUES ({', '.join(['%s'] * 38)})", TYPES_ROWS)
    db.run("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'", ZERO_DATES, "SET SESSION sql_mode = DEFAULT")
    p = project(tmp_path / "p", db.url())
    stats = sync(p)
    assert set(stats) == {"types", "types_view"}
    assert stats["types"].rows == 5 and stats["types_view"].mode == "full"

    described = dict(raw(p, "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'types'"))
    assert described["d65"] == "VARCHAR" and described["d38"] == "DECIMAL(38,10)" and described["ub"] == "UBIGINT"
    assert described["b1"] == "BOOLEAN" and described["b64"] == "UBIGINT" and described["flag"] == "BOOLEAN"
    assert described["tm"] == "INTERVAL" and described["j"] == "JSON" and described["y"] == "INTEGER"
    assert described["ts"] == "TIMESTAMP WITH TIME ZONE" and described["dt"] == "TIMESTAMP"

    assert_same_rows(p, db, "types", TYPES_COLUMNS + ", g, gs")
    assert_same_rows(p, db, "types_view", "id, e, d65, ts")
    assert raw_table(p, "types", "dt, dt6, ts, da", order="id")[3:] == [(None, None, None, None), (None, None, None, None)]

    # The same values through an incremental read (a WHERE on the cursor rather than a full read).
    db.run("ALTER TABLE types ADD COLUMN changed DATETIME(6) NOT NULL DEFAULT '2020-01-01 00:00:00'", "UPDATE types SET changed = '2020-01-03' WHERE id = 5")
    p2 = project(tmp_path / "p2", db.url(), "overrides:\n  types: {cursor: [changed]}")
    sync(p2, tables=["types"])
    db.run("UPDATE types SET changed = '2020-01-04 00:00:00', tx = 'changed' WHERE id IN (1, 2)")
    stats = sync(p2, tables=["types"])
    assert stats["types"].mode == "incremental" and stats["types"].rows_read == 3  # ids 1 and 2, and 5 again (the look-back)
    assert_same_rows(p2, db, "types", TYPES_COLUMNS + ", g, gs")


def test_char_n_arrives_as_the_server_returns_it(tmp_path: Path, db: Db, mysql_server: Any) -> None:
    """MySQL removes CHAR(n)'s trailing spaces when it returns a value (every client sees 'ab'), unless
    the server's sql_mode has PAD_CHAR_TO_FULL_LENGTH (every client sees 'ab   '): raw follows the server."""
    db.run("CREATE TABLE padded (id INT PRIMARY KEY, c CHAR(5), v VARCHAR(5))", "INSERT INTO padded VALUES (1, 'ab  ', 'ab  '), (2, '', ''), (3, NULL, NULL)")
    p = project(tmp_path / "p", db.url())
    sync(p)
    assert raw_table(p, "padded", "id, c, v") == db.rows("SELECT id, c, v FROM padded ORDER BY id") == [(1, "ab", "ab  "), (2, "", ""), (3, None, None)]
    (mode,) = db.rows("SELECT @@GLOBAL.sql_mode")[0]
    db.run(f"SET GLOBAL sql_mode = '{mode},PAD_CHAR_TO_FULL_LENGTH'")
    try:
        sync(p, full_refresh=True)
        with mysql_server.connect(db.name) as fresh, fresh.cursor() as cur:  # a client connecting now, as the sync's connection did
            cur.execute("SELECT id, c, v FROM padded ORDER BY id")
            padded = list(cur.fetchall())
    finally:
        db.run(f"SET GLOBAL sql_mode = '{mode}'")
    assert raw_table(p, "padded", "id, c, v") == padded == [(1, "ab   ", "ab  "), (2, "     ", ""), (3, None, None)]


@pytest.fixture(scope="module")
def property_db(mysql_server: Any) -> Any:
    """One database for all examples of the property test (a fresh one per example would be slow)."""
    name = mysql_server.create_database()
    database = Db(mysql_server, name)
    database.run("CREATE TABLE prop (id INT PRIMARY KEY, n DECIMAL(65,30), u BIGINT UNSIGNED, t VARCHAR(200) COLLATE utf8mb4_bin, moment DATETIME(6), raw VARBINARY(64))")
    yield database
    database.con.close()
    mysql_server.drop_database(name)


PROPERTY_ROOT: dict[str, Path] = {}

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)
decimals = st.decimals(min_value=Decimal("-1e34") + 1, max_value=Decimal("1e34") - 1, places=30, allow_nan=False, allow_infinity=False)
moments = st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
rows = st.lists(st.tuples(st.none() | decimals, st.none() | st.integers(0, 2**64 - 1), st.none() | text, st.none() | moments, st.none() | st.binary(max_size=64)), max_size=8)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows)
def test_values_round_trip_through_syncs(tmp_path_factory: pytest.TempPathFactory, property_db: Db, rows: list[tuple[Any, ...]]) -> None:
    """Random decimals, unsigned 64-bit numbers, any text, datetimes and bytes: each sync (by
    comparison) leaves raw equal to the source, whatever changed since the last example."""
    if "root" not in PROPERTY_ROOT:
        PROPERTY_ROOT["root"] = tmp_path_factory.mktemp("prop")
    p = project(PROPERTY_ROOT["root"], property_db.url())
    property_db.run("DELETE FROM prop")
    property_db.many("INSERT INTO prop VALUES (%s, %s, %s, %s, %s, %s)", [(i, *r) for i, r in enumerate(rows)])
    sync(p)
    source = property_db.rows("SELECT id, n, u, t, moment, raw FROM prop ORDER BY id")
    synced = raw_table(p, "prop", "id, n, u, t, moment, raw")
    assert [(r[0], None if r[1] is None else Decimal(r[1]), *r[2:]) for r in synced] == source


@settings(max_examples=200, deadline=None)
@given(value=text)
def test_text_literals_mean_what_they_say(property_db: Db, value: str) -> None:
    """Cursor values are written into SQL as literals: whatever the text, MySQL reads it back unchanged."""
    source = MySQLSource("app", _settings("mysql://u:p@127.0.0.1/db"), Path("."))
    assert property_db.rows(f"SELECT CAST({source.literal(value)} AS CHAR CHARACTER SET utf8mb4)")[0][0] == value


def _settings(url: str, **extra: Any) -> Any:
    from headwater.config.sources import MySQLSettings

    return MySQLSettings.model_validate({"type": "mysql", "url": url, **extra})


def test_odd_names_are_quoted_everywhere(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE `we``ird {t} 'name'` (`id` INT PRIMARY KEY, `va{l}ue's` VARCHAR(10), `updated_at` DATETIME(6) NOT NULL)")
    db.run("INSERT INTO `we``ird {t} 'name'` VALUES (1, 'a', '2024-01-01 00:00:00'), (2, 'b', '2024-01-03 00:00:00')")
    p = project(tmp_path, db.url())
    sync(p)
    db.run("UPDATE `we``ird {t} 'name'` SET `va{l}ue's` = 'c', updated_at = '2024-01-04 00:00:00' WHERE id = 2")
    stats = sync(p)["we`ird {t} 'name'"]
    assert stats.rows_read == 1
    assert raw(p, """SELECT id, "va{l}ue's" FROM raw_app."we`ird {t} 'name'" ORDER BY id""") == [(1, "a"), (2, "c")]


# --- incremental by cursor --------------------------------------------------------------------------

ITEMS = "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), qty INT, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6))"


def items_equal(p: LoadedProject, db: Db) -> None:
    source = db.rows("SELECT id, name, qty, updated_at FROM items ORDER BY id")
    synced = [(i, n, q, u.astimezone(UTC).replace(tzinfo=None)) for i, n, q, u in raw_table(p, "items", "id, name, qty, updated_at")]
    assert synced == source


def test_incremental_reads_changes_and_removes_deleted_rows(tmp_path: Path, db: Db, warehouse: Target) -> None:
    db.run(ITEMS)
    db.many("INSERT INTO items VALUES (%s, %s, %s, %s)", [(i, f"item {i}", i, dt.datetime(2020, 1, 1) + dt.timedelta(hours=i)) for i in range(1, 201)])
    p = project(tmp_path, db.url(), warehouse=warehouse)
    first = sync(p)["items"]
    assert (first.mode, first.rows) == ("full", 200)
    assert state(p, "items")["method"] == "cursor" and state(p, "items")["cursor"] == ["updated_at"]

    db.run("UPDATE items SET qty = -1 WHERE id IN (5, 6)", "INSERT INTO items (id, name, qty) VALUES (201, 'new', 1)", "DELETE FROM items WHERE id IN (7, 8, 9)")
    second = sync(p)["items"]
    assert second.mode == "incremental"
    assert second.rows_read == 5  # the two updates and the insert, and ids 199-200 again (inside the 1 h look-back)
    assert second.deleted == 3
    items_equal(p, db)

    unchanged = sync(p)["items"]
    assert unchanged.upserted == unchanged.rows_read  # only the look-back window (the last hour of changes) is read again
    assert unchanged.rows_read == 3 and unchanged.deleted == 0
    items_equal(p, db)


def test_streamed_reads_of_one_transaction_share_its_snapshot(tmp_path: Path, db: Db) -> None:
    """Full reads stream (memory does not grow with the table), and still on the DuckDB transaction's
    own connection: a row committed between two reads of one sync is seen by neither. (The mysql
    extension 1.5 streams on a connection of its own; this fails if it is upgraded to that.)"""
    db.run(ITEMS)
    db.many("INSERT INTO items VALUES (%s, %s, %s, %s)", [(i, f"item {i}", i, dt.datetime(2020, 1, 1)) for i in range(1, 101)])
    p = project(tmp_path, db.url())
    source = open_source("app", p.config.sources["app"], p.root)
    assert isinstance(source, MySQLSource)
    con = connect(":memory:")
    try:
        source.attach(con)
        info = source.discover(con, ["items"])["items"]
        con.execute("BEGIN TRANSACTION")
        read = f"SELECT count(*), max(id) FROM {source.relation(con, info)}"
        assert "stream_results=TRUE" in read
        assert con.execute(read).fetchone() == (100, 100)
        db.run("INSERT INTO items (id, name, qty) VALUES (101, 'late', 1)")  # commits (autocommit)
        assert con.execute(read).fetchone() == (100, 100)
        assert con.execute(f"SELECT * FROM {source.count_relation(info)}").fetchone() == (100,)
        con.execute("ROLLBACK")
        assert con.execute(read).fetchone() == (101, 101)  # a new transaction: a new snapshot
    finally:
        source.detach(con)
        con.close()


def test_same_timestamp_bulk_update_straddling_a_sync(tmp_path: Path, db: Db) -> None:
    """A bulk update commits 2,500 rows with one timestamp, a sync runs, then 2,500 more rows get the
    same timestamp: the look-back (>= the last cursor value) and the merge on the key pick them up."""
    db.run(ITEMS)
    db.many("INSERT INTO items VALUES (%s, %s, %s, '2024-01-01 00:00:00')", [(i, f"item {i}", 0) for i in range(1, 5001)])
    p = project(tmp_path, db.url())
    sync(p)
    db.run("UPDATE items SET qty = 1, updated_at = '2024-05-01 12:00:00' WHERE id <= 2500")
    sync(p)
    assert state(p, "items")["cursor_max"].startswith("2024-05-01 12:00:00")
    db.run("UPDATE items SET qty = 2, updated_at = '2024-05-01 12:00:00' WHERE id > 2500")
    stats = sync(p)["items"]
    assert stats.rows_read == 5000 and stats.rows == 5000
    items_equal(p, db)
    assert raw(p, "SELECT qty, count(*) FROM raw_app.items GROUP BY qty ORDER BY qty") == [(1, 2500), (2, 2500)]


def test_late_commit_inside_the_look_back_window(tmp_path: Path, db: Db, mysql_server: Any) -> None:
    """A transaction sets updated_at, a later one commits first and a sync sees it; the first commits
    after that sync. Its row is older than the cursor, but inside the 1 h look-back: the next sync reads it."""
    db.run(ITEMS)
    db.many("INSERT INTO items VALUES (%s, %s, 0, '2024-01-01 00:00:00')", [(i, f"item {i}") for i in range(1, 11)])
    p = project(tmp_path, db.url())
    sync(p)
    slow = mysql_server.connect(db.name, autocommit=False, init_command="SET time_zone = '+00:00'")
    try:
        with slow.cursor() as cur:
            cur.execute("UPDATE items SET name = 'late', updated_at = '2024-06-01 11:30:00' WHERE id = 3")
        db.run("UPDATE items SET name = 'early', updated_at = '2024-06-01 12:00:00' WHERE id = 4")
        sync(p)
        assert raw(p, "SELECT id, name FROM raw_app.items WHERE id IN (3, 4) ORDER BY id") == [(3, "item 3"), (4, "early")]
        assert state(p, "items")["cursor_max"].startswith("2024-06-01 12:00:00")
        slow.commit()
    finally:
        slow.close()
    caught = sync(p)["items"]
    assert caught.rows_read == 2  # id 3 (30 minutes behind the cursor) and id 4 again
    items_equal(p, db)


def test_tombstones_keep_deleted_rows(tmp_path: Path, db: Db) -> None:
    db.run(ITEMS)
    db.many("INSERT INTO items VALUES (%s, %s, 0, '2024-01-01 00:00:00')", [(i, f"item {i}") for i in range(1, 6)])
    p = project(tmp_path, db.url(), "deletes: tombstone")
    sync(p)
    db.run("DELETE FROM items WHERE id = 2")
    assert sync(p)["items"].deleted == 1
    assert raw(p, "SELECT id FROM raw_app.items WHERE _headwater_deleted_at IS NOT NULL") == [(2,)]
    assert raw(p, "SELECT count(*) FROM raw_app.items")[0][0] == 5
    db.run("DELETE FROM items WHERE id = 3")
    assert sync(p)["items"].deleted == 1  # the earlier tombstone is not counted again
    assert raw(p, "SELECT id FROM raw_app.items WHERE _headwater_deleted_at IS NOT NULL ORDER BY id") == [(2,), (3,)]


def test_datetime_in_a_declared_time_zone_becomes_an_instant(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE visits (id INT PRIMARY KEY, seen DATETIME, updated_at DATETIME(6) NOT NULL)")
    db.run("INSERT INTO visits VALUES (1, '2024-07-01 12:00:00', '2024-07-01 12:00:00'), (2, '2024-01-15 08:00:00', '2024-07-01 12:00:00')")
    p = project(tmp_path, db.url(), "timezone: Europe/Berlin")
    sync(p)
    assert [(i, a.astimezone(UTC)) for i, a in raw_table(p, "visits", "id, seen")] == [
        (1, dt.datetime(2024, 7, 1, 10, 0, tzinfo=UTC)),  # summer time: UTC+2
        (2, dt.datetime(2024, 1, 15, 7, 0, tzinfo=UTC)),  # winter time: UTC+1
    ]
    # The cursor is compared in the source's local time: a row 40 minutes after the last value is read; one
    # 2 hours before it, beyond the look-back, is not (docs/sync.md: what the cursor method cannot see),
    # but the full pass's count check finds it (and says so).
    db.run("INSERT INTO visits VALUES (3, '2024-07-01 12:40:00', '2024-07-01 12:40:00'), (4, '2024-07-01 09:59:00', '2024-07-01 09:59:00')")
    stats = sync(p)["visits"]
    assert stats.rows_read == 4  # ids 1, 2 (inside the 1 h look-back) and 3 by the cursor; 4 by the count check
    assert [n for n in stats.notes if n.startswith("1 row was in the source but not in raw")], stats.notes
    assert [r[0] for r in raw_table(p, "visits", "id")] == [1, 2, 3, 4]


# --- without a cursor, append ----------------------------------------------------------------------


def test_table_without_cursor_syncs_by_comparison(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE plain (id INT PRIMARY KEY, a VARCHAR(10), b INT)")
    db.many("INSERT INTO plain VALUES (%s, %s, %s)", [(i, f"a{i}", i) for i in range(1, 1001)])
    p = project(tmp_path, db.url())
    assert sync(p)["plain"].rows == 1000
    assert state(p, "plain")["method"] == "compare"
    db.run("UPDATE plain SET b = -b WHERE id IN (10, 20)", "INSERT INTO plain VALUES (1001, 'new', 0)", "DELETE FROM plain WHERE id = 30")
    stats = sync(p)["plain"]
    assert (stats.upserted, stats.deleted, stats.rows) == (3, 1, 1000)
    assert raw_table(p, "plain", "id, a, b") == db.rows("SELECT id, a, b FROM plain ORDER BY id")
    assert sync(p)["plain"].upserted == 0


HASHED = """CREATE TABLE hashed (id INT PRIMARY KEY, name VARCHAR(20), note TEXT, price DECIMAL(10,2), data VARBINARY(8),
  at DATETIME(6), doc JSON, flag TINYINT(1))"""


def hashed_rows(p: LoadedProject, db: Db) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    source = db.rows("SELECT id, name, note, price, data, at, flag FROM hashed ORDER BY id")
    synced = raw_table(p, "hashed", "id, name, note, price, data, \"at\", CAST(flag AS INTEGER)")
    return [(*r[:5], r[5], r[6]) for r in synced], [(*r[:4], r[4], r[5], r[6]) for r in source]


def test_comparison_reads_only_rows_whose_hash_changed(tmp_path: Path, db: Db, monkeypatch: pytest.MonkeyPatch, warehouse: Target) -> None:
    """Tables without a cursor: after one full comparison, syncs read each key with a hash of its
    row (computed by MySQL) and fetch only rows whose hash differs from the one stored with raw."""
    import headwater.sync.sql as engine

    db.run(HASHED)
    db.many(
        "INSERT INTO hashed VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [(i, f"n{i}", None if i % 3 else f"note {i}", i / 10, bytes([i % 256, 0]), dt.datetime(2024, 1, 1, 0, 0, 0, i), json.dumps({"i": i}), i % 2) for i in range(1, 301)],
    )
    p = project(tmp_path, db.url(), warehouse=warehouse)
    assert sync(p)["hashed"].mode == "full"
    first = sync(p)["hashed"]  # the first comparison reads every row, and stores their hashes
    assert (first.rows_read, first.upserted) == (300, 0)
    assert "read" not in state(p, "hashed")
    quiet = sync(p)["hashed"]
    assert (quiet.rows_read, quiet.upserted) == (0, 0)
    assert state(p, "hashed")["read"] == "row hashes of 300 keys, 0 changed"

    db.run(
        "UPDATE hashed SET name = 'changed' WHERE id = 5",
        "UPDATE hashed SET note = 'was null' WHERE id = 7",
        "UPDATE hashed SET data = X'0102' WHERE id = 8",
        "UPDATE hashed SET price = price + 0.01 WHERE id = 10",
        "UPDATE hashed SET at = '2024-01-01 00:00:00.000012' WHERE id = 11",  # a microsecond later
        "UPDATE hashed SET doc = JSON_OBJECT('i', -1) WHERE id = 13",
        "UPDATE hashed SET flag = 1 - flag WHERE id = 14",
        "UPDATE hashed SET name = 'a,b', note = 'c' WHERE id = 20",
        "INSERT INTO hashed (id, name) VALUES (1000, 'new')",
        "DELETE FROM hashed WHERE id = 9",
    )
    step = sync(p)["hashed"]
    assert (step.rows_read, step.upserted, step.deleted) == (9, 9, 1)
    synced, source = hashed_rows(p, db)
    assert synced == source
    db.run("UPDATE hashed SET name = 'a', note = 'b,c' WHERE id = 20")  # the same text when joined by commas
    assert sync(p)["hashed"].rows_read == 1
    assert raw(p, "SELECT name, note FROM raw_app.hashed WHERE id = 20") == [("a", "b,c")]
    db.run("UPDATE hashed SET name = \"a','b\", note = 'c' WHERE id = 20", "UPDATE hashed SET note = 'NULL' WHERE id = 16")  # 16's note was NULL
    assert sync(p)["hashed"].rows_read == 2
    assert raw(p, "SELECT id, name, note FROM raw_app.hashed WHERE id IN (16, 20) ORDER BY id") == [(16, "n16", "NULL"), (20, "a','b", "c")]

    monkeypatch.setattr(engine, "HASH_FETCH_MIN", 10)  # many changes: one full read is cheaper
    db.run("UPDATE hashed SET name = concat(name, '!') WHERE id <= 100")
    many = sync(p)["hashed"]
    assert (many.rows_read, many.upserted) == (300, 99)  # id 9 is gone
    assert "read" not in state(p, "hashed")
    assert sync(p)["hashed"].rows_read == 0  # the full read stored fresh hashes
    synced, source = hashed_rows(p, db)
    assert synced == source

    assert sync(p, full_refresh=True)["hashed"].mode == "full"
    assert sync(p)["hashed"].rows_read == 300  # a reload makes new raw rows: compared in full again


def test_comparison_by_hashes_with_a_composite_key_and_not_with_a_text_key(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE pairs (a INT, b BIGINT UNSIGNED, v VARCHAR(10), PRIMARY KEY (a, b))", "CREATE TABLE named (code VARCHAR(10) PRIMARY KEY, v INT)")
    db.many("INSERT INTO pairs VALUES (%s, %s, %s)", [(i % 7, i, f"v{i}") for i in range(1, 51)])
    db.many("INSERT INTO named VALUES (%s, %s)", [(f"c{i}", i) for i in range(1, 51)])
    p = project(tmp_path, db.url())
    for _ in range(3):
        stats = sync(p)
    assert stats["pairs"].rows_read == 0 and stats["named"].rows_read == 50  # text keys: every row, every time
    db.run("UPDATE pairs SET v = 'x' WHERE a = 3 AND b = 10", "DELETE FROM pairs WHERE a = 1 AND b = 1", "INSERT INTO pairs VALUES (3, 18446744073709551615, 'max')")
    stats = sync(p)
    assert (stats["pairs"].rows_read, stats["pairs"].deleted) == (2, 1)
    assert raw_table(p, "pairs", "a, b, v", order="a, b") == db.rows("SELECT a, b, v FROM pairs ORDER BY a, b")


def test_comparison_by_hashes_keeps_tombstones_and_brings_keys_back(tmp_path: Path, db: Db, warehouse: Target) -> None:
    db.run("CREATE TABLE kept (id INT PRIMARY KEY, v VARCHAR(10))")
    db.many("INSERT INTO kept VALUES (%s, %s)", [(i, f"v{i}") for i in range(1, 11)])
    p = project(tmp_path, db.url(), "deletes: tombstone", warehouse=warehouse)
    for _ in range(3):  # full load, first comparison (stores hashes), then by hashes
        sync(p)
    assert state(p, "kept")["read"].startswith("row hashes")
    db.run("DELETE FROM kept WHERE id = 2")
    assert sync(p)["kept"].deleted == 1
    assert sync(p)["kept"].deleted == 0  # not tombstoned twice
    assert raw(p, "SELECT id, v FROM raw_app.kept WHERE _headwater_deleted_at IS NOT NULL") == [(2, "v2")]
    db.run("INSERT INTO kept VALUES (2, 'back')")
    back = sync(p)["kept"]
    assert (back.rows_read, state(p, "kept")["read"]) == (1, "row hashes of 10 keys, 1 changed")
    assert raw(p, "SELECT id, v, _headwater_deleted_at FROM raw_app.kept WHERE id = 2") == [(2, "back", None)]
    assert raw(p, "SELECT count(*) FROM raw_app.kept WHERE _headwater_deleted_at IS NULL")[0][0] == 10


def test_append_mode_adds_rows_past_the_cursor_and_ignores_updates(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE events (id BIGINT AUTO_INCREMENT PRIMARY KEY, kind VARCHAR(10), at DATETIME)")
    db.many("INSERT INTO events (kind, at) VALUES (%s, '2024-01-01 00:00:00')", [("open",)] * 100)
    p = project(tmp_path, db.url(), "overrides:\n  events: {mode: append, cursor: [id]}")
    assert sync(p)["events"].rows == 100
    db.many("INSERT INTO events (kind, at) VALUES (%s, '2024-01-02 00:00:00')", [("click",)] * 50)
    db.run("UPDATE events SET kind = 'edited' WHERE id = 1")
    stats = sync(p)["events"]
    assert (stats.mode, stats.upserted, stats.rows) == ("append", 50, 150)
    assert raw(p, "SELECT kind FROM raw_app.events WHERE id = 1") == [("open",)]
    assert raw(p, "SELECT count(*) FROM raw_app.events WHERE kind = 'click'")[0][0] == 50


# --- schema drift ----------------------------------------------------------------------------------


def test_schema_drift(tmp_path: Path, db: Db, warehouse: Target) -> None:
    db.run("CREATE TABLE drift (id INT PRIMARY KEY, n INT, s VARCHAR(10), gone VARCHAR(5), d DATE)")
    db.run("INSERT INTO drift VALUES (1, 1, 'short', 'old', '2024-01-02'), (2, 2, 'x', 'old', '2024-01-03')")
    p = project(tmp_path, db.url(), warehouse=warehouse)
    sync(p)

    db.run("ALTER TABLE drift ADD COLUMN extra VARCHAR(5) NOT NULL DEFAULT 'x'")
    stats = sync(p)["drift"]
    assert any(c.startswith("added column extra") for c in stats.schema_changes)
    assert raw_table(p, "drift", "id, extra") == [(1, "x"), (2, "x")]

    db.run("ALTER TABLE drift MODIFY n BIGINT", "UPDATE drift SET n = 1099511627776 WHERE id = 1")
    stats = sync(p)["drift"]
    assert "widened column n from INTEGER to BIGINT" in stats.schema_changes
    assert raw_table(p, "drift", "n") == [(1099511627776,), (2,)]

    db.run("ALTER TABLE drift MODIFY s VARCHAR(50)", "UPDATE drift SET s = 'a value longer than ten characters' WHERE id = 2")
    stats = sync(p)["drift"]
    assert stats.schema_changes == []
    assert raw_table(p, "drift", "s")[1] == ("a value longer than ten characters",)

    db.run("ALTER TABLE drift DROP COLUMN gone", "UPDATE drift SET n = 3 WHERE id = 2")
    stats = sync(p)["drift"]
    assert any("gone" in note and "no longer in the source" in note for note in stats.notes)
    assert raw_table(p, "drift", "id, gone") == [(1, "old"), (2, None)]  # kept; NULL for the row synced since

    before = raw_table(p, "drift")
    db.run("ALTER TABLE drift MODIFY d INT")  # '2024-01-02' becomes 20240102: DATE cannot hold that
    with pytest.raises(HeadwaterError) as caught:
        sync(p)
    assert "column drift.d changed type from DATE to INTEGER" in str(caught.value)
    assert "--full-refresh" in (caught.value.fix or "")
    assert raw_table(p, "drift") == before

    stats = sync(p, full_refresh=True)["drift"]
    assert stats.mode == "full" and raw_table(p, "drift", "d") == [(20240102,), (20240103,)]


# --- bad input -------------------------------------------------------------------------------------


def test_bad_connections_give_clear_errors_without_the_password(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE plain (id INT PRIMARY KEY, a INT)", "INSERT INTO plain VALUES (1, 1)")
    good = project(tmp_path / "good", db.url())
    sync(good)
    secret = 's3cr"et pass\\word'
    db.user("victim", secret, [f"SELECT ON `{db.name}`.*"])

    wrong = project(tmp_path / "good", db.url("victim", "Wrong-Pw-1234"))  # the same warehouse as `good`
    with pytest.raises(HeadwaterError) as caught:
        sync(wrong)
    assert "refused the user or password" in caught.value.render()
    assert "Wrong-Pw-1234" not in caught.value.render() + str(caught.value) + (caught.value.why or "")
    assert raw_table(wrong, "plain", "id, a") == [(1, 1)]  # nothing already synced was lost

    right = project(tmp_path / "right", db.url("victim", _quote(secret)))
    assert sync(right)["plain"].rows == 1  # a password with a quote, a space and a backslash

    closed = _closed_port()
    with pytest.raises(TransientFailure) as unreachable:
        sync(project(tmp_path / "closed", f"mysql://victim:{_quote(secret)}@127.0.0.1:{closed}/{db.name}"))
    assert f"127.0.0.1:{closed}" in unreachable.value.render() and "s3cr" not in unreachable.value.render()

    with pytest.raises(HeadwaterError) as no_db:
        sync(project(tmp_path / "nodb", db.url().rsplit("/", 1)[0] + "/no_such_database"))
    assert "does not exist" in no_db.value.what and "database name" in (no_db.value.fix or "")


def test_cli_exit_code_and_logs_keep_the_password_out(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE plain (id INT PRIMARY KEY)")
    root = tmp_path / "cli"
    project(root, "unused")
    env = {"MYSQL_URL": db.url("nobody", "Very-Secret-Pw-42")}
    done = sync_harness.run_sync(root, "app", env=env)
    assert done.returncode != 0
    assert "refused the user or password" in done.stdout + done.stderr
    assert "Very-Secret-Pw-42" not in done.stdout + done.stderr
    for path in (root / ".headwater").rglob("*"):
        if path.is_file():
            assert b"Very-Secret-Pw-42" not in path.read_bytes(), f"the password is in {path}"


def test_missing_table_no_key_and_missing_grant(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE items (id INT PRIMARY KEY, a INT)", "CREATE TABLE nokey (a INT, b INT)", "CREATE TABLE secret (id INT PRIMARY KEY)")
    with pytest.raises(NotFound) as missing:
        sync(project(tmp_path / "a", db.url(), "tables: [items, nope]"))
    assert "nope" in missing.value.what and "items" in (missing.value.why or "")

    with pytest.raises(ConfigError) as nokey:
        sync(project(tmp_path / "b", db.url(), "tables: [nokey]\noverrides:\n  nokey: {mode: incremental}"))
    assert "no primary key" in nokey.value.what and "primary_key" in (nokey.value.fix or "")

    db.user("limited", "limited-pw", [f"SELECT ON `{db.name}`.`items`"])
    with pytest.raises(NotFound) as hidden:
        sync(project(tmp_path / "c", db.url("limited", "limited-pw"), "tables: [items, secret]"))
    assert "secret" in hidden.value.what and "grant SELECT" in (hidden.value.fix or "")
    assert set(sync(project(tmp_path / "d", db.url("limited", "limited-pw")))) == {"items"}  # '*' means what the user can read


def test_tinyint1_holding_other_numbers_is_an_error_with_a_way_out(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE flags (id INT PRIMARY KEY, f TINYINT(1))", "INSERT INTO flags VALUES (1, 1), (2, 0)")
    p = project(tmp_path / "p", db.url())
    sync(p)
    db.run("INSERT INTO flags VALUES (3, 2)")
    with pytest.raises(HeadwaterError) as caught:
        sync(p)
    assert "flags.f holds 2" in caught.value.what and "tinyint1_as_boolean=false" in (caught.value.fix or "")
    assert raw_table(p, "flags", "id, f") == [(1, True), (2, False)]
    numbers = project(tmp_path / "p", db.url(query="?tinyint1_as_boolean=false"))
    sync(numbers, full_refresh=True)
    assert raw_table(numbers, "flags", "id, f") == [(1, 1), (2, 0), (3, 2)]


def test_url_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not a MySQL URL"):
        MySQLSource("app", _settings("postgresql://u:p@h/db"), Path("."))
    with pytest.raises(ConfigError, match="names no database"):
        MySQLSource("app", _settings("mysql://u:p@h:3306"), Path("."))
    with pytest.raises(ConfigError, match="unknown option 'sslmode'") as caught:
        MySQLSource("app", _settings("mysql://u:p@h:3306/db?sslmode=require"), Path("."))
    assert "ssl_mode" in (caught.value.fix or "")


def test_a_read_only_user_can_sync_everything(tmp_path: Path, db: Db) -> None:
    db.run(TYPES_TABLE, ITEMS, "CREATE VIEW types_view AS SELECT id, e FROM types")
    db.many(f"INSERT INTO types ({TYPES_COLUMNS}) VALUES ({', '.join(['%s'] * 38)})", TYPES_ROWS)
    db.many("INSERT INTO items (id, name, qty) VALUES (%s, %s, 1)", [(i, f"i{i}") for i in range(1, 51)])
    db.user("reader", "reader-pw", [f"SELECT ON `{db.name}`.*"])
    p = project(tmp_path, db.url("reader", "reader-pw"))
    assert {t: s.rows for t, s in sync(p).items()} == {"items": 50, "types": 3, "types_view": 3}
    db.run("UPDATE items SET qty = 2 WHERE id = 1", "DELETE FROM items WHERE id = 2")
    assert sync(p)["items"].deleted == 1
    items_equal(p, db)
    assert_same_rows(p, db, "types", TYPES_COLUMNS)


# --- exactly once under SIGKILL ------------------------------------------------------------------


@kinds_without_bigquery("the MySQL source's side of a kill; BigQuery's side of one is tested by test_sync_postgres's kill test on every kind")
def test_killed_syncs_converge_to_the_source(tmp_path: Path, db: Db, mysql_server: Any, warehouse: Target) -> None:
    """Syncs SIGKILLed at random moments while a writer updates, inserts and deletes; one final sync
    then leaves raw equal to the source, row for row, for a cursor table and a compared one."""
    db.run(ITEMS, "CREATE TABLE plain (id INT PRIMARY KEY, a VARCHAR(20), b INT)")
    db.many("INSERT INTO items (id, name, qty, updated_at) VALUES (%s, %s, 0, '2024-01-01')", [(i, f"item {i}") for i in range(1, 60001)])
    db.many("INSERT INTO plain VALUES (%s, %s, 0)", [(i, f"a{i}") for i in range(1, 30001)])
    root = tmp_path / "killed"
    project(root, "unused", warehouse=warehouse)
    env = {"MYSQL_URL": db.url()}
    started = sync_harness.run_sync(root, "app", env=env)
    assert started.returncode == 0, started.stdout + started.stderr

    writer_con = mysql_server.connect(db.name)
    next_id = [60001]

    def change(rng: random.Random) -> None:
        with writer_con.cursor() as cur:
            roll = rng.random()
            if roll < 0.5:
                cur.execute("UPDATE items SET qty = qty + 1 WHERE id IN (%s, %s, %s)", [rng.randint(1, next_id[0]) for _ in range(3)])
                cur.execute("UPDATE plain SET b = b + 1 WHERE id = %s", [rng.randint(1, 30000)])
            elif roll < 0.8:
                cur.execute("INSERT INTO items (id, name, qty) VALUES (%s, 'new', 0)", [next_id[0]])
                cur.execute("INSERT IGNORE INTO plain VALUES (%s, 'new', 0)", [30000 + next_id[0]])
                next_id[0] += 1
            else:
                cur.execute("DELETE FROM items WHERE id = %s", [rng.randint(1, next_id[0])])
                cur.execute("DELETE FROM plain WHERE id = %s", [rng.randint(1, 30000)])

    seed = sync_harness.random_seed(default=20240601)
    with sync_harness.telling_the_seed(seed):
        with sync_harness.Writer(change, seed=seed) as writer:
            # Kills spread over one whole sync (its process start included), measured under the writer's load.
            began = time.monotonic()
            assert sync_harness.run_sync(root, "app", env=env).returncode == 0
            duration = time.monotonic() - began
            kills = sync_harness.thread_rng(seed, "kills")
            outcomes = sync_harness.kill_at_random_moments(root, "app", rounds=8, rng=kills, min_delay=0.3 * duration, max_delay=1.1 * duration, env=env)
        writer_con.close()
        assert writer.steps > 50
        assert sum(o.killed for o in outcomes) >= 3

        final = sync_harness.run_sync(root, "app", env=env)
        assert final.returncode == 0, final.stdout + final.stderr
        p = load_project(root, env=env)
        items_equal(p, db)
        assert raw_table(p, "plain", "id, a, b") == db.rows("SELECT id, a, b FROM plain ORDER BY id")


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _closed_port() -> int:
    from loopback import free_port

    return free_port()  # nothing listens there


# --- names -----------------------------------------------------------------------------------------

ODD_TABLES = ["my.table", "it's", 'quo"te', "with space", "ünïcødé", "select", "Mixed-Case"]


@pytest.mark.parametrize("database", ["sales-eu", "sales eu ü.v2"])
def test_any_database_and_table_name_mysql_allows_syncs_end_to_end(tmp_path: Path, mysql_server: Any, database: str) -> None:
    from urllib.parse import quote

    ident = "`" + database.replace("`", "``") + "`"
    admin = mysql_server.connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {ident} CHARACTER SET utf8mb4")
        db = Db(mysql_server, database)
        for n, table in enumerate(ODD_TABLES):
            t = "`" + table.replace("`", "``") + "`"
            db.run(f"CREATE TABLE {t} (id INT PRIMARY KEY, `order` VARCHAR(20), updated_at DATETIME(6) NOT NULL DEFAULT '2024-01-01')")
            db.many(f"INSERT INTO {t} (id, `order`) VALUES (%s, %s)", [(i, f"v{i}") for i in range(1, n + 3)])
        root = tmp_path / "cli"
        project(root, "unused")
        env = {"MYSQL_URL": mysql_server.url(quote(database)), "NO_COLOR": "1"}
        first = sync_harness.run_sync(root, "app", "--json", env=env)
        assert first.returncode == 0, first.stderr
        assert {t["table"]: t["rows"] for t in json.loads(first.stdout)["sources"]["app"]} == {t: n + 2 for n, t in enumerate(ODD_TABLES)}
        for table in ODD_TABLES:
            t = "`" + table.replace("`", "``") + "`"
            db.run(f"UPDATE {t} SET `order` = 'changed', updated_at = '2024-06-01' WHERE id = 1", f"DELETE FROM {t} WHERE id = 2")
        second = sync_harness.run_sync(root, "app", "--json", env=env)
        assert second.returncode == 0, second.stderr
        stats = {t["table"]: t for t in json.loads(second.stdout)["sources"]["app"]}
        assert all(s["mode"] == "incremental" and s["deleted"] == 1 for s in stats.values()), stats
        p = load_project(root, env=env)
        for table in ODD_TABLES:
            t = '"' + table.replace('"', '""') + '"'
            assert raw(p, f'SELECT id, "order" FROM raw_app.{t} ORDER BY id') == db.rows(f"SELECT id, `order` FROM `{table.replace('`', '``')}` ORDER BY id"), table
        db.con.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {ident}")
        admin.close()


# --- real data: rows behind the cursor, bad keys, bad tables -----------------------------------------


def test_rows_arriving_behind_the_cursor_are_found_by_the_count_check(tmp_path: Path, db: Db) -> None:
    """A restore or a bulk copy brings rows whose updated_at is older than the cursor: no read of
    changes sees them. The pass's count comparison does, and fetches them (with a note)."""
    db.run(ITEMS)
    db.many("INSERT INTO items VALUES (%s, %s, %s, %s)", [(i, f"item {i}", i, dt.datetime(2024, 1, 1)) for i in range(1, 101)])
    p = project(tmp_path, db.url())
    sync(p)
    db.many("INSERT INTO items VALUES (%s, %s, %s, %s)", [(i, "restored", 0, dt.datetime(2020, 1, 1)) for i in range(101, 108)])
    stats = sync(p)["items"]
    items_equal(p, db)
    assert stats.rows == 107 and any(n.startswith("7 rows were in the source but not in raw") for n in stats.notes), stats.notes
    assert sync(p)["items"].notes == []


def test_append_mode_says_when_raw_has_fewer_rows_than_the_source(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE events (id BIGINT PRIMARY KEY, kind VARCHAR(10))")
    db.many("INSERT INTO events VALUES (%s, 'open')", [(i,) for i in range(10, 20)])
    p = project(tmp_path, db.url(), "overrides:\n  events: {mode: append, cursor: [id]}")
    sync(p)
    db.many("INSERT INTO events VALUES (%s, 'late')", [(i,) for i in range(1, 4)])  # behind the cursor
    stats = sync(p)["events"]
    assert stats.rows == 13 and any(n.startswith("3 rows were in the source but not in raw") for n in stats.notes), stats.notes


def test_one_bad_table_does_not_stop_the_others_and_duplicate_keys_fail_it(tmp_path: Path, db: Db) -> None:
    db.run("CREATE TABLE a_good (id INT PRIMARY KEY)", "INSERT INTO a_good VALUES (1), (2)")
    db.run("CREATE TABLE m_dupes (k INT, v VARCHAR(5))", "INSERT INTO m_dupes VALUES (1, 'a'), (1, 'b'), (2, 'c')")
    db.run("CREATE TABLE z_good (id INT PRIMARY KEY)", "INSERT INTO z_good VALUES (1)")
    p = project(tmp_path, db.url(), "overrides:\n  m_dupes: {primary_key: [k]}")
    con = Warehouse(p.root, p.config.warehouse).connect_build()
    try:
        with pytest.raises(ConfigError) as failed:
            sync_source(con, open_source("app", p.config.sources["app"], p.root))
    finally:
        con.close()
    assert "m_dupes" in failed.value.what and "k = 1" in failed.value.what and "primary_key" in failed.value.fix
    assert {s.table: s.mode for s in failed.value.table_stats} == {"a_good": "full", "m_dupes": "failed", "z_good": "full"}
    assert raw_table(p, "z_good") == [(1, raw(p, "SELECT _headwater_synced_at FROM raw_app.z_good")[0][0])]

