"""The SQL sync engine against a real PostgreSQL server: exactness, types, drift, deletes, bad input,
a read-only role, and syncs killed at random while writers make late commits."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from cli_process import SCRIPT, cli_env
from sqlalchemy.engine import make_url
from sync_harness import random_seed, telling_the_seed, thread_rng
from warehouses import Target, kinds_without_bigquery, matrix_target, on_both_warehouses

from headwater.config.sources import PostgresSettings
from headwater.errors import ConfigError, HeadwaterError, NotFound, TransientFailure
from headwater.sources.postgres import PostgresSource
from headwater.sync import sync_source
from headwater.warehouse import connect

pytestmark = pytest.mark.postgres


def libpq(url: str) -> str:
    u = make_url(url)
    return f"host={u.host} port={u.port} user={u.username} dbname={u.database}" + (f" password={u.password}" if u.password else "")


def plain_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Harness:
    """A PostgreSQL source database (``url``) synced as source ``app`` into ``target``: a DuckDB file
    (``warehouse``) written in this process by `sync_source`, or a PostgreSQL warehouse database of its
    own (or BigQuery) through the engine's `load_raw`, as a run's sync step writes it (tests/warehouses.py)."""

    def __init__(self, url: str, tmp: Path, target: Target | None = None) -> None:
        self.url = plain_url(url)
        self.pg = psycopg.connect(libpq(url), autocommit=True)
        self.warehouse = tmp / "build.duckdb"
        self.tmp = tmp
        self.target = target or Target("duckdb")

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = self.pg.execute(statement, params)
        return cur.fetchall() if cur.description else []

    def sync(self, full_refresh: bool = False, only: list[str] | None = None, **settings: Any) -> dict[str, Any]:
        config = PostgresSettings.model_validate({"type": "postgres", "url": self.url, **settings})
        if self.target.through_engine:
            stats = self.target.sync(self.tmp, "app", config, tables=only, full_refresh=full_refresh)
            return {s.table: s for s in stats}
        con = connect(self.warehouse)
        try:
            stats = sync_source(con, PostgresSource("app", config, self.tmp), tables=only, full_refresh=full_refresh)
        finally:
            con.close()
        return {s.table: s for s in stats}

    def query(self, sql: str, params: list[Any] | None = None, *, tokens_agree: bool = True) -> list[tuple[Any, ...]]:
        """``sql`` on the warehouse: the DuckDB file (read-only), or the PostgreSQL warehouse through its
        build connection, or what BigQuery holds (`Target.query`)."""
        if self.target.through_engine:
            return self.target.query(self.tmp, sql, params, tokens_agree=tokens_agree)
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def raw(self, table: str, order: str = "id", columns: str = "* EXCLUDE (_headwater_synced_at)") -> list[tuple[Any, ...]]:
        return self.query(f'SELECT {columns} FROM raw_app."{table}" ORDER BY {order}')

    def state(self, table: str) -> dict[str, Any]:
        return json.loads(self.query("SELECT state FROM _headwater.sync_state WHERE source = 'app' AND table_name = ?", [table])[0][0])

    def raw_columns(self, table: str) -> dict[str, str]:
        return dict(self.query("SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'raw_app' AND table_name = ?", [table]))


@pytest.fixture
def h(fresh_pg_database: str, tmp_path: Path, request: pytest.FixtureRequest) -> Harness:
    """Into DuckDB; a test marked `on_both_warehouses` runs on each warehouse of the matrix."""
    harness = Harness(fresh_pg_database, tmp_path, matrix_target(request))
    yield harness
    harness.pg.close()


def make_items(h: Harness, n: int = 1000) -> None:
    h.sql("CREATE TABLE items (id bigint PRIMARY KEY, name text, qty integer, price numeric(10,2), updated_at timestamptz NOT NULL DEFAULT now())")
    h.sql("INSERT INTO items SELECT g, 'item ' || g, g %% 17, (g %% 1000) / 10.0, now() FROM generate_series(1, %s) g", [n])


def source_items(h: Harness) -> list[tuple[Any, ...]]:
    return h.sql("SELECT id, name, qty, price, updated_at FROM items ORDER BY id")


def raw_items(h: Harness) -> list[tuple[Any, ...]]:
    return h.raw("items", columns="id, name, qty, price, updated_at")


# --- modes and exactness --------------------------------------------------------------------------


@on_both_warehouses
def test_full_then_incremental_updates_inserts_deletes(h: Harness) -> None:
    make_items(h)
    first = h.sync()["items"]
    assert (first.mode, first.rows, first.rows_read) == ("full", 1000, 1000)
    assert raw_items(h) == source_items(h)
    assert h.state("items")["method"] == "xmin"

    h.sql("UPDATE items SET qty = qty + 100 WHERE id % 10 = 0")
    h.sql("INSERT INTO items (id, name, qty, price) VALUES (5001, 'new', 1, 1.5), (5002, 'newer', 2, 2.5)")
    h.sql("DELETE FROM items WHERE id IN (3, 4)")
    second = h.sync()["items"]
    assert second.mode == "incremental"
    assert second.rows_read == 102  # only the changed rows crossed the wire
    assert second.deleted == 2
    assert raw_items(h) == source_items(h)

    idle = h.sync()["items"]
    assert (idle.rows_read, idle.upserted, idle.deleted) == (0, 0, 0)


@on_both_warehouses
def test_late_commit_with_an_old_timestamp_is_not_missed(h: Harness) -> None:
    """A transaction that set updated_at long ago and commits after a sync has already seen newer rows."""
    make_items(h, 100)
    h.sync()
    late = psycopg.connect(libpq(h.url))  # not autocommit: stays open
    late.execute("UPDATE items SET name = 'late', updated_at = now() - interval '3 days' WHERE id = 7")
    h.sql("UPDATE items SET name = 'on time' WHERE id = 8")
    mid = h.sync()["items"]
    assert mid.rows_read == 1  # row 8; row 7's writer has not committed yet
    late.commit()
    late.close()
    h.sync()
    assert raw_items(h) == source_items(h)
    assert {r[0]: r[1] for r in raw_items(h)}[7] == "late"


def test_bulk_update_sharing_one_timestamp_arrives_whole(h: Harness) -> None:
    make_items(h, 20000)
    h.sync()
    h.sql("UPDATE items SET qty = -1, updated_at = '2020-01-01 00:00:00+00' WHERE id <= 15000")
    stats = h.sync()["items"]
    assert stats.rows_read == 15000
    assert sum(1 for r in raw_items(h) if r[2] == -1) == 15000
    assert raw_items(h) == source_items(h)


@on_both_warehouses
def test_tombstones_keep_deleted_rows_with_the_time_they_went(h: Harness) -> None:
    make_items(h, 50)
    h.sync(deletes="tombstone")
    h.sql("DELETE FROM items WHERE id <= 5")
    stats = h.sync(deletes="tombstone")["items"]
    assert stats.deleted == 5
    rows = h.raw("items", columns="id, _headwater_deleted_at")
    assert len(rows) == 50
    assert {r[0] for r in rows if r[1] is not None} == {1, 2, 3, 4, 5}
    h.sql("INSERT INTO items (id, name, qty, price) VALUES (3, 'back', 1, 1)")
    h.sync(deletes="tombstone")
    rows = dict(h.raw("items", columns="id, _headwater_deleted_at"))
    assert rows[3] is None and rows[4] is not None


@on_both_warehouses
def test_deletes_checked_on_their_schedule_only(h: Harness) -> None:
    make_items(h, 30)
    h.sync(check_deletes_every="1h")
    h.sql("DELETE FROM items WHERE id = 1")
    assert h.sync(check_deletes_every="1h")["items"].deleted == 0  # not due yet
    assert h.sync()["items"].deleted == 1  # every sync


# --- between full passes: the updated_at index ------------------------------------------------------

HOURLY = {"check_deletes_every": "1h"}  # full passes hourly: the syncs in between use the index


def make_indexed_items(h: Harness, n: int = 1000) -> None:
    """Rows last changed a day ago (older than any look-back margin), with an index on updated_at."""
    make_items(h, n)
    h.sql("UPDATE items SET updated_at = now() - interval '1 day'")
    h.sql("CREATE INDEX ON items (updated_at)")


def test_between_full_passes_changes_are_read_through_the_updated_at_index(h: Harness) -> None:
    make_indexed_items(h)
    h.sync(**HOURLY)
    h.sql("UPDATE items SET qty = -1, updated_at = now() WHERE id <= 40")
    h.sql("INSERT INTO items (id, name, qty, price) VALUES (5001, 'new', 1, 1.5)")
    # Changed without a newer updated_at: no index can find it; the next full pass does.
    h.sql("UPDATE items SET name = 'quiet' WHERE id = 500")
    h.sql("DELETE FROM items WHERE id = 900")
    between = h.sync(**HOURLY)["items"]
    assert (between.rows_read, between.deleted, between.notes) == (41, 0, [])
    raw = {r[0]: r[1:] for r in raw_items(h)}
    assert raw[500][0] == "item 500" and 900 in raw and raw[5001][0] == "new"
    assert all(raw[i][1] == -1 for i in range(1, 41))
    # Within the look-back margin, but already seen by the last snapshot: not read again.
    assert h.sync(**HOURLY)["items"].rows_read == 0

    full_pass = h.sync(check_deletes_every="0s")["items"]  # due: by transaction ids, and deletes
    assert full_pass.deleted == 1
    assert raw_items(h) == source_items(h)


def test_a_table_truncated_and_reloaded_with_old_timestamps_gets_a_full_pass(h: Harness) -> None:
    make_indexed_items(h, 200)
    h.sync(**HOURLY)
    h.sql("CREATE TABLE saved AS SELECT * FROM items WHERE id <= 150")
    h.sql("UPDATE saved SET name = 'restored'")  # updated_at stays a day old
    h.sql("TRUNCATE items")
    h.sql("INSERT INTO items SELECT * FROM saved")
    stats = h.sync(**HOURLY)["items"]
    assert (stats.rows_read, stats.deleted) == (150, 50)
    assert raw_items(h) == source_items(h)
    assert "read" not in h.state("items")  # a pass by transaction ids, not the index


def test_index_path_catches_a_transaction_that_started_before_the_sync_and_commits_after(h: Harness) -> None:
    """The writer's now() is older than rows the sync already read; with no look-back margin at all,
    the bound taken from the oldest running transaction still reaches back to it."""
    make_indexed_items(h, 100)
    settings = {**HOURLY, "overrides": {"items": {"lookback": "0s"}}}
    h.sync(**settings)
    late = psycopg.connect(libpq(h.url))  # not autocommit: BEGIN at its first statement
    late.execute("SELECT 1")  # the transaction starts (its now() is fixed) but has no xid yet
    time.sleep(0.2)  # not a wait: the late now() must be clearly older than the on-time update's
    h.sql("UPDATE items SET name = 'on time', updated_at = now() WHERE id = 8")
    assert h.sync(**settings)["items"].rows_read == 1  # row 8; row 7 is not written yet
    late.execute("UPDATE items SET name = 'late', updated_at = now() WHERE id = 7")
    late.commit()
    late.close()
    stats = h.sync(**settings)["items"]
    assert stats.notes == [] and stats.rows_read >= 1
    assert raw_items(h) == source_items(h)
    assert {r[0]: r[1] for r in raw_items(h)}[7] == "late"


def test_index_path_needs_to_see_every_transaction_else_reads_by_transaction_ids(h: Harness) -> None:
    make_indexed_items(h, 100)
    h.sql("CREATE ROLE watcher LOGIN")
    h.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO watcher")
    reader = _with_url(h, make_url(h.url).set(username="watcher").render_as_string(hide_password=False))
    reader.sync(**HOURLY)
    h.sql("UPDATE items SET qty = 0, updated_at = now() WHERE id < 10")
    h.sql("UPDATE items SET name = 'quiet' WHERE id = 50")  # only a pass by transaction ids finds it
    stats = reader.sync(**HOURLY)["items"]  # the harness's own session is another user's: hidden
    assert stats.rows_read == 10
    assert any("GRANT pg_read_all_stats TO watcher" in note for note in stats.notes)
    assert raw_items(h) == source_items(h)

    h.sql("GRANT pg_read_all_stats TO watcher")
    no_margin = {**HOURLY, "overrides": {"items": {"lookback": "0s"}}}
    reader.sync(**no_margin)  # sees every transaction now: records the bound the next sync starts from
    h.sql("UPDATE items SET name = 'quiet again' WHERE id = 51")
    h.sql("UPDATE items SET qty = 1, updated_at = now() WHERE id = 60")
    stats = reader.sync(**no_margin)["items"]
    assert (stats.rows_read, stats.notes) == (1, [])  # the index: row 60, not the quiet row 51
    assert {r[0]: r[1] for r in raw_items(h)}[51] == "item 51"


def test_large_tables_get_hourly_full_passes_small_ones_every_sync(h: Harness, tmp_path: Path) -> None:
    make_indexed_items(h, 10)
    source = PostgresSource("app", PostgresSettings.model_validate({"type": "postgres", "url": h.url}), tmp_path)
    con = connect(":memory:")
    try:
        source.attach(con)
        info = source.discover(con, ["items"])["items"]
        source.detach(con)
    finally:
        con.close()
    assert info.indexed == ["id", "updated_at"]
    table = source.settings.settings_for("items")
    assert source.plan(info, table).check_deletes_every == dt.timedelta(0)
    assert source.plan(info, table).index_cursor == "updated_at"
    info.estimated_rows = 1_000_000
    assert source.plan(info, table).check_deletes_every == dt.timedelta(hours=1)
    explicit = PostgresSettings.model_validate({"type": "postgres", "url": h.url, "check_deletes_every": "5m"})
    assert PostgresSource("app", explicit, tmp_path).plan(info, table).check_deletes_every == dt.timedelta(minutes=5)
    info.indexed = ["id"]  # no index on updated_at: every sync reads by transaction ids
    assert source.plan(info, table).index_cursor is None


def row_groups(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('raw_app.{table}')").fetchone()[0]


def test_syncs_between_passes_leave_merging_row_groups_to_the_next_pass(h: Harness) -> None:
    """An update is a delete plus an insert in raw: each sync leaves a small row group at the end and
    deleted rows behind. DuckDB's checkpoint merges such row groups (rewriting them); only a sync
    that makes a full pass does that, the ones between only write their own rows."""
    make_indexed_items(h, 5000)
    h.sync(**HOURLY)
    source = PostgresSource("app", PostgresSettings.model_validate({"type": "postgres", "url": h.url, **HOURLY}), h.tmp)
    con = connect(h.warehouse)
    try:
        defaults = con.execute("SELECT current_setting('max_vacuum_tasks'), current_setting('checkpoint_threshold')").fetchone()
        groups = [row_groups(con, "items")]
        for n in range(3):
            h.sql("UPDATE items SET qty = -1, updated_at = now() WHERE id <= 5000 AND id %% 50 = %s", [n])  # in every row group
            h.sql("INSERT INTO items (id, name, qty, price) SELECT g, 'new', 1, 1 FROM generate_series(%s::int, %s::int) g", [10_000 + 100 * n, 10_099 + 100 * n])
            assert sync_source(con, source)[0].rows_read == 200
            groups.append(row_groups(con, "items"))
        assert groups == list(range(groups[0], groups[0] + 4))  # one more each time, none merged
        # The settings the sync changed for its checkpoints are back as they were.
        assert con.execute("SELECT current_setting('max_vacuum_tasks'), current_setting('checkpoint_threshold')").fetchone() == defaults
    finally:
        con.close()
    h.sql("UPDATE items SET qty = -2, updated_at = now() WHERE id = 1")
    assert h.sync(check_deletes_every="0s")["items"].rows_read >= 1  # a pass: merges what the others left
    con = connect(h.warehouse)
    try:
        assert row_groups(con, "items") < groups[-1]
    finally:
        con.close()
    assert raw_items(h) == source_items(h)


@on_both_warehouses
def test_table_without_primary_key_reloads_in_full_and_says_so(h: Harness) -> None:
    h.sql("CREATE TABLE events (at timestamptz, kind text)")
    h.sql("INSERT INTO events VALUES (now(), 'a'), (now(), 'b')")
    stats = h.sync()["events"]
    assert stats.mode == "full" and stats.rows == 2
    assert any("no primary key" in n for n in stats.notes)
    with pytest.raises(ConfigError, match="no primary key") as info:
        h.sync(overrides={"events": {"mode": "incremental"}})
    assert "primary_key" in info.value.fix


@on_both_warehouses
def test_primary_key_override_and_append_mode(h: Harness) -> None:
    h.sql("CREATE TABLE log (seq bigint, msg text)")
    h.sql("INSERT INTO log SELECT g, 'm' || g FROM generate_series(1, 100) g")
    h.sync(overrides={"log": {"mode": "append", "primary_key": ["seq"]}})
    h.sql("INSERT INTO log SELECT g, 'm' || g FROM generate_series(101, 150) g")
    h.sql("UPDATE log SET msg = 'changed' WHERE seq = 1")  # append never rewrites history
    stats = h.sync(overrides={"log": {"mode": "append", "primary_key": ["seq"]}})["log"]
    assert stats.mode == "append" and stats.upserted == 50
    rows = h.raw("log", order="seq")
    assert len(rows) == 150 and rows[0] == (1, "m1")


def test_views_and_partitioned_tables(h: Harness) -> None:
    make_items(h, 40)
    h.sql("CREATE VIEW cheap_items AS SELECT id, name FROM items WHERE price < 2")
    h.sql("CREATE TABLE measurements (id bigint, at date NOT NULL, v double precision, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
    h.sql("CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    h.sql("CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    h.sql("INSERT INTO measurements VALUES (1, '2024-05-01', 1.5), (2, '2025-05-01', 2.5)")
    stats = h.sync()
    assert set(stats) == {"items", "cheap_items", "measurements"}  # partitions come through their parent
    assert stats["cheap_items"].rows == len(h.sql("SELECT * FROM cheap_items"))
    h.sql("UPDATE measurements SET v = 9 WHERE id = 2")
    again = h.sync()["measurements"]
    assert again.mode == "incremental" and again.rows_read == 1
    assert h.raw("measurements") == [(1, dt.date(2024, 5, 1), 1.5), (2, dt.date(2025, 5, 1), 9.0)]


def test_table_patterns_and_selection(h: Harness) -> None:
    for name in ("msg_a", "msg_b", "tmp_x"):
        h.sql(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    assert set(h.sync(tables={"include": ["msg_*", "tmp_*"], "exclude": ["tmp_*"]})) == {"msg_a", "msg_b"}
    assert set(h.sync(only=["msg_b"])) == {"msg_b"}


# --- types ----------------------------------------------------------------------------------------

TYPES_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE typed (
  id serial PRIMARY KEY, e mood, j json, jb jsonb, ai int[], at text[], n numeric(12,3), nu numeric, big numeric(40,5),
  u uuid, tz timestamptz, ts timestamp, iv interval, b bytea, ip inet, d date, t time, dom posint, m money,
  g int GENERATED ALWAYS AS (id * 2) STORED, r real, dp double precision, bo boolean, c char(3), vc varchar(10), pt point
);
INSERT INTO typed (e, j, jb, ai, at, n, nu, big, u, tz, ts, iv, b, ip, d, t, dom, m, r, dp, bo, c, vc, pt) VALUES
 ('happy', '{"a": 1, "b": [1,2]}', '{"z": 1, "a": {"x": null}}', '{1,2,NULL}', '{"a","b c",NULL}', 12.345,
  123456789012345678901234567890.123456789, 1234567890123456789012345678901234.56789, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '2024-03-10 02:30:00+05:30', '2024-03-10 02:30:00', '1 year 2 mons 3 days 04:05:06.789', '\\xdeadbeef', '192.168.1.5/24',
  '2024-02-29', '23:59:59.999999', 5, 12.34, 1.5, 2.25, true, 'ab', 'hello', '(1,2)'),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


def test_every_common_type_round_trips_or_maps_as_documented(h: Harness) -> None:
    h.pg.execute(TYPES_DDL)
    h.sync(timezone="America/New_York")
    types = h.raw_columns("typed")
    assert types["e"] == "VARCHAR" and types["j"] == "JSON" and types["jb"] == "JSON"
    assert types["n"] == "DECIMAL(12,3)" and types["nu"] == "VARCHAR" and types["big"] == "VARCHAR"
    assert types["tz"] == "TIMESTAMP WITH TIME ZONE" and types["ts"] == "TIMESTAMP WITH TIME ZONE"  # a declared source zone
    assert types["dom"] == "INTEGER" and types["m"] == "DECIMAL(20,2)" and types["ai"] == "INTEGER[]"
    row = dict(zip([c for c in types if not c.startswith("_headwater")], h.raw("typed")[0], strict=False))
    source = h.pg.execute("SELECT * FROM typed ORDER BY id").fetchone()
    names = [d.name for d in h.pg.execute("SELECT * FROM typed LIMIT 0").description]
    src = dict(zip(names, source, strict=True))
    assert row["e"] == "happy"
    assert json.loads(row["j"]) == src["j"] and json.loads(row["jb"]) == src["jb"]
    assert row["ai"] == [1, 2, None] and row["at"] == ["a", "b c", None]
    assert row["n"] == src["n"] == Decimal("12.345")
    assert Decimal(row["nu"]) == src["nu"] and Decimal(row["big"]) == src["big"]  # exact, not a float
    assert row["u"] == src["u"]
    assert row["tz"] == src["tz"]  # the same instant
    assert row["ts"] == src["ts"].replace(tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # 02:30 in New York, EST
    assert row["iv"] == src["iv"] or (row["iv"].days, row["iv"].seconds) == (423, 14706)
    assert bytes(row["b"]) == bytes(src["b"])
    assert row["ip"] == "192.168.1.5/24" and row["d"] == src["d"] and row["t"] == src["t"]
    assert row["dom"] == 5 and row["m"] == Decimal("12.34") and row["g"] == src["g"] == 2
    assert row["r"] == pytest.approx(1.5) and row["dp"] == 2.25 and row["bo"] is True
    assert row["c"] == src["c"] == "ab " and row["vc"] == "hello" and row["pt"] == "(1,2)"  # char(3) keeps its padding, as psycopg reads it
    assert all(v is None for k, v in dict(zip(row, h.raw("typed")[1], strict=False)).items() if k not in ("id", "g"))


def test_char_n_keeps_its_padding_as_postgresql_clients_read_it(h: Harness) -> None:
    h.sql("CREATE TABLE padded (id int PRIMARY KEY, c char(5), c1 char, v varchar(5), a char(3)[])")
    h.sql("INSERT INTO padded VALUES (1, 'ab', 'x', 'ab  ', '{a,NULL,\"b c\"}'), (2, '', ' ', '', '{}'), (3, 'abcde', NULL, NULL, NULL), (4, 'é', 'ü', 'é', '{é}')")
    for full in (True, False):  # the whole-table read and the read of changed rows
        h.sync(full_refresh=full)
        assert h.raw("padded") == h.sql("SELECT * FROM padded ORDER BY id")
        h.sql("UPDATE padded SET c = c WHERE id = 1")
    assert h.raw("padded")[0] == (1, "ab   ", "x", "ab  ", ["a  ", None, "b c"])
    assert h.raw_columns("padded")["c"] == "VARCHAR"


def test_extreme_values_that_fit_arrive_exactly(h: Harness) -> None:
    """PostgreSQL's limits that DuckDB can hold, on both read paths (compared as DuckDB's text: Python's
    datetime stops at 9999). The interval holds months, days and microseconds apart, as PostgreSQL does."""
    h.sql("CREATE TABLE edges (id int PRIMARY KEY, ts timestamp, tz timestamptz, d date, iv interval, t time, n numeric(38,0), m money, f float8, nu numeric)")
    h.sql(
        """INSERT INTO edges VALUES
        (1, '4714-11-24 00:00:00 BC', '4714-11-24 00:00:00+00 BC', '4714-11-24 BC', '-2147483648 months -2147483648 days -9223372036854775807 microseconds',
            '00:00:00', -99999999999999999999999999999999999999, '-92233720368547758.08', '-Infinity', '-Infinity'),
        (2, '294247-01-10 04:00:54.775806', '294247-01-10 04:00:54.775806+00', '5874897-12-31', '2147483647 months 2147483647 days 9223372036854775807 microseconds',
            '24:00:00', 99999999999999999999999999999999999999, '92233720368547758.07', 'NaN', 'NaN'),
        (3, 'infinity', 'infinity', 'infinity', '1 mon 40 days 100:00:00', '23:59:59.999999', 0, 0, 'Infinity', 'Infinity'),
        (4, '-infinity', '-infinity', '-infinity', NULL, NULL, NULL, NULL, NULL, 1e-1000)"""
    )
    nines = "9" * 38
    expected = [
        (1, "4714-11-24 (BC) 00:00:00", "4714-11-24 (BC) 00:00:00+00", "4714-11-24 (BC)", "-178956970 years -8 months -2147483648 days -2562047788:00:54.775807",
         "00:00:00", f"-{nines}", "-92233720368547758.08", "-inf", "-Infinity"),
        (2, "294247-01-10 04:00:54.775806", "294247-01-10 04:00:54.775806+00", "5874897-12-31", "178956970 years 7 months 2147483647 days 2562047788:00:54.775807",
         "24:00:00", nines, "92233720368547758.07", "nan", "NaN"),
        (3, "infinity", "infinity", "infinity", "1 month 40 days 100:00:00", "23:59:59.999999", "0", "0.00", "inf", "Infinity"),
        (4, "-infinity", "-infinity", "-infinity", None, None, None, None, None, "0." + "0" * 999 + "1"),
    ]
    # timestamptz as microseconds since 1970 (DuckDB's ICU cannot print instants that late)
    micros = [r[0] for r in h.sql("SELECT CASE WHEN isfinite(tz) THEN (extract(epoch FROM tz) * 1000000)::bigint::text ELSE tz::text END FROM edges ORDER BY id")]
    expected = [(*row[:2], micros[i], *row[3:]) for i, row in enumerate(expected)]
    tz_text = "CASE WHEN isinf(tz) THEN CAST(tz AS VARCHAR) ELSE CAST(epoch_us(tz) AS VARCHAR) END"
    for full in (True, False):  # the parallel scan, then the read of changed rows
        h.sync(full_refresh=full)
        assert h.raw("edges", columns="id, " + ", ".join(f"CAST({c} AS VARCHAR)" if c != "tz" else tz_text for c in ("ts", "tz", "d", "iv", "t", "n", "m", "f", "nu"))) == expected
        h.sql("UPDATE edges SET id = id")


@pytest.mark.parametrize("column", ["ts", "tz", "tsa", "n"])
@pytest.mark.parametrize("when", ["first load", "changed row"])
def test_a_value_raw_cannot_hold_stops_the_table_naming_column_and_key(h: Harness, column: str, when: str) -> None:
    """PostgreSQL's timestamps go on to 294276 AD, DuckDB's end in 294247 AD (its scanner wrapped
    later ones to 290279 BC); numeric(p,s) holds NaN, DECIMAL does not (the scanner read it as 0)."""
    bad = {"ts": "'294276-12-31 23:59:59'", "tz": "'294276-12-31 23:59:59+00'", "tsa": "ARRAY['2024-01-01', '294276-12-31']::timestamp[]", "n": "'NaN'"}[column]
    h.sql("CREATE TABLE far (id int PRIMARY KEY, ts timestamp, tz timestamptz, tsa timestamp[], n numeric(10,2), other text)")
    h.sql("INSERT INTO far (id, ts, tz, n, other) VALUES (1, '2024-01-01', '2024-01-01+00', 1.5, 'a')")
    if when == "changed row":
        h.sync()
    h.sql(f"INSERT INTO far (id, {column}) VALUES (7, {bad})")
    before = h.raw("far") if when == "changed row" else None
    with pytest.raises(HeadwaterError) as info:
        h.sync()
    error = info.value
    assert not isinstance(error, TransientFailure) and error.exit_code == 2
    assert f"column far.{column} (key id=7) holds" in error.what and "cannot hold" in error.what
    assert "Fix:" in error.render() and "294276" not in error.what.replace("294247", "")  # never shown as another value
    if before is not None:
        assert h.raw("far") == before  # the table was left as it was
    h.sql("DELETE FROM far WHERE id = 7")
    h.sync()
    assert [r[0] for r in h.raw("far")] == [1]


# --- schema drift ---------------------------------------------------------------------------------


@on_both_warehouses
def test_schema_drift(h: Harness) -> None:
    make_items(h, 20)
    h.sync()
    h.sql("ALTER TABLE items ADD COLUMN colour text DEFAULT 'red'")
    h.sql("ALTER TABLE items ALTER COLUMN qty TYPE bigint")
    stats = h.sync()["items"]
    assert "added column colour VARCHAR" in stats.schema_changes
    assert "widened column qty from INTEGER to BIGINT" in stats.schema_changes
    assert h.raw_columns("items")["qty"] == "BIGINT"
    assert {r[0] for r in h.raw("items", columns="colour")} == {"red"}  # old rows got the default too

    h.sql("ALTER TABLE items DROP COLUMN name")
    h.sql("INSERT INTO items (id, qty, price) VALUES (99, 1, 1)")
    stats = h.sync()["items"]
    assert any("name is no longer in the source" in n for n in stats.notes)
    names = dict(h.raw("items", columns="id, name"))
    assert names[1] == "item 1" and names[99] is None  # kept, NULL from then on

    # numeric(10,2) -> numeric(14,4) holds every old value: widened in place, values exact
    h.sql("ALTER TABLE items ALTER COLUMN price TYPE numeric(14,4)")
    h.sql("UPDATE items SET price = 1234567890.1234 WHERE id = 7")
    assert h.sync()["items"].schema_changes == ["widened column price from DECIMAL(10,2) to DECIMAL(14,4)"]
    assert h.raw_columns("items")["price"] == h.target.held_as("DECIMAL(14,4)")  # BigQuery: NUMERIC, read back as DECIMAL(38,9)
    assert h.raw("items", columns="id, price") == h.sql("SELECT id, price FROM items ORDER BY id")
    assert dict(h.raw("items", columns="id, price"))[7] == Decimal("1234567890.1234")

    before = h.raw("items")
    h.sql("ALTER TABLE items ALTER COLUMN price TYPE timestamptz USING now()")
    with pytest.raises(HeadwaterError, match=r"items\.price changed type") as info:
        h.sync()
    assert "--full-refresh" in info.value.fix
    assert h.raw("items") == before  # nothing lost
    h.sync(full_refresh=True)
    assert h.raw_columns("items")["price"] == "TIMESTAMP WITH TIME ZONE"


# --- bad input ------------------------------------------------------------------------------------


def test_unreachable_host_is_transient_and_names_no_password(h: Harness, tmp_path: Path) -> None:
    config = PostgresSettings.model_validate({"type": "postgres", "url": "postgresql://sync:s3cret-pw@127.0.0.1:9/app?connect_timeout=2"})
    con = connect(tmp_path / "other.duckdb")
    with pytest.raises(TransientFailure) as info:
        sync_source(con, PostgresSource("app", config, tmp_path))
    con.close()
    assert "cannot reach PostgreSQL at 127.0.0.1:9/app" in info.value.what
    assert "s3cret-pw" not in info.value.render()


def test_wrong_password_missing_table_and_missing_grant(h: Harness, postgres_server: Any, tmp_path: Path) -> None:
    make_items(h, 5)
    h.sql("CREATE TABLE secret_stuff (id int PRIMARY KEY)")
    h.sql("CREATE ROLE syncer LOGIN PASSWORD 'right-pw'")
    h.sql("GRANT SELECT ON items TO syncer")
    hba = postgres_server.base / "data" / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all syncer 127.0.0.1/32 scram-sha-256\n" + original)
    h.sql("SELECT pg_reload_conf()")
    u = make_url(h.url)
    bad = u.set(username="syncer", password="wrong-pw").render_as_string(hide_password=False)
    try:
        _wait_until_login_is(bad, refused=True)  # the server reloads pg_hba.conf in its own time
        with pytest.raises(HeadwaterError, match="refused the user or password") as info:
            Harness.sync(_with_url(h, bad))
        assert "wrong-pw" not in info.value.render()
        good = u.set(username="syncer", password="right-pw").render_as_string(hide_password=False)
        with pytest.raises(NotFound, match="secret_stuff") as missing:
            Harness.sync(_with_url(h, good), tables=["items", "secret_stuff"])
        assert "grant" in missing.value.fix.lower()
        with pytest.raises(NotFound, match="no_such_table"):
            Harness.sync(_with_url(h, good), tables=["no_such_table"])
    finally:
        hba.write_text(original)
        h.sql("SELECT pg_reload_conf()")
        _wait_until_login_is(bad, refused=False)  # trust again, before the next test connects


def _wait_until_login_is(url: str, *, refused: bool, seconds: float = 30) -> None:
    """Wait until logging in with ``url`` is refused (or accepted): how a reload of pg_hba.conf shows."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(libpq(url), connect_timeout=5).close()
            accepted = True
        except psycopg.OperationalError:
            accepted = False
        if accepted != refused:
            return
        assert time.monotonic() < deadline, f"logging in as {make_url(url).username} was still {'accepted' if accepted else 'refused'} {seconds:.0f}s after pg_reload_conf()"
        time.sleep(0.05)


def _with_url(h: Harness, url: str) -> Harness:
    other = object.__new__(Harness)
    other.__dict__.update(h.__dict__)
    other.url = url
    return other


def test_a_read_only_role_can_sync_everything(h: Harness) -> None:
    make_items(h, 100)
    h.sql("CREATE ROLE reader LOGIN")
    h.sql("GRANT USAGE ON SCHEMA public TO reader")
    h.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
    h.sql("ALTER ROLE reader SET default_transaction_read_only = on")
    reader = _with_url(h, make_url(h.url).set(username="reader").render_as_string(hide_password=False))
    reader.sync()
    h.sql("UPDATE items SET qty = 0 WHERE id < 10")
    h.sql("DELETE FROM items WHERE id = 50")
    assert reader.sync()["items"].rows_read == 9
    assert raw_items(h) == source_items(h)


# --- killed at random while writers write -----------------------------------------------------------

SYNC_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from headwater.config.sources import PostgresSettings
    from headwater.sources.postgres import PostgresSource
    from headwater.sync import sync_source
    from headwater.warehouse import connect
    settings = PostgresSettings.model_validate({"type": "postgres", "url": sys.argv[1], **json.loads(sys.argv[3])})
    if sys.argv[2].startswith("{"):  # a PostgreSQL or BigQuery warehouse (its settings): as a run's sync step writes it
        from headwater.config.model import BigQueryWarehouse, PostgresWarehouse
        from headwater.sources import extensions_for
        from headwater.warehouse import open_warehouse
        given = json.loads(sys.argv[2])
        warehouse = open_warehouse(Path(sys.argv[4]), (PostgresWarehouse if given["type"] == "postgres" else BigQueryWarehouse).model_validate(given))
        while True:
            con = warehouse.connect_build(sync_extensions=extensions_for([settings]))
            warehouse.load_raw(con, PostgresSource("app", settings, Path(".")), lambda _: None)
            con.close()
    while True:
        con = connect(Path(sys.argv[2]))
        sync_source(con, PostgresSource("app", settings, Path(".")))
        con.close()
    """
)


@pytest.mark.slow
@on_both_warehouses
def test_syncs_killed_at_random_converge_to_the_source(h: Harness) -> None:
    """By transaction ids, writers may stamp any time at all. Every warehouse (its side of a kill:
    the local commit, BigQuery's send around it)."""
    _killed_syncs_converge(h, "transaction ids")


@pytest.mark.slow
@kinds_without_bigquery("the read through the updated_at index is the source's side; BigQuery's side of a kill is the same as by transaction ids, tested above on every kind")
@on_both_warehouses
def test_syncs_killed_at_random_through_the_index_converge_to_the_source(h: Harness) -> None:
    """Through the index (full passes hourly, no look-back margin) writers stamp now(), the assumption
    that path rests on (docs/sync.md)."""
    _killed_syncs_converge(h, "updated_at index")


def _killed_syncs_converge(h: Harness, path: str) -> None:
    by_index = path == "updated_at index"
    settings = {**HOURLY, "overrides": {"items": {"lookback": "0s"}}} if by_index else {}
    (make_indexed_items if by_index else make_items)(h, 30000)
    if by_index:  # the first full pass done, so every sync below (killed or not) takes the index path
        assert h.sync(**settings)["items"].rows == 30000
    stop = threading.Event()
    seed = random_seed(default=7)
    old = "now()" if by_index else "now() - interval '1 day'"
    shared = "now()" if by_index else "'2021-01-01'"

    def writer(next_id: int) -> None:
        rng = thread_rng(seed, f"writer {next_id}")
        con = psycopg.connect(libpq(h.url), autocommit=True)
        while not stop.is_set():
            kind = rng.random()
            if kind < 0.3:  # a late commit: the transaction stays open across syncs, with an old timestamp
                with con.transaction():
                    con.execute("SELECT 1")  # started, no transaction id yet: now() is fixed from here
                    time.sleep(rng.uniform(0.05, 0.4))
                    con.execute(f"UPDATE items SET qty = qty + 1, updated_at = {old} WHERE id = %s", [rng.randint(1, 30000)])
                    time.sleep(rng.uniform(0.05, 0.4))
            elif kind < 0.5:  # a bulk update sharing one timestamp
                con.execute(f"UPDATE items SET name = name || '.', updated_at = {shared} WHERE id %% 97 = %s", [rng.randint(0, 96)])
            elif kind < 0.8:
                con.execute("INSERT INTO items (id, name, qty, price) SELECT g, 'n', 1, 1 FROM generate_series(%s, %s) g", [next_id, next_id + 50])
                next_id += 51
            else:
                con.execute("DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 20)")
            time.sleep(0.01)
        con.close()

    threads = [threading.Thread(target=writer, args=(start,)) for start in (100_000, 10_000_000)]
    for t in threads:
        t.start()
    script = h.tmp / "sync_forever.py"
    script.write_text(SYNC_SCRIPT)
    kills, rng = 0, thread_rng(seed, "kills")
    with telling_the_seed(seed):
        try:
            for _ in range(8):
                into = h.target.settings().model_dump_json() if h.target.through_engine else str(h.warehouse)
                proc = subprocess.Popen([sys.executable, str(script), h.url, into, json.dumps(settings), str(h.tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
                time.sleep(rng.uniform(0.5, 3.0))  # the kill's random moment: the behaviour under test
                if proc.poll() is not None:
                    pytest.fail(f"the sync process died by itself: {proc.stderr.read().decode()[-2000:]}")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                _raw_and_state_agree(h, f"after kill {kills}")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert kills == 8
        if by_index:  # a sync between full passes: every source row is in raw as it is (deletes wait for the pass)
            assert h.sync(**settings)["items"].notes == []
            assert h.state("items")["read"] == "updated_at index"
            assert set(source_items(h)) <= set(raw_items(h))
        h.sync(check_deletes_every="0s")
        assert raw_items(h) == source_items(h)


def _raw_and_state_agree(h: Harness, context: str) -> None:
    """Whatever a kill interrupted: items has a raw table exactly when it has sync state, and no key twice.
    On BigQuery that holds of the local mirror; BigQuery itself may be a change ahead (a kill between
    its commit and the mirror's: its token then differs, and the next sync sends the whole table, as
    the final sync here proves), but never holds a key twice."""
    query = h.target.mirror_query if h.target.bigquery else h.target.query if h.target.through_engine else None
    ask = (lambda sql: query(h.tmp, sql)) if query is not None else h.query
    if query is None and not h.warehouse.exists():  # killed before it made the file (a slow start): nothing written, nothing to disagree
        return
    found = set(ask("SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name IN ('raw_app', '_headwater')"))
    has_raw = ("raw_app", "items") in found
    has_state = ("_headwater", "sync_state") in found and bool(ask("SELECT 1 FROM _headwater.sync_state WHERE source = 'app' AND table_name = 'items'"))
    assert has_raw == has_state, f"{context}: raw table {'present' if has_raw else 'missing'}, state {'present' if has_state else 'missing'}"
    if has_raw:
        twice = ask("SELECT count(*) - count(DISTINCT id) FROM raw_app.items")[0][0]
        assert twice == 0, f"{context}: {twice} keys twice in raw"
    if h.target.bigquery and h.query("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'raw_app' AND table_name = 'items'", tokens_agree=False)[0][0]:
        twice = h.query("SELECT count(*) - count(DISTINCT id) FROM raw_app.items", tokens_agree=False)[0][0]
        assert twice == 0, f"{context}: {twice} keys twice in BigQuery's raw"


# --- a real read replica ----------------------------------------------------------------------------


def test_sync_from_a_hot_standby(postgres_server: Any, fresh_pg_database: str, tmp_path: Path) -> None:
    """Everything a sync does is allowed on a read replica: no temp tables, no writes, xmin and snapshots work."""
    import pg

    primary = Harness(fresh_pg_database, tmp_path)
    make_items(primary, 2000)
    primary.sql("CREATE TABLE marker (n int)")
    standby = pg.start_standby(postgres_server)
    try:
        replica_url = make_url(fresh_pg_database).set(port=standby.port).render_as_string(hide_password=False)
        replica = _with_url(primary, plain_url(replica_url))
        replica_pg = psycopg.connect(libpq(replica_url), autocommit=True)
        assert replica_pg.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True

        marks = iter(range(1, 1000))

        def caught_up() -> None:
            """Wait until the standby has replayed everything: a marker written last becomes visible."""
            n = next(marks)
            primary.sql("INSERT INTO marker VALUES (%s)", [n])
            deadline = time.monotonic() + 30
            while replica_pg.execute("SELECT count(*) FROM marker WHERE n = %s", [n]).fetchone()[0] == 0:
                assert time.monotonic() < deadline, "the standby did not catch up"
                time.sleep(0.05)

        caught_up()
        assert replica.sync(tables=["items"])["items"].rows == 2000
        primary.sql("UPDATE items SET qty = 99 WHERE id <= 10")
        primary.sql("DELETE FROM items WHERE id = 2000")
        caught_up()
        stats = replica.sync(tables=["items"])["items"]
        assert (stats.mode, stats.rows_read, stats.deleted) == ("incremental", 10, 1)
        assert raw_items(primary) == source_items(primary)

        # The primary's running transactions cannot be seen here: no updated_at index between passes.
        primary.sql("CREATE INDEX ON items (updated_at)")
        primary.sql("UPDATE items SET name = 'quiet' WHERE id = 5")
        caught_up()
        stats = replica.sync(tables=["items"], **HOURLY)["items"]
        assert stats.rows_read == 1 and any("read replica" in note for note in stats.notes)
        assert raw_items(primary) == source_items(primary)
        replica_pg.close()
    finally:
        standby.stop()
        primary.pg.close()


# --- the command ------------------------------------------------------------------------------------


def _headwater(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=cli_env(NO_COLOR="1", COLUMNS="200"), check=False)


def test_headwater_sync_command_records_the_run_with_table_stats(h: Harness) -> None:
    make_items(h, 300)
    h.sql("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    project = h.tmp / "proj"
    project.mkdir()
    (project / "headwater.yml").write_text("name: synctest\nsources:\n  app:\n    type: postgres\n    url: ${APP_DB_URL}\n", encoding="utf-8")
    os.environ["APP_DB_URL"] = h.url
    try:
        first = _headwater("sync", "--json", cwd=project)
        assert first.returncode == 0, first.stderr
        data = json.loads(first.stdout)
        tables = {t["table"]: t for t in data["sources"]["app"]}
        assert tables["items"]["rows"] == 300 and tables["items"]["mode"] == "full" and tables["notes"]["rows"] == 0

        h.sql("UPDATE items SET qty = 1 WHERE id <= 3")
        table_only = _headwater("sync", "app", "items", cwd=project)
        assert table_only.returncode == 0, table_only.stderr
        assert "items" in table_only.stdout and "incremental" in table_only.stdout and "notes" not in table_only.stdout

        runs = json.loads(_headwater("runs", "--json", cwd=project).stdout)
        latest = runs[0] if isinstance(runs, list) else runs["runs"][0]
        assert latest["pipeline"] == "sync" and latest["status"] == "success"
        log = _headwater("logs", str(latest["id"]), cwd=project).stdout
        assert "source app: table items: incremental" in log and "3 rows read" in log

        missing = _headwater("sync", "app", "nope", cwd=project)
        assert missing.returncode != 0 and "nope is not one of the tables" in missing.stderr
    finally:
        del os.environ["APP_DB_URL"]

    (project / "headwater.yml").write_text("name: synctest\nsources:\n  app:\n    type: postgres\n    url: postgresql://u:hunter2-pw@127.0.0.1:9/x?connect_timeout=2\n", encoding="utf-8")
    down = _headwater("sync", cwd=project)
    assert down.returncode == 75  # transient: a pipeline run retries it
    assert "cannot reach PostgreSQL" in down.stderr and "hunter2-pw" not in down.stderr + down.stdout


def test_reconcile_checks_query_postgres_in_its_own_dialect(h: Harness) -> None:
    from headwater.checks.queries import QueryError, query_source
    from headwater.config import load_project

    make_items(h, 40)
    project = h.tmp / "checks"
    project.mkdir()
    (project / "headwater.yml").write_text(f"name: c\nsources:\n  app:\n    type: postgres\n    url: {h.url}\n", encoding="utf-8")
    loaded = load_project(project)
    columns, rows = query_source(loaded, "app", "SELECT qty, count(*)::int AS n FROM items WHERE qty < 3 GROUP BY qty ORDER BY qty")
    assert columns == ["qty", "n"]
    assert rows == [tuple(r) for r in h.sql("SELECT qty, count(*)::int FROM items WHERE qty < 3 GROUP BY qty ORDER BY qty")]
    with pytest.raises(QueryError, match="no_such_table"):
        query_source(loaded, "app", "SELECT * FROM no_such_table")
    h.sql("CREATE SEQUENCE counter")
    with pytest.raises(QueryError, match="read-only"):
        query_source(loaded, "app", "SELECT nextval('counter')")  # a check never changes the source
    with pytest.raises(QueryError):
        query_source(loaded, "app", "DELETE FROM items RETURNING id")
    assert h.sql("SELECT count(*) FROM items")[0][0] == 40


# --- real data: rows without a new transaction id, bad keys, bad tables ------------------------------


def make_orders_parent(h: Harness) -> None:
    h.sql("CREATE TABLE orders (id bigint, at date NOT NULL, amount int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
    h.sql("CREATE TABLE orders_2024 PARTITION OF orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    h.sql("INSERT INTO orders SELECT g, '2024-03-01', g FROM generate_series(1, 50) g")


def test_a_table_attached_as_a_partition_gets_its_rows_synced(h: Harness) -> None:
    """ATTACH PARTITION brings rows whose xmin is older than the last sync's snapshot: no pass by
    transaction ids can see them. The pass's count comparison must, and fetch them."""
    make_orders_parent(h)
    h.sql("CREATE TABLE orders_2025 (id bigint, at date NOT NULL, amount int, PRIMARY KEY (id, at))")
    h.sql("INSERT INTO orders_2025 SELECT g, '2025-03-01', g FROM generate_series(51, 80) g")
    h.sync(tables=["orders"])
    h.sql("ALTER TABLE orders ATTACH PARTITION orders_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
    stats = h.sync(tables=["orders"])["orders"]
    assert h.raw("orders") == h.sql("SELECT * FROM orders ORDER BY id")
    assert stats.rows == 80 and stats.rows_read == 30 and stats.upserted == 30
    assert any("30 rows" in n and "without a newer transaction id" in n for n in stats.notes), stats.notes
    again = h.sync(tables=["orders"])["orders"]
    assert (again.rows_read, again.notes) == (0, [])


def test_rows_frozen_in_by_copy_reach_raw_by_cursor_too(h: Harness) -> None:
    """The same hole through a cursor: rows arriving with old updated_at values."""
    make_items(h, 100)
    h.sql("UPDATE items SET updated_at = now() - interval '1 day'")
    settings = {"overrides": {"items": {"cursor": ["updated_at"], "lookback": "0s"}}}
    h.sync(**settings)
    h.sql("INSERT INTO items (id, name, qty, price, updated_at) SELECT g, 'restored', 1, 1, now() - interval '2 days' FROM generate_series(101, 110) g")
    stats = h.sync(**settings)["items"]
    assert raw_items(h) == source_items(h)
    assert stats.rows == 110 and any(n.startswith("10 rows were in the source but not in raw") for n in stats.notes), stats.notes


def test_counts_that_still_differ_are_said(h: Harness) -> None:
    """deletes: ignore keeps raw's rows that the source lost; rows the source has that raw lacks are
    still fetched, and the difference that remains is said in a note."""
    make_items(h, 20)
    h.sync(deletes="ignore")
    h.sql("DELETE FROM items WHERE id <= 5")
    stats = h.sync(deletes="ignore")["items"]
    assert stats.rows == 20 and stats.deleted == 0
    assert any("raw holds 20 rows, the source 15" in n for n in stats.notes), stats.notes


def test_a_declared_primary_key_with_duplicates_fails_the_table_naming_a_value(h: Harness) -> None:
    h.sql("CREATE TABLE visits (person text, day date, page text)")
    h.sql("INSERT INTO visits VALUES ('ann', '2024-01-01', 'a'), ('bob', '2024-01-01', 'b'), ('ann', '2024-01-02', 'c')")
    make_items(h, 10)
    with pytest.raises(HeadwaterError) as failed:
        h.sync(overrides={"visits": {"primary_key": ["person"]}})
    text = failed.value.render()
    assert failed.value.exit_code == 2
    assert "visits" in text and "primary_key" in text and "person" in text and "ann" in text, text
    assert h.raw("items", columns="count(*)", order="1") == [(10,)]  # the other table synced
    h.sync(overrides={"visits": {"primary_key": ["person", "day"]}})  # a unique key works
    assert len(h.raw("visits", order="person, day")) == 3
    h.sql("INSERT INTO visits VALUES ('bob', '2024-01-01', 'again')")
    with pytest.raises(HeadwaterError, match="bob"):
        h.sync(overrides={"visits": {"primary_key": ["person", "day"]}})
    assert len(h.raw("visits", order="person, day")) == 3  # left as it was


def test_a_materialized_view_with_no_data_is_skipped_with_a_note(h: Harness) -> None:
    make_items(h, 10)
    h.sql("CREATE MATERIALIZED VIEW a_totals AS SELECT qty, count(*) AS n FROM items GROUP BY qty WITH NO DATA")
    stats = h.sync()
    assert stats["items"].rows == 10
    assert stats["a_totals"].mode == "skipped" and any("REFRESH MATERIALIZED VIEW" in n for n in stats["a_totals"].notes)
    h.sql("REFRESH MATERIALIZED VIEW a_totals")
    assert h.sync()["a_totals"].rows == len(h.sql("SELECT * FROM a_totals"))


@on_both_warehouses
def test_one_bad_table_does_not_stop_the_others(h: Harness) -> None:
    from headwater.errors import ExitCode

    for name in ("a_first", "m_middle", "z_last"):
        h.sql(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
        h.sql(f"INSERT INTO {name} VALUES (1, 'x'), (2, 'y')")
    h.sql("CREATE VIEW b_broken AS SELECT 1 / (id - 1) AS boom FROM a_first")  # division by zero when read
    with pytest.raises(HeadwaterError) as failed:
        h.sync()
    assert failed.value.exit_code == ExitCode.USER_ERROR  # the source's to fix, not a bug of ours
    assert "b_broken" in failed.value.render() and "division by zero" in failed.value.render()
    stats = {s.table: s.mode for s in failed.value.table_stats}
    assert stats == {"a_first": "full", "b_broken": "failed", "m_middle": "full", "z_last": "full"}
    for name in ("a_first", "m_middle", "z_last"):
        assert len(h.raw(name)) == 2

    h.sql("CREATE TABLE n_dupes (k int, v text)")
    h.sql("INSERT INTO n_dupes VALUES (7, 'a'), (7, 'b')")
    with pytest.raises(HeadwaterError) as failed:
        h.sync(overrides={"n_dupes": {"primary_key": ["k"]}})
    text = failed.value.render()
    assert failed.value.exit_code == ExitCode.USER_ERROR
    assert "2 tables failed (3 synced)" in text and "b_broken" in text and "n_dupes" in text, text


def test_incremental_without_a_key_suggests_a_real_column(h: Harness) -> None:
    h.sql("CREATE TABLE events (event_no bigint, kind text)")
    with pytest.raises(HeadwaterError) as failed:
        h.sync(overrides={"events": {"mode": "incremental"}})
    assert "primary_key: [event_no]" in failed.value.fix


@on_both_warehouses
def test_tables_gone_from_the_source_are_reported_and_pruned_on_request(h: Harness) -> None:
    make_orders_parent(h)
    for name in ("keep", "dropped", "renamed", "attached"):
        h.sql(f"CREATE TABLE {name} (id bigint PRIMARY KEY)")
        h.sql(f"INSERT INTO {name} VALUES (1), (2)")
    h.sql("CREATE TABLE excluded (id int PRIMARY KEY)")
    h.sync()
    h.sql("DROP TABLE dropped")
    h.sql("ALTER TABLE renamed RENAME TO renamed_now")
    h.sql("ALTER TABLE attached ADD COLUMN at date NOT NULL DEFAULT '2026-06-01', ADD COLUMN amount int")
    h.sql("ALTER TABLE attached DROP CONSTRAINT attached_pkey, ADD PRIMARY KEY (id, at)")
    h.sql("ALTER TABLE orders ATTACH PARTITION attached FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    stats = h.sync(tables={"exclude": ["excluded"]})
    stale = {name: s for name, s in stats.items() if s.mode == "stale"}
    assert set(stale) == {"dropped", "renamed", "attached", "excluded"}
    assert stale["dropped"].rows == 2 and "no longer in the source" in stale["dropped"].notes[0] and "--prune" in stale["dropped"].notes[0]
    assert "no longer selected by sources.app.tables" in stale["excluded"].notes[0]
    assert h.raw("dropped") == [(1,), (2,)]  # kept as it was
    assert h.sync(only=["keep"]).keys() == {"keep"}  # a sync of some tables says nothing of the others

    pruned = h.sync(tables={"exclude": ["excluded"]}, prune=True)
    assert {n for n, s in pruned.items() if s.mode == "pruned"} == {"dropped", "renamed", "attached", "excluded"}
    left = {r[0] for r in h.query("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw_app'")}
    states = {r[0] for r in h.query("SELECT table_name FROM _headwater.sync_state WHERE source = 'app'")}
    assert left == states == {"orders", "keep", "renamed_now"}
    assert len(h.raw("orders")) == 52  # the attached table's rows arrived through its new parent
    assert all(s.mode != "pruned" and s.mode != "stale" for s in h.sync(tables={"exclude": ["excluded"]}).values())


def test_sync_command_reports_stale_tables_prunes_and_lists_failures(h: Harness) -> None:
    h.sql("CREATE TABLE good (id int PRIMARY KEY)")
    h.sql("CREATE TABLE gone (id int PRIMARY KEY)")
    project = h.tmp / "proj"
    project.mkdir()
    (project / "headwater.yml").write_text(f"name: synctest\nsources:\n  app:\n    type: postgres\n    url: {h.url}\n", encoding="utf-8")
    assert _headwater("sync", cwd=project).returncode == 0
    h.sql("DROP TABLE gone")
    report = _headwater("sync", "--json", cwd=project)
    assert report.returncode == 0, report.stderr
    gone = next(t for t in json.loads(report.stdout)["sources"]["app"] if t["table"] == "gone")
    assert gone["mode"] == "stale" and "--prune" in gone["notes"][0]
    runs = json.loads(_headwater("runs", "--json", cwd=project).stdout)
    latest = runs[0] if isinstance(runs, list) else runs["runs"][0]
    assert "gone: no longer in the source" in _headwater("logs", str(latest["id"]), cwd=project).stdout
    pruned = _headwater("sync", "--prune", cwd=project)
    assert pruned.returncode == 0 and "pruned" in pruned.stdout, pruned.stdout + pruned.stderr

    h.sql("CREATE VIEW broken AS SELECT 1 / (id - id) AS boom FROM good")
    h.sql("INSERT INTO good VALUES (1)")
    failed = _headwater("sync", "--json", cwd=project)
    assert failed.returncode == 2, failed.stderr  # the source's view is the user's to fix
    data = json.loads(failed.stdout)
    modes = {t["table"]: t["mode"] for t in data["sources"]["app"]}
    assert modes == {"broken": "failed", "good": "incremental"} and "division by zero" in data["error"]
    assert failed.stderr.count("division by zero") == 1 and "Traceback" not in failed.stderr  # the error, printed once


# --- memory ---------------------------------------------------------------------------------------


def test_the_sync_memory_limit_follows_the_project_and_the_machine() -> None:
    from headwater.sync.sql import sync_memory_limit

    assert sync_memory_limit("12GB") == "12GB"  # the user's, even above the old fixed 700 MB
    assert sync_memory_limit("300MB") == "300MB"
    assert sync_memory_limit(None, machine=64 * 1000**3) == "8000MB"  # an eighth of the machine
    assert sync_memory_limit(None, machine=2 * 1000**3) == "700MB"  # not under 700 MB


def test_a_value_too_big_for_the_memory_limit_is_a_clear_error_naming_column_and_key(h: Harness) -> None:
    h.sql("CREATE TABLE docs (id int PRIMARY KEY, title text, body text)")
    h.sql("INSERT INTO docs VALUES (1, 'a', 'short'), (2, 'b', repeat('x', 120000000)), (3, 'c', 'tiny')")
    make_items(h, 10)
    config = PostgresSettings.model_validate({"type": "postgres", "url": h.url})
    con = connect(h.warehouse)
    try:
        with pytest.raises(HeadwaterError) as failed:
            sync_source(con, PostgresSource("app", config, h.tmp), memory_limit="64MB")
        assert con.execute("SELECT count(*) FROM raw_app.items").fetchone()[0] == 10  # the other table synced
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != "61.0 MiB"  # put back
        stats = {s.table: s for s in sync_source(con, PostgresSource("app", config, h.tmp), memory_limit="2GB")}  # the user's limit is the sync's
        assert stats["docs"].rows == 3
    finally:
        con.close()
    text = failed.value.render()
    assert failed.value.exit_code == 2
    assert "table docs" in text and "61.0 MiB" in text and "column body" in text and "id = 2" in text and "120.0 MB" in text, text
    assert "warehouse.memory_limit" in failed.value.fix


# --- names ----------------------------------------------------------------------------------------

ODD_TABLES = ["my.table", "it's", 'quo"te', "with space", "ünïcødé", "select", "back\\slash", "Mixed-Case"]


def pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.mark.parametrize("schema", ["sales-eu", 'Odd "schema".v2 ü'])
def test_any_schema_and_table_name_postgres_allows_syncs_end_to_end(h: Harness, schema: str) -> None:
    h.sql(f"CREATE SCHEMA {pg_ident(schema)}")
    for n, table in enumerate(ODD_TABLES):
        h.sql(f"CREATE TABLE {pg_ident(schema)}.{pg_ident(table)} (id int PRIMARY KEY, {pg_ident('order')} text, updated_at timestamptz DEFAULT now())")
        h.sql(f"INSERT INTO {pg_ident(schema)}.{pg_ident(table)} (id, {pg_ident('order')}) SELECT g, 'v' || g FROM generate_series(1, %s) g", [n + 2])
    project = h.tmp / "proj"
    project.mkdir()
    (project / "headwater.yml").write_text(
        "name: names\nsources:\n  app:\n    type: postgres\n    url: " + h.url + "\n    schema: " + json.dumps(schema) + "\n"
        "    overrides:\n      " + json.dumps("my.table") + ":\n        deletes: tombstone\n",
        encoding="utf-8",
    )
    first = _headwater("sync", "--json", cwd=project)
    assert first.returncode == 0, first.stderr
    assert {t["table"]: t["rows"] for t in json.loads(first.stdout)["sources"]["app"]} == {t: n + 2 for n, t in enumerate(ODD_TABLES)}
    for table in ODD_TABLES:
        h.sql(f"UPDATE {pg_ident(schema)}.{pg_ident(table)} SET {pg_ident('order')} = 'changed' WHERE id = 1")
        h.sql(f"DELETE FROM {pg_ident(schema)}.{pg_ident(table)} WHERE id = 2")
    second = _headwater("sync", "--json", cwd=project)
    assert second.returncode == 0, second.stderr
    stats = {t["table"]: t for t in json.loads(second.stdout)["sources"]["app"]}
    assert all(s["mode"] == "incremental" and s["rows_read"] == 1 and s["deleted"] == 1 for s in stats.values()), stats
    one = _headwater("sync", "app", "it's", cwd=project)
    assert one.returncode == 0, one.stderr
    con = duckdb.connect(str(project / ".headwater/warehouse/build.duckdb"), read_only=True)
    try:
        for table in ODD_TABLES:
            alive = " WHERE _headwater_deleted_at IS NULL" if table == "my.table" else ""
            rows = con.execute(f'SELECT id, "order" FROM raw_app.{pg_ident(table)}{alive} ORDER BY id').fetchall()
            assert rows == h.sql(f"SELECT id, {pg_ident('order')} FROM {pg_ident(schema)}.{pg_ident(table)} ORDER BY id"), table
    finally:
        con.close()
