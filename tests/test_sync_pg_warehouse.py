"""The sync into a PostgreSQL warehouse: every value exact, or refused with an error that says why.

A PostgreSQL source database and a PostgreSQL warehouse database on the session's server, both
named in a project's headwater.yml; the sync runs as `headwater sync` runs it
(`open_warehouse` -> `connect_build` -> `load_raw`). The warehouse
is read back with psycopg, never through DuckDB, which wrote it.

What each source type becomes in the warehouse (``format_type`` of the raw column), asserted by
`test_every_type_round_trips_into_a_postgres_warehouse` (values: the same Python value and the
same PostgreSQL text, row for row, NULLs and extremes included) and, from "a domain" on, by
`test_types_without_a_twin_arrive_as_their_documented_text` (PostgreSQL's text of what raw holds
equals the source's text of the documented expression, e.g. ``abbrev(ip)``):

    source (PostgreSQL)           warehouse raw column          value
    integer, bigint, smallint     the same                      exact
    real, double precision        the same                      exact (NaN, ±Infinity, -0 included)
    boolean, date, uuid, bytea    the same                      exact (dates to 5874897 AD and 4713 BC)
    time, interval                the same                      exact (24:00:00; ±178,000,000 years)
    timestamp, timestamptz        the same                      exact (-infinity/infinity; DuckDB's range, else refused)
    numeric(12,3), numeric(38,10) the same                      exact
    numeric (unconstrained)       character varying             its exact text (40 digits, NaN; no type)
    json                          json                          the same text (duplicate keys, \\u0000 kept)
    jsonb                         json                          jsonb's own text (normalised as jsonb shows it)
    integer[]                     integer[]                     exact
    text[]                        character varying[]           exact; an element spelled NULL is refused (below)
    text, varchar(n)              character varying             exact (the length limit is not kept)
    an enum                       character varying             its label
    a domain                      its base type                 exact
    uuid[] date[] timestamp[] timestamptz[] boolean[] smallint[] real[] double precision[]: the same, exact
    timetz                        time with time zone           exact (offsets to ±15:59)
    money                         numeric(20,2)                 exact
    numeric(40,5) (> 38 digits)   character varying             its exact text
    inet                          character varying             abbrev(): PostgreSQL's text without /32, /128
    char(3)                       character varying             padded to 3, as clients read it
    interval[] bytea[] numeric[] an enum[]  character varying[] each element's text
    jsonb[], json[]               json                          one JSON array (NULL elements as null)
    point, int8range, bit(n), varbit, xml   character varying   PostgreSQL's text

Refused, naming table, column and key (`PostgresRaw.refused`), raw and state left as they were: a
text array element spelled ``NULL`` (any case), which would arrive as a NULL element (DuckDB's
postgres extension writes a table with array columns by COPY in text format without quoting such
elements), and text with a NUL byte (a SQLite source's), which PostgreSQL's text cannot hold.

A MySQL source's BIGINT UNSIGNED and BIT(64) (DuckDB's UBIGINT) land in numeric(20,0), exact up
to 18446744073709551615 (an INT UNSIGNED column, bigint in raw, widens to it when it grows). No source Headwater has yields a HUGEINT (PostgreSQL's and MySQL's
numeric(38,0) are DECIMAL(38,0); SQLite's and files' integers BIGINT), so that cast has no
end-to-end test here.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conformance import same
from psycopg.types.datetime import DateLoader, IntervalLoader, TimeLoader, TimestampLoader, TimestamptzLoader
from sqlalchemy.engine import make_url

from headwater.config import LoadedProject, load_project
from headwater.errors import HeadwaterError
from headwater.sources import extensions_for, open_source
from headwater.sync import TableStats
from headwater.warehouse import open_warehouse

pytestmark = pytest.mark.postgres


def plain_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def libpq(url: str) -> str:
    u = make_url(url)
    return f"host={u.host} port={u.port} user={u.username} dbname={u.database}" + (f" password={u.password}" if u.password else "")


def _lenient(base: type[Any]) -> type[Any]:
    """A psycopg loader giving the PostgreSQL text of a value Python's types cannot hold (infinity,
    years past 9999 or BC, 24:00:00), the loaded value otherwise."""

    class Lenient(base):  # type: ignore[misc, valid-type]
        def load(self, data: Any) -> Any:
            try:
                return super().load(data)
            except (psycopg.DataError, OverflowError, ValueError):
                return ("beyond Python", bytes(data).decode())

    return Lenient


def connect(url: str) -> psycopg.Connection[Any]:
    con = psycopg.connect(libpq(url), autocommit=True)
    for name, loader in (("date", DateLoader), ("time", TimeLoader), ("timestamp", TimestampLoader), ("timestamptz", TimestamptzLoader), ("interval", IntervalLoader)):
        con.adapters.register_loader(name, _lenient(loader))
    con.execute("SET TimeZone = 'UTC'")
    return con


def syncing(project: Any, source: str) -> Any:
    """A function syncing ``source`` of ``project`` into its warehouse, as a pipeline's sync step does."""
    warehouse = open_warehouse(project.root, project.config.warehouse)
    settings = project.config.sources[source]

    def sync() -> list[TableStats]:
        build = warehouse.connect_build(sync_extensions=extensions_for([settings]))
        try:
            return warehouse.load_raw(build, open_source(source, settings, project.root), lambda _: None)
        finally:
            build.close()

    return sync


def types_of(con: psycopg.Connection[Any], relation: str) -> dict[str, str]:
    """Column -> format_type, in the column order."""
    query = "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    return dict(con.execute(query, [relation]).fetchall())


@pytest.fixture
def warehouse_url(postgres_url: str) -> Iterator[str]:
    """A second fresh database on the session's server: the warehouse (the source is `fresh_pg_database`)."""
    name = f"hw_wh_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(libpq(postgres_url), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield plain_url(make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


class Pair:
    """A project syncing source ``app`` (PostgreSQL) into a PostgreSQL warehouse."""

    def __init__(self, source_url: str, warehouse_url: str, root: Path) -> None:
        self.source_url, self.warehouse_url, self.root = plain_url(source_url), warehouse_url, root
        self.env = {"SRC_URL": self.source_url, "WH_URL": self.warehouse_url}
        self.src, self.wh = connect(self.source_url), connect(self.warehouse_url)
        self.log: list[str] = []
        self.configure()

    def configure(self, **settings: Any) -> None:
        """headwater.yml naming the warehouse and the source (with these source settings)."""
        source = {"type": "postgres", "url": "${SRC_URL}", **settings}
        project = {"name": "pgwh", "warehouse": {"type": "postgres", "url": "${WH_URL}"}, "sources": {"app": source}}
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "headwater.yml").write_text(json.dumps(project, indent=2), encoding="utf-8")  # JSON is YAML

    def project(self) -> LoadedProject:
        return load_project(self.root, env=self.env)

    def sync(self, *, tables: list[str] | None = None, full_refresh: bool = False) -> dict[str, TableStats]:
        project = self.project()
        warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
        settings = project.config.sources["app"]
        con = warehouse.connect_build(sync_extensions=extensions_for([settings]))
        try:
            stats = warehouse.load_raw(con, open_source("app", settings, project.root), self.log.append, tables=tables, full_refresh=full_refresh)
        finally:
            con.close()
        return {s.table: s for s in stats}

    def rows(self, side: psycopg.Connection[Any], relation: str, columns: str = "*", order: str = "id") -> list[tuple[Any, ...]]:
        return side.execute(f"SELECT {columns} FROM {relation} ORDER BY {order}").fetchall()

    def source_rows(self, table: str, columns: str = "*") -> list[tuple[Any, ...]]:
        return self.rows(self.src, f"public.{table}", columns)

    def raw_rows(self, table: str, columns: str | None = None) -> list[tuple[Any, ...]]:
        return self.rows(self.wh, f"raw_app.{table}", columns or self.columns(table))

    def columns(self, table: str, cast: str = "") -> str:
        """The source table's columns, in order, as a select list (each cast to ``cast``, e.g. ``::text``)."""
        names = [r[0] for r in self.src.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", [f"public.{table}"])]
        return ", ".join(f'"{n}"{cast}' for n in names)

    def row_texts(self, table: str) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
        """The source's rows and raw's, each value as PostgreSQL's text of it."""
        columns = self.columns(table, "::text")
        return set(self.source_rows(table, columns)), set(self.raw_rows(table, columns))

    def types(self, side: psycopg.Connection[Any], relation: str) -> dict[str, str]:
        return types_of(side, relation)

    def state(self, table: str) -> dict[str, Any] | None:
        row = self.wh.execute("SELECT state FROM _headwater.sync_state WHERE source = 'app' AND table_name = %s", [table]).fetchone()
        return None if row is None else (row[0] if isinstance(row[0], dict) else json.loads(row[0]))

    def close(self) -> None:
        self.src.close()
        self.wh.close()


@pytest.fixture
def pair(fresh_pg_database: str, warehouse_url: str, tmp_path: Path) -> Iterator[Pair]:
    p = Pair(fresh_pg_database, warehouse_url, tmp_path / "project")
    yield p
    p.close()


# --- 1. types ---------------------------------------------------------------------------------------

TYPED = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE typed (
  id integer PRIMARY KEY, e mood, j json, jb jsonb, ai int[], tags text[], n numeric(12,3), n38 numeric(38,10), nu numeric,
  tz timestamptz, ts timestamp, d date, t time, iv interval, u uuid, b bytea, bo boolean, bi bigint, si smallint,
  r real, dp double precision, tx text
);
INSERT INTO typed VALUES
 (1, 'happy', '{"b": 1, "a": [1, 2.50],  "a": 3, "u": "\u00e9\u0000"}', '{"z": 1, "a": {"x": null}, "f": 1.50, "big": 123456789012345678901234567890}',
  '{1,2,NULL}', '{"a","b c",NULL,"é\"x","","\\\\","{}"," sp "}', 12.345, 1234567890123456789012345678.0123456789,
  1234567890123456789012345678901234567890.5, '2024-03-10 02:30:00.123456+05:30', '2024-03-10 02:30:00.5', '2024-02-29', '23:59:59.999999',
  '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\xdeadbeef00', true, 9223372036854775807, -32768, 1.5, 2.25,
  E'héllo ✓ 𝄞 \t tab \\ back '' quote "dq" \r\n line \x01 \x7f \b \\N'),
 (2, 'sad', '[]', '"just a string"', '{}', '{}', -999999999.999, -0.0000000001, 'NaN', '-infinity', '-infinity', '-infinity', '00:00:00',
  '-178000000 years', '00000000-0000-0000-0000-000000000000', '\x', false, -9223372036854775808, 32767, 'NaN', '-0', ''),
 (3, 'ok', 'null', 'null', '{-2147483648,2147483647}', '{"tab\there","NULLS","nul"}', 0, 99999999999999999999999999.9999999999,
  '-0.000000000000000000000000000000000000001', '4713-11-24 00:00:00+00 BC', '294247-01-10 04:00:54.775806', '5874897-12-31', '24:00:00',
  '-1 days +00:00:00.000001', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '\x00ff', NULL, 0, 0, '-Infinity', '4.9e-324', 'x'),
 (4, 'ok', '{}', '{}', NULL, NULL, 0.001, 1, '7', 'infinity', '2000-01-01', '4713-01-01 BC', '12:00', '178000000 years', NULL, NULL, NULL, 1, 1,
  'Infinity', '1e308', 'NULL'),
 (5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""

# column -> (the source's format_type, the warehouse's): the table in this module's docstring.
TYPE_TABLE = {
    "id": ("integer", "integer"),
    "e": ("mood", "character varying"),
    "j": ("json", "json"),
    "jb": ("jsonb", "json"),
    "ai": ("integer[]", "integer[]"),
    "tags": ("text[]", "character varying[]"),
    "n": ("numeric(12,3)", "numeric(12,3)"),
    "n38": ("numeric(38,10)", "numeric(38,10)"),
    "nu": ("numeric", "character varying"),
    "tz": ("timestamp with time zone", "timestamp with time zone"),
    "ts": ("timestamp without time zone", "timestamp without time zone"),
    "d": ("date", "date"),
    "t": ("time without time zone", "time without time zone"),
    "iv": ("interval", "interval"),
    "u": ("uuid", "uuid"),
    "b": ("bytea", "bytea"),
    "bo": ("boolean", "boolean"),
    "bi": ("bigint", "bigint"),
    "si": ("smallint", "smallint"),
    "r": ("real", "real"),
    "dp": ("double precision", "double precision"),
    "tx": ("text", "character varying"),
}


def test_every_type_round_trips_into_a_postgres_warehouse(pair: Pair) -> None:
    pair.src.execute(TYPED)
    stats = pair.sync()["typed"]
    assert (stats.mode, stats.rows) == ("full", 5)

    source_types, raw_types = pair.types(pair.src, "public.typed"), pair.types(pair.wh, "raw_app.typed")
    assert {c: (source_types[c], raw_types.get(c)) for c in source_types} == TYPE_TABLE
    assert list(raw_types)[len(TYPE_TABLE):] == ["_headwater_synced_at"]

    columns = list(TYPE_TABLE)
    source, raw = pair.source_rows("typed"), pair.raw_rows("typed")
    # Every value as PostgreSQL writes it: the same text, whatever the type became.
    as_text = ", ".join(f'"{c}"::text' for c in columns)
    assert pair.source_rows("typed", as_text) == pair.raw_rows("typed", as_text)
    # And as Python values, exactly (same type, floats by their bits, decimals with their scale).
    problems = []
    for s_row, r_row in zip(source, raw, strict=True):
        for column, s, r in zip(columns, s_row, r_row, strict=True):
            if column == "nu" and s is not None:  # unconstrained numeric: its exact text in varchar, NaN included
                if not (isinstance(r, str) and same(Decimal(r), s)):
                    problems.append(f"id {s_row[0]}, nu: source {s!r}, raw {r!r}")
            elif not same(s, r):
                problems.append(f"id {s_row[0]}, {column}: source {s!r}, raw {r!r}")
    assert problems == []
    assert [r[columns.index("nu")] for r in raw[:3]] == ["1234567890123456789012345678901234567890.5", "NaN", "-0.000000000000000000000000000000000000001"]
    assert raw[0][columns.index("jb")] == {"a": {"x": None}, "f": 1.50, "z": 1, "big": 123456789012345678901234567890}
    assert raw[1][columns.index("r")] != raw[1][columns.index("r")]  # NaN arrived as NaN

    # A second sync reads nothing and changes nothing.
    again = pair.sync()["typed"]
    assert (again.mode, again.rows_read, again.upserted, again.deleted) == ("incremental", 0, 0, 0)
    assert same(pair.raw_rows("typed"), raw)


MAPPED = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE mapped (
  id integer PRIMARY KEY, ttz timetz, n40 numeric(40,5), m money, ip inet, c char(3), vc varchar(10), dom posint,
  uu uuid[], da date[], tza timestamptz[], tsa timestamp[], ba bool[], fa float8[], r4 real[], i2 int2[],
  ia interval[], bya bytea[], na numeric[], ea mood[], jba jsonb[], pt point, i8 int8range, bits bit(4), vb varbit, x xml
);
INSERT INTO mapped VALUES
 (1, '23:59:59.999999+14:59', 123456789012345678901234567890123.45678, -92233720368547758.08, '::ffff:1.2.3.4/128', 'a', 'NULLS', 5,
  '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', '{infinity,2024-02-29,NULL}', '{"2024-01-01 00:00+03",-infinity}', '{"2020-01-01 00:00:00.000001"}',
  '{t,f,NULL}', '{NaN,-0,Infinity,1e-320}', '{1.5,NaN,-Infinity}', '{-32768,NULL}', '{"1 mon","-1 day",NULL}', '{"\x00ff",NULL}', '{1.5,NaN,NULL}',
  '{happy,NULL}', ARRAY['{"a": 1}'::jsonb, 'null', NULL], '(1.5,2)', '[1,10)', B'1010', B'1', '<a>x</a>'),
 (2, '00:00:00-15:59', -0.00001, 0, '10.0.0.0/8', 'abc', '', 1, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
  '(0,0)', 'empty', B'0000', B'', ''),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""

# column -> (source's format_type, warehouse's, the source expression whose text raw's value has, raw's expression)
MAPPED_TABLE = {
    "id": ("integer", "integer", "id", "id"),
    "ttz": ("time with time zone", "time with time zone", "ttz", "ttz"),
    "n40": ("numeric(40,5)", "character varying", "n40", "n40"),  # wider than DuckDB's DECIMAL(38): its text
    "m": ("money", "numeric(20,2)", "m::numeric(20,2)", "m"),
    "ip": ("inet", "character varying", "abbrev(ip)", "ip"),  # as PostgreSQL shows it (no /32, /128 for hosts)
    "c": ("character(3)", "character varying", "rpad(c::text, 3)", "c"),  # padded, as clients read char(3)
    "vc": ("character varying(10)", "character varying", "vc", "vc"),
    "dom": ("posint", "integer", "dom", "dom"),
    "uu": ("uuid[]", "uuid[]", "uu", "uu"),
    "da": ("date[]", "date[]", "da", "da"),
    "tza": ("timestamp with time zone[]", "timestamp with time zone[]", "tza", "tza"),
    "tsa": ("timestamp without time zone[]", "timestamp without time zone[]", "tsa", "tsa"),
    "ba": ("boolean[]", "boolean[]", "ba", "ba"),
    "fa": ("double precision[]", "double precision[]", "fa", "fa"),
    "r4": ("real[]", "real[]", "r4", "r4"),
    "i2": ("smallint[]", "smallint[]", "i2", "i2"),
    "ia": ("interval[]", "character varying[]", "ia::text[]", "ia"),  # each element's text
    "bya": ("bytea[]", "character varying[]", "bya::text[]", "bya"),
    "na": ("numeric[]", "character varying[]", "na::text[]", "na"),
    "ea": ("mood[]", "character varying[]", "ea::text[]", "ea"),
    "jba": ("jsonb[]", "json", "to_jsonb(jba)", "jba::jsonb"),  # one JSON array (jsonb's text: compared as jsonb)
    "pt": ("point", "character varying", "pt::text", "pt"),
    "i8": ("int8range", "character varying", "i8::text", "i8"),
    "bits": ("bit(4)", "character varying", "bits::text", "bits"),
    "vb": ("bit varying", "character varying", "vb::text", "vb"),
    "x": ("xml", "character varying", "x::text", "x"),
}


def test_types_without_a_twin_arrive_as_their_documented_text(pair: Pair) -> None:
    """The second half of the type table (module docstring): what has no DuckDB twin arrives as
    PostgreSQL's own text of it, or an exact numeric; compared as PostgreSQL writes each value."""
    pair.src.execute(MAPPED)
    assert pair.sync()["mapped"].rows == 3
    source_types, raw_types = pair.types(pair.src, "public.mapped"), pair.types(pair.wh, "raw_app.mapped")
    assert {c: (source_types[c], raw_types.get(c)) for c in source_types} == {c: t[:2] for c, t in MAPPED_TABLE.items()}
    wanted = pair.rows(pair.src, "public.mapped", ", ".join(f"({t[2]})::text" for t in MAPPED_TABLE.values()))
    got = pair.rows(pair.wh, "raw_app.mapped", ", ".join(f"({t[3]})::text" for t in MAPPED_TABLE.values()))
    differences = [f"id {w[0]}, {c}: source {a!r}, raw {b!r}" for w, g in zip(wanted, got, strict=True) for c, a, b in zip(MAPPED_TABLE, w, g, strict=True) if a != b]
    assert differences == []
    assert got[0][list(MAPPED_TABLE).index("c")] == "a  " and got[0][list(MAPPED_TABLE).index("ip")] == "::ffff:1.2.3.4"


@pytest.mark.parametrize("element", ["NULL", "null", "Null"])
def test_a_text_array_element_spelled_null_is_refused_not_loaded_as_null(pair: Pair, element: str) -> None:
    """DuckDB's postgres extension copies a table with array columns in text format and leaves an
    element spelled NULL unquoted, so PostgreSQL would read a NULL element. Its row is set aside in
    the quarantine, naming the key; raw keeps the others. Fixed, the row syncs."""
    pair.src.execute("CREATE TABLE t (id int PRIMARY KEY, tags text[], note text)")
    pair.src.execute("INSERT INTO t VALUES (1, '{a,\"NULLS\"}', 'NULL'), (2, NULL, NULL)")
    pair.sync()
    before = pair.raw_rows("t")
    assert before == [(1, ["a", "NULLS"], "NULL"), (2, None, None)]  # a scalar 'NULL' and 'NULLS' are fine

    pair.src.execute("INSERT INTO t VALUES (3, %s, 'x')", [["b", element, None]])
    assert pair.sync()["t"].quarantined == 1
    assert pair.raw_rows("t") == before
    ((key, column, rule, message),) = pair.wh.execute("SELECT key, column_name, rule, message FROM raw_app.t__quarantine").fetchall()
    assert (key, column, rule) == ("id=3", "tags", "refused") and "NULL" in message

    pair.src.execute("UPDATE t SET tags = '{b,\"N U L L\"}' WHERE id = 3")
    assert pair.sync()["t"].quarantined == 0
    assert pair.raw_rows("t") == pair.source_rows("t") == [*before, (3, ["b", "N U L L"], "x")]
    assert pair.wh.execute("SELECT to_regclass('raw_app.t__quarantine')").fetchone() == (None,)


def test_a_table_name_longer_than_postgresql_keeps_is_refused_not_cut(warehouse_url: str, tmp_path: Path) -> None:
    """PostgreSQL cuts names to 63 bytes: two source tables alike in their first 63 would land on one
    raw table. A longer name fails its table with a clear error; the others sync."""
    root = tmp_path / "project"
    root.mkdir()
    long_a, long_b = "a" * 63 + "_one", "a" * 63 + "_two"
    lite = sqlite3.connect(root / "app.db")
    for name in (long_a, long_b, "short"):
        lite.execute(f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY, body TEXT)')
        lite.execute(f"INSERT INTO \"{name}\" VALUES (1, '{name[-5:]}')")
    lite.commit()
    (root / "headwater.yml").write_text('name: pgwh_long\nwarehouse: {type: postgres, url: "${WH_URL}"}\nsources:\n  app: {type: sqlite, path: app.db}\n', encoding="utf-8")
    project = load_project(root, env={"WH_URL": warehouse_url})
    with pytest.raises(HeadwaterError) as info:
        syncing(project, "app")()
    text = f"{info.value.what} {info.value.why}"
    assert "longer than the warehouse keeps (63)" in text and long_a in text and long_b in text
    wh = connect(warehouse_url)
    try:
        assert wh.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw_app'").fetchall() == [("short",)]
        assert wh.execute("SELECT id, body FROM raw_app.short").fetchall() == [(1, "short")]
    finally:
        wh.close()


def _nul_project(root: Path, warehouse_url: str, extra: str = "") -> tuple[sqlite3.Connection, LoadedProject]:
    root.mkdir()
    lite = sqlite3.connect(root / "app.db")
    lite.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    lite.execute("CREATE TABLE other (id INTEGER PRIMARY KEY, body TEXT)")
    lite.execute("INSERT INTO notes VALUES (1, 'fine'), (7, 'a' || char(0) || 'b'), (8, 'eight')")
    lite.execute("INSERT INTO other VALUES (1, 'x')")
    lite.commit()
    (root / "headwater.yml").write_text(f'name: pgwh_lite\nwarehouse: {{type: postgres, url: "${{WH_URL}}"}}\nsources:\n  app: {{type: sqlite, path: app.db{extra}}}\n', encoding="utf-8")
    return lite, load_project(root, env={"WH_URL": warehouse_url})


def test_a_row_with_text_postgresql_cannot_hold_is_quarantined_and_synced_once_fixed(warehouse_url: str, tmp_path: Path) -> None:
    """PostgreSQL's text cannot hold character 0; SQLite's can (and DuckDB's). The row is set aside
    in the table's quarantine with its key, column, value and the warehouse's reason; the other rows
    sync. Fixed in the source, it syncs, and the quarantine (empty) is gone; a row refused and then
    deleted in the source leaves it too."""
    lite, project = _nul_project(tmp_path / "project", warehouse_url)
    sync = syncing(project, "app")
    wh = connect(warehouse_url)
    try:
        stats = {s.table: s for s in sync()}
        assert stats["notes"].quarantined == 1 and "raw_app.notes__quarantine" in " ".join(stats["notes"].notes)
        assert wh.execute("SELECT id, body FROM raw_app.notes ORDER BY id").fetchall() == [(1, "fine"), (8, "eight")]
        assert wh.execute("SELECT key, column_name, original_value, rule, message FROM raw_app.notes__quarantine").fetchall() == [
            ("id=7", "body", "a\\0b", "refused", "text with a NUL byte (character 0), which PostgreSQL's text cannot hold")
        ]
        assert wh.execute("SELECT id, body FROM raw_app.other").fetchall() == [(1, "x")]

        lite.execute("UPDATE notes SET body = 'eight' || char(0) WHERE id = 8")  # a row raw holds, now refused
        lite.commit()
        sync()
        assert wh.execute("SELECT id, body FROM raw_app.notes ORDER BY id").fetchall() == [(1, "fine")]
        assert wh.execute("SELECT key FROM raw_app.notes__quarantine ORDER BY key").fetchall() == [("id=7",), ("id=8",)]

        lite.execute("UPDATE notes SET body = 'ab' WHERE id = 7")
        lite.execute("DELETE FROM notes WHERE id = 8")
        lite.commit()
        stats = {s.table: s for s in sync()}
        assert stats["notes"].quarantined == 0
        assert wh.execute("SELECT id, body FROM raw_app.notes ORDER BY id").fetchall() == [(1, "fine"), (7, "ab")]
        assert wh.execute("SELECT to_regclass('raw_app.notes__quarantine')").fetchone()[0] is None
    finally:
        wh.close()
        lite.close()


def test_with_on_refused_fail_the_table_fails_naming_column_and_key(warehouse_url: str, tmp_path: Path) -> None:
    """``on_refused: fail``: the table's sync stops with the warehouse's reason, table, column and
    key (not blamed on the source file); the other tables sync."""
    lite, project = _nul_project(tmp_path / "project", warehouse_url, ", on_refused: fail")
    sync = syncing(project, "app")
    with pytest.raises(HeadwaterError) as info:
        sync()
    assert info.value.what.startswith("Source 'app': column notes.body (key id=7) holds text with a NUL byte")
    assert "SQLite" not in info.value.what and "changed while it was read" not in (info.value.fix or "")
    wh = connect(warehouse_url)
    try:
        assert wh.execute("SELECT id, body FROM raw_app.other").fetchall() == [(1, "x")]
        assert wh.execute("SELECT to_regclass('raw_app.notes')").fetchone()[0] is None
        lite.execute("UPDATE notes SET body = 'ab' WHERE id = 7")
        lite.commit()
        sync()
        assert wh.execute("SELECT id, body FROM raw_app.notes ORDER BY id").fetchall() == [(1, "fine"), (7, "ab"), (8, "eight")]
    finally:
        wh.close()
        lite.close()


def test_a_warehouse_user_that_cannot_create_schemas_gets_the_grant_to_ask_for(pair: Pair, postgres_url: str) -> None:
    """Before any table: raw_<source> and _headwater are created in the warehouse. A user without
    CREATE on the database gets the warehouse's own error and the GRANT that fixes it."""
    role = f"hw_weak_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(libpq(postgres_url), autocommit=True)
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        pair.src.execute("CREATE TABLE t (id int PRIMARY KEY)")
        pair.env["WH_URL"] = make_url(pair.warehouse_url).set(username=role).render_as_string(hide_password=False)
        with pytest.raises(HeadwaterError) as info:
            pair.sync()
        database = make_url(pair.warehouse_url).database
        assert info.value.what.startswith("Cannot use the warehouse database") and f"/{database}" in info.value.what
        assert "permission denied for database" in (info.value.why or "")
        assert f"GRANT CREATE ON DATABASE {database} TO" in (info.value.fix or "")
    finally:
        admin.execute(f'DROP ROLE "{role}"')
        admin.close()


def test_a_raw_table_the_warehouse_user_may_not_write_is_the_warehouse_s_error_not_the_source_s(pair: Pair, postgres_url: str) -> None:
    """Raw tables created by another user (a restore, a DBA): the write fails in the warehouse, and
    the error says so, not "permission denied on <the source>" with a GRANT SELECT for the source."""
    pair.src.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pair.src.execute("INSERT INTO t VALUES (1, 'a')")
    pair.sync()
    role = f"hw_other_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(libpq(postgres_url), autocommit=True)
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    database = make_url(pair.warehouse_url).database
    try:
        pair.wh.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
        pair.wh.execute(f'GRANT USAGE, CREATE ON SCHEMA raw_app, _headwater TO "{role}"')
        pair.wh.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON _headwater.sync_state TO "{role}"')
        pair.wh.execute(f'GRANT SELECT ON raw_app.t TO "{role}"')
        pair.env["WH_URL"] = make_url(pair.warehouse_url).set(username=role).render_as_string(hide_password=False)
        pair.src.execute("UPDATE t SET v = 'b'")
        with pytest.raises(HeadwaterError) as info:
            pair.sync()
        assert info.value.what.startswith(f"Cannot use the warehouse database 127.0.0.1:{make_url(postgres_url).port}/{database}") and "table t" in info.value.what
        assert "permission denied for table t" in (info.value.why or "")
        assert "OWNER TO" in (info.value.fix or "") and "SELECT" not in (info.value.fix or "")
        assert pair.raw_rows("t") == [(1, "a")]
    finally:
        pair.wh.execute(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE "{role}"')
        admin.close()


def test_a_table_whose_first_load_fails_is_reported_and_the_others_sync(pair: Pair) -> None:
    """The failed load's CREATE TABLE is rolled back in PostgreSQL; DuckDB's copy of the warehouse's
    catalog must forget it too, or the table's own error is lost to one about a missing relation
    (``on_refused: fail``), or the load made again without the refused row fails (the default)."""
    pair.configure(on_refused="fail")
    pair.src.execute("CREATE TABLE a_bad (id int PRIMARY KEY, tags text[])")
    pair.src.execute("INSERT INTO a_bad VALUES (1, '{x,NULL}'), (2, %s)", [["y", "null"]])
    pair.src.execute("CREATE TABLE b_good (id int PRIMARY KEY, v text)")
    pair.src.execute("INSERT INTO b_good VALUES (1, 'one')")
    with pytest.raises(HeadwaterError) as info:
        pair.sync()
    assert "column a_bad.tags (key id=2)" in info.value.what
    stats = {s.table: s for s in info.value.table_stats or []}
    assert (stats["a_bad"].mode, stats["a_bad"].rows) == ("failed", 0) and stats["b_good"].mode == "full"
    assert pair.wh.execute("SELECT to_regclass('raw_app.a_bad')").fetchone()[0] is None and pair.state("a_bad") is None
    assert pair.raw_rows("b_good") == [(1, "one")]

    pair.configure()
    assert pair.sync()["a_bad"].quarantined == 1
    assert pair.raw_rows("a_bad") == [(1, ["x", None])]


def test_json_arrays_with_null_elements_arrive_as_json(pair: Pair) -> None:
    """jsonb[] and json[] have no PostgreSQL twin DuckDB can write (arrays of json would need the
    elements' text): each array lands as one json value, NULL elements as JSON null."""
    pair.src.execute("CREATE TABLE docs (id int PRIMARY KEY, jb jsonb[], j json[])")
    pair.src.execute("""INSERT INTO docs VALUES
        (1, ARRAY['{"a": 1}'::jsonb, 'null', NULL, '"NULL"', '[1, 2.50]'], ARRAY['{"b": [true, null]}'::json, NULL]),
        (2, '{}', '{}'), (3, NULL, NULL), (4, ARRAY[NULL]::jsonb[], ARRAY[NULL]::json[])""")
    stats = pair.sync()["docs"]
    assert stats.rows == 4
    assert {c: t for c, t in pair.types(pair.wh, "raw_app.docs").items() if c != "_headwater_synced_at"} == {"id": "integer", "jb": "json", "j": "json"}
    assert pair.raw_rows("docs") == [
        (1, [{"a": 1}, None, None, "NULL", [1, 2.5]], [{"b": [True, None]}, None]),
        (2, [], []),
        (3, None, None),
        (4, [None], [None]),
    ]
    source = pair.src.execute("SELECT id, to_json(jb)::text, to_json(j)::text FROM docs ORDER BY id").fetchall()
    assert [(i, json.loads(a) if a else None, json.loads(b) if b else None) for i, a, b in source] == [
        (i, json.loads(a) if a else None, json.loads(b) if b else None) for i, a, b in pair.raw_rows("docs", "id, jb::text, j::text")
    ]


# Incremental syncs by transaction ids, schema drift and syncs killed at random moments with writers
# running: tests/test_sync_postgres.py runs those on both warehouses (tests/warehouses.py).


# --- 4. unsigned 64-bit integers (MySQL) ---------------------------------------------------------------


@pytest.mark.mysql
def test_mysql_bigint_unsigned_lands_exact_in_numeric_20(mysql_server: Any, fresh_mysql_database: str, warehouse_url: str, tmp_path: Path) -> None:
    """DuckDB reads BIGINT UNSIGNED (and BIT(64)) as UBIGINT, which PostgreSQL has no type for: the
    sync casts it to DECIMAL(20,0) in DuckDB and the warehouse holds numeric(20,0)."""
    con = mysql_server.connect(fresh_mysql_database)
    with con.cursor() as cur:
        cur.execute("CREATE TABLE big (id INT PRIMARY KEY, ub BIGINT UNSIGNED, ui INT UNSIGNED, b64 BIT(64), ti TINYINT)")
        cur.executemany("INSERT INTO big VALUES (%s, %s, %s, %s, %s)", [
            (1, 18446744073709551615, 4294967295, 18446744073709551615, -128),
            (2, 9223372036854775808, 0, 1, 127),
            (3, 0, None, None, None),
            (4, None, 1, 0, 0),
        ])
    root = tmp_path / "project"
    root.mkdir()
    (root / "headwater.yml").write_text(textwrap.dedent("""\
        name: pgwh_mysql
        warehouse: {type: postgres, url: "${WH_URL}"}
        sources:
          app: {type: mysql, url: "${MY_URL}"}
    """), encoding="utf-8")
    project = load_project(root, env={"WH_URL": warehouse_url, "MY_URL": mysql_server.url(fresh_mysql_database)})
    sync = syncing(project, "app")

    sync()
    wh = connect(warehouse_url)
    try:
        assert types_of(wh, "raw_app.big") == {"id": "integer", "ub": "numeric(20,0)", "ui": "bigint", "b64": "numeric(20,0)", "ti": "smallint", "_headwater_synced_at": "timestamp with time zone"}
        expected = [
            (1, Decimal(18446744073709551615), 4294967295, Decimal(18446744073709551615), -128),
            (2, Decimal(9223372036854775808), 0, Decimal(1), 127),
            (3, Decimal(0), None, None, None),
            (4, None, 1, Decimal(0), 0),
        ]
        raw = wh.execute("SELECT id, ub, ui, b64, ti FROM raw_app.big ORDER BY id").fetchall()
        assert [tuple(r) for r in raw] == expected
        assert wh.execute("SELECT ub::text FROM raw_app.big WHERE id = 1").fetchone()[0] == "18446744073709551615"

        # A second sync compares the columns it reads with what the warehouse reports back: no drift.
        with con.cursor() as cur:
            cur.execute("UPDATE big SET ub = 18446744073709551614 WHERE id = 2")
        sync()
        assert wh.execute("SELECT ub FROM raw_app.big WHERE id = 2").fetchone()[0] == Decimal(18446744073709551614)
        assert types_of(wh, "raw_app.big")["ub"] == "numeric(20,0)"

        # INT UNSIGNED -> BIGINT UNSIGNED: raw's bigint widened to numeric(20,0) in PostgreSQL.
        with con.cursor() as cur:
            cur.execute("ALTER TABLE big MODIFY ui BIGINT UNSIGNED")
            cur.execute("UPDATE big SET ui = 18446744073709551615 WHERE id = 3")
        sync()
        assert types_of(wh, "raw_app.big")["ui"] == "numeric(20,0)"
        assert wh.execute("SELECT id, ui FROM raw_app.big ORDER BY id").fetchall() == [(1, Decimal(4294967295)), (2, Decimal(0)), (3, Decimal(18446744073709551615)), (4, Decimal(1))]
    finally:
        wh.close()
        con.close()


def test_a_sqlite_type_quarantine_emptied_by_a_fix_is_dropped_and_the_table_syncs(warehouse_url: str, tmp_path: Path) -> None:
    """SQLite's own quarantine (rule "type") shares the table with refused rows. Fixed in the source,
    SQLite's check drops it inside the table's transaction; the sync must not then read it as a
    quarantine of refused rows that was there when the sync began."""
    root = tmp_path / "project"
    root.mkdir()
    lite = sqlite3.connect(root / "app.db")
    lite.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER, note TEXT)")  # text: a column PostgreSQL refuses values of
    lite.execute("INSERT INTO items VALUES (1, 1, 'a'), (2, 'five', 'b')")
    lite.commit()
    (root / "headwater.yml").write_text('name: pgwh_type\nwarehouse: {type: postgres, url: "${WH_URL}"}\nsources:\n  app: {type: sqlite, path: app.db}\n', encoding="utf-8")
    sync = syncing(load_project(root, env={"WH_URL": warehouse_url}), "app")
    wh = connect(warehouse_url)
    try:
        assert sync()[0].quarantined == 1
        assert wh.execute("SELECT key, rule FROM raw_app.items__quarantine").fetchall() == [("id=2", "type")]
        lite.execute("UPDATE items SET qty = 5 WHERE id = 2")
        lite.commit()
        assert sync()[0].quarantined == 0
        assert wh.execute("SELECT id, qty, note FROM raw_app.items ORDER BY id").fetchall() == [(1, 1, "a"), (2, 5, "b")]
        assert wh.execute("SELECT to_regclass('raw_app.items__quarantine')").fetchone() == (None,)
    finally:
        wh.close()
        lite.close()
