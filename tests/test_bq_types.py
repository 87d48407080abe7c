"""DuckDB's types through a BigQuery warehouse and back (src/headwater/warehouse/bigquery/types.py).

The round trip is the warehouse's: raw rows written to Parquet by DuckDB with `parquet_column`,
loaded by a load job (https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-parquet)
into a table made from `field`, downloaded with `read_table`; every value must come back as itself
(as `duck_type` reads it; JSON equal as JSON, since BigQuery normalises JSON text:
https://cloud.google.com/bigquery/docs/reference/standard-sql/json-data). Values BigQuery would store
as others are `refused`: each condition is tested with a value that trips it and its neighbour that
does not. Runs against the emulator (tests/bq.py); where it differs from BigQuery, the test says so.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import bq
import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st
from sync_harness import SEED_VARIABLE, random_seed

from headwater.sqltext import ident, literal

pytestmark = pytest.mark.bigquery

if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
    pytest.importorskip("google.cloud.bigquery", reason="the [bigquery] extra (in [test]) is not installed")
from google.cloud import bigquery  # noqa: E402  (CI fails here rather than skip)

from headwater.warehouse.bigquery.types import duck_type, field, parquet_column, read_table, refused  # noqa: E402

SEED = random_seed(default=19)

# column -> (DuckDB type as raw has it, SQL literals of values: extremes, unicode, NULL elements, ...).
# Left out on the emulator: HUGEINT and DECIMALs wider than NUMERIC, which `field` makes BIGNUMERIC:
# emulator differs from BigQuery: it has no BIGNUMERIC (creating such a table fails; docs/warehouses.md).
# `test_field_maps_wide_decimals_and_hugeint_to_bignumeric` covers their mapping.
COLUMNS: dict[str, tuple[str, list[str]]] = {
    "b": ("BOOLEAN", ["true", "false"]),
    "i1": ("TINYINT", ["-128", "127"]),
    "i2": ("SMALLINT", ["-32768", "32767"]),
    "i4": ("INTEGER", ["-2147483648", "2147483647", "0"]),
    "i8": ("BIGINT", ["-9223372036854775808", "9223372036854775807"]),
    "u1": ("UTINYINT", ["0", "255"]),
    "u2": ("USMALLINT", ["65535"]),
    "u4": ("UINTEGER", ["4294967295", "1"]),
    "u8": ("UBIGINT", ["18446744073709551615", "0"]),
    "n": ("DECIMAL(18,3)", ["-999999999999999.999", "0.001", "0"]),
    "n38": ("DECIMAL(38,9)", ["99999999999999999999999999999.999999999", "-0.000000001"]),  # NUMERIC's full range
    "n4": ("DECIMAL(4,4)", ["0.9999", "-0.0001"]),
    "f4": ("FLOAT", ["'nan'", "'-0.0'", "'inf'", "'-inf'", "1.5e-40", "3.4028235e38", "0.1"]),
    "f8": ("DOUBLE", ["'nan'", "'-0.0'", "'-inf'", "5e-324", "1.7976931348623157e308", "0.1"]),
    "s": ("VARCHAR", ["''", "'héllo, 世界 🦆'", "'NULL'", "'a' || chr(0) || 'b'", "'\"quoted\" ''single'' \\ back'", "' '"]),
    "e": ("ENUM('a', 'b c', 'é')", ["'a'", "'b c'", "'é'"]),
    "u": ("UUID", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'"]),
    "bytes": ("BLOB", ["'\\x00\\xff'::BLOB", "''::BLOB", "'abc'::BLOB"]),
    "d": ("DATE", ["'0001-01-01'", "'9999-12-31'", "'2024-02-29'", "'1970-01-01'"]),
    "t": ("TIME", ["'00:00:00'", "'23:59:59.999999'", "'12:34:56.000001'"]),
    "ts": ("TIMESTAMP", ["'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'", "'1969-12-31 23:59:59.999999'"]),
    "ts_s": ("TIMESTAMP_S", ["'2024-01-02 03:04:05'", "'0001-01-01 00:00:00'"]),
    "ts_ms": ("TIMESTAMP_MS", ["'2024-01-02 03:04:05.678'", "'9999-12-31 23:59:59.999'"]),
    "ts_ns": ("TIMESTAMP_NS", ["'2024-01-02 03:04:05.123456'", "'1677-09-22 00:00:00'", "'2262-04-11 23:47:16.854775'"]),
    "tstz": ("TIMESTAMP WITH TIME ZONE", ["'0001-01-01 00:00:00+00'", "'9999-12-31 23:59:59.999999+00'", "'2024-01-01 00:00:00+03'"]),
    "tz": ("TIME WITH TIME ZONE", ["'23:59:59.999999+15:59'", "'00:00:00-15:59'", "'12:00:00+00'"]),
    "iv": ("INTERVAL", ["'1 month -1 day 3 microseconds'", "'-178000000 years'", "'0 seconds'", "'25 hours'"]),
    "bit": ("BIT", ["'0101'", "'1'"]),
    "uh": ("UHUGEINT", ["340282366920938463463374607431768211455", "0"]),
    "vi": ("VARINT", ["'-123456789012345678901234567890123456789012345678901234567890'", "'0'"]),
    "un": ("UNION(k INTEGER, s VARCHAR)", ["union_value(k := 7)", "union_value(s := 'x')"]),
    "j": ("JSON", ["'{\"a\": [1, 2.50, null], \"b\": {\"c\": \"é\"}}'", "'null'", "'  [1,2] '", "'\"x\"'", "'{}'", "'-0.5e3'"]),
    "li": ("INTEGER[]", ["[]", "[NULL]", "[1, NULL, -2147483648]"]),
    "ls": ("VARCHAR[]", ["['', NULL, 'NULL', 'é']", "[]", "['a' || chr(0)]"]),
    "lf": ("DOUBLE[]", ["[-0.0, 1e308, 5e-324]", "[NULL, 0.1]"]),
    "ld": ("DATE[]", ["['infinity'::DATE, '-infinity'::DATE, '5881580-07-10'::DATE]", "[NULL]"]),  # text inside JSON: any date
    "lb": ("BLOB[]", ["['\\x00\\xff'::BLOB, NULL]"]),
    "lu": ("UBIGINT[]", ["[18446744073709551615, 0]"]),
    "ll": ("BIGINT[][]", ["[[], NULL, [1, NULL], [-9223372036854775808]]", "[[]]"]),
    "lj": ("JSON[]", ["['{\"a\": 1}'::JSON, NULL, 'null'::JSON]"]),
    "arr": ("INTEGER[2]", ["[1, NULL]", "[NULL, NULL]"]),
    "m": ("MAP(VARCHAR, INTEGER)", ["MAP {'a': 1, 'é': NULL}", "MAP {}"]),
    "mi": ("MAP(INTEGER, VARCHAR[])", ["MAP {1: ['x', NULL], -2: NULL}"]),
    "st": ("STRUCT(a INTEGER, b VARCHAR)", ["{'a': 1, 'b': 'x'}", "{'a': NULL, 'b': NULL}"]),
    "sn": (
        "STRUCT(u UUID, d DATE, nested STRUCT(h UBIGINT, tz TIMESTAMP WITH TIME ZONE, j JSON))",
        ["{'u': 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'd': '2024-02-29', 'nested': {'h': 18446744073709551615, 'tz': '2024-01-01 00:00:00+03', 'j': '[1]'}}", "{'u': NULL, 'd': NULL, 'nested': NULL}"],
    ),
    "sl": ("STRUCT(a INTEGER, l VARCHAR[])", ["{'a': 1, 'l': ['x', NULL]}", "{'a': NULL, 'l': NULL}", "{'a': 2, 'l': []}"]),
    "sq": ('STRUCT("my field" INTEGER)', ["{'my field': 5}"]),  # no BigQuery field name: JSON
}
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).map(literal)  # any unicode, NUL included


def _value(column: str) -> st.SearchStrategy[str]:
    kind, values = COLUMNS[column]
    choices = st.sampled_from(values) if column != "s" else st.one_of(st.sampled_from(values), TEXT)
    return st.one_of(st.just("NULL"), choices).map(lambda v: f"CAST({v} AS {kind})")


ROW = st.fixed_dictionaries({c: _value(c) for c in COLUMNS})


@pytest.fixture(scope="module")
def emulator_client(bigquery_emulator: bq.Emulator) -> Iterator[Any]:
    c = bq.client(bigquery_emulator)
    yield c
    c.close()


@pytest.fixture(scope="module")
def dataset(emulator_client: Any) -> Iterator[str]:
    """One dataset for this module's tables (the property test's examples share one table)."""
    name = f"hw_types_{uuid.uuid4().hex[:12]}"
    emulator_client.create_dataset(name, retry=None)
    yield name
    emulator_client.delete_dataset(name, delete_contents=True, not_found_ok=True, retry=None)


def run(client: Any, sql: str) -> None:
    client.query(sql, retry=None, job_retry=None).result(retry=None, timeout=30)


@pytest.fixture(scope="module")
def storage_client(bigquery_emulator: bq.Emulator) -> Any:
    """The Storage Read API client on the emulator's gRPC port (plain text, as tests/test_bigquery_emulator.py)."""
    import grpc
    from google.cloud import bigquery_storage
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    return bigquery_storage.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=grpc.insecure_channel(f"127.0.0.1:{bigquery_emulator.grpc_port}")))


def _same(a: Any, b: Any) -> bool:
    """Values equal exactly: NaN equals NaN, -0.0 is not 0.0, nested values element by element."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _as_json(text: str | None) -> Any:
    return None if text is None else json.loads(text, parse_float=Decimal)  # 2.50 == 2.5, 0.1 stays 0.1


def _expected(column: str, kind: str, back: str) -> str:
    """The raw value as `duck_type` reads it, by DuckDB's own cast (or ``to_json`` for JSON columns)."""
    if back == "JSON" and kind != "JSON":
        return f"to_json({ident(column)})"
    return f"CAST({ident(column)} AS {back})"


@pytest.fixture(scope="module")
def round_trip_table(emulator_client: Any, dataset: str) -> str:
    table_id = f"{emulator_client.project}.{dataset}.round_trip"
    schema = [bigquery.SchemaField("id", "INT64")] + [field(c, kind) for c, (kind, _) in COLUMNS.items()]
    emulator_client.create_table(bigquery.Table(table_id, schema=schema), retry=None)
    return table_id


@seed(SEED)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=1, max_size=8))
def test_raw_values_round_trip_through_parquet_a_load_job_and_read_table(emulator_client: Any, storage_client: Any, round_trip_table: str, tmp_path: Path, rows: list[dict[str, str]]) -> None:
    note(f"{SEED_VARIABLE}={SEED} replays this run")
    con = duckdb.connect()
    con.execute(f"CREATE TABLE raw (id INTEGER, {', '.join(f'{ident(c)} {kind}' for c, (kind, _) in COLUMNS.items())})")
    values = [f"({i}, {', '.join(row[c] for c in COLUMNS)})" for i, row in enumerate(rows)]
    con.execute(f"INSERT INTO raw VALUES {', '.join(values)}")
    for c, (kind, _) in COLUMNS.items():  # none of these values is refused (the test below trips each condition)
        for condition, what in refused(kind):
            hits = con.execute(f"SELECT id FROM raw WHERE {condition.replace('{c}', ident(c))}").fetchall()
            assert hits == [], f"{c} ({kind}): {what}"

    # The sync's way (docs of the warehouse): DuckDB writes Parquet, a load job replaces the table's rows.
    select = ", ".join(["id"] + [f"{parquet_column(c, kind)} AS {ident(c)}" for c, (kind, _) in COLUMNS.items()])
    path = tmp_path / "rows.parquet"
    con.execute(f"COPY (SELECT {select} FROM raw) TO {literal(str(path))} (FORMAT parquet)")
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE)
    with path.open("rb") as parquet:
        emulator_client.load_table_from_file(parquet, round_trip_table, job_config=config).result(retry=None, timeout=60)

    schema = emulator_client.get_table(round_trip_table, retry=None).schema
    backs = {f.name: duck_type(f) for f in schema}
    for how, reader in [("REST", None), ("Storage Read API", storage_client)]:
        con.execute("DROP TABLE IF EXISTS back")
        assert read_table(emulator_client, round_trip_table, con, "back", bqstorage_client=reader) == len(rows), how
        described = {str(name): str(kind) for name, kind, *_ in con.execute("DESCRIBE back").fetchall()}
        assert described == backs, how
        got = con.execute("SELECT * FROM back ORDER BY id").fetchall()
        want = con.execute(f"SELECT id, {', '.join(_expected(c, kind, backs[c]) for c, (kind, _) in COLUMNS.items())} FROM raw ORDER BY id").fetchall()
        names = ["id", *COLUMNS]
        differences = []
        for g, w in zip(got, want, strict=True):
            for name, back, raw in zip(names, g, w, strict=True):
                a, b = (_as_json(back), _as_json(raw)) if backs[name] == "JSON" else (back, raw)
                if not _same(a, b):
                    differences.append(f"{how}, row {g[0]}, {name} ({COLUMNS[name][0] if name != 'id' else 'INTEGER'}): read back {a!r}, raw {b!r}")
        assert differences == [], f"{SEED_VARIABLE}={SEED}\n" + "\n".join(differences)


# (DuckDB type, a value that trips a `refused` condition, its neighbour that does not, what the condition says).
# BigQuery's ranges: https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types
REFUSED: list[tuple[str, str, str, str]] = [
    ("DATE", "'infinity'", "'9999-12-31'", "infinite"),
    ("DATE", "'-infinity'", "'0001-01-01'", "infinite"),
    ("DATE", "'10000-01-01'", "'9999-12-31'", "outside"),
    ("DATE", "'0001-01-01'::DATE - 1", "'0001-01-01'", "outside"),
    ("TIMESTAMP", "'infinity'", "'9999-12-31 23:59:59.999999'", "infinite"),
    ("TIMESTAMP", "'10000-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'", "outside"),
    ("TIMESTAMP", "'0001-01-01 00:00:00'::TIMESTAMP - INTERVAL 1 MICROSECOND", "'0001-01-01 00:00:00'", "outside"),
    ("TIMESTAMP_S", "'10000-01-01 00:00:00'", "'9999-12-31 23:59:59'", "outside"),
    ("TIMESTAMP_MS", "'-infinity'", "'0001-01-01 00:00:00'", "infinite"),
    ("TIMESTAMP_NS", "'2024-01-01 00:00:00.000000001'", "'2024-01-01 00:00:00.000001'", "nanoseconds"),
    ("TIMESTAMP_NS", "'2024-01-01 00:00:00.999999999'", "'2024-01-01 00:00:00.999999'", "nanoseconds"),
    ("TIMESTAMP WITH TIME ZONE", "'infinity'", "'2024-01-01 00:00:00+00'", "infinite"),
    ("TIMESTAMP WITH TIME ZONE", "'9999-12-31 23:59:59.999999-01'", "'9999-12-31 23:59:59.999999+00'", "outside"),  # 10000-01-01 00:59 UTC
    ("TIMESTAMP WITH TIME ZONE", "'0001-01-01 00:00:00+01'", "'0001-01-01 00:00:00+00'", "outside"),  # 0000-12-31 23:00 UTC
    ("TIME", "'24:00:00'", "'23:59:59.999999'", "24:00:00"),
    ("TIME_NS", "'12:00:00.000000001'", "'12:00:00.000001'", "nanoseconds"),
    ("TIME_NS", "'24:00:00'", "'23:59:59.999999'", "24:00:00"),
    ("HUGEINT", "100000000000000000000000000000000000000", "99999999999999999999999999999999999999", "39 digits"),
    ("HUGEINT", "-100000000000000000000000000000000000000", "-99999999999999999999999999999999999999", "39 digits"),
    ("DOUBLE[]", "[1, 'nan'::DOUBLE]", "[1, 2, NULL]", "NaN"),
    ("FLOAT[][]", "[[], [0, '-inf'::FLOAT]]", "[[], [0, '-0.0'::FLOAT]]", "NaN"),
    ("MAP(VARCHAR, DOUBLE)", "MAP {'a': 'inf'}", "MAP {'a': 1e308}", "NaN"),
    ("STRUCT(a INTEGER, l DOUBLE[])", "{'a': 1, 'l': ['nan']}", "{'a': 1, 'l': [0.5]}", "NaN"),
    ("HUGEINT[]", "[18446744073709551616]", "[18446744073709551615]", "UINT64"),
    ("HUGEINT[]", "[-9223372036854775809]", "[-9223372036854775808]", "UINT64"),
    ("UHUGEINT[]", "[18446744073709551616]", "[18446744073709551615]", "UINT64"),
    ("DECIMAL(20,2)[]", "[123456789012345678.91]", "[1234567890123.45]", "round"),
    ("DECIMAL(38,10)[]", "[1234567890123456789.0123456789]", "[0.1, 1234567890.5]", "round"),
    ("STRUCT(d DATE)", "{'d': 'infinity'}", "{'d': '2024-01-01'}", "infinite"),  # a RECORD: its fields are BigQuery's types
    ("STRUCT(s STRUCT(t TIMESTAMP_NS))", "{'s': {'t': '2024-01-01 00:00:00.000000001'}}", "{'s': {'t': '2024-01-01'}}", "nanoseconds"),
]


def _tripped(duck: str, value: str) -> list[str]:
    """What `refused`'s conditions say of ``value`` (a SQL literal) as a raw value of ``duck``."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE raw AS SELECT CAST({value} AS {duck}) AS c")
    return [what for condition, what in refused(duck) if con.execute(f"SELECT {condition.replace('{c}', 'c')} FROM raw").fetchall() == [(True,)]]


@pytest.mark.parametrize(("duck", "bad", "good", "says"), REFUSED, ids=[f"{d}:{b}" for d, b, _, _ in REFUSED])
def test_refused_conditions_trip_on_the_value_and_not_on_its_neighbour(duck: str, bad: str, good: str, says: str) -> None:
    tripped = _tripped(duck, bad)
    assert len(tripped) == 1 and says in tripped[0], tripped
    assert _tripped(duck, good) == []
    assert _tripped(duck, "NULL") == []


def test_every_kind_of_refused_value_is_tested() -> None:
    """Each kind of value `refused` names, for the types above, is tripped by one of REFUSED's values."""
    tested = {what for duck, bad, _, _ in REFUSED for what in _tripped(duck, bad)}
    assert {what for duck in {d for d, *_ in REFUSED} for _, what in refused(duck)} == tested


WHOLE = ["BOOLEAN", "BIGINT", "UBIGINT", "DECIMAL(38,9)", "DOUBLE", "VARCHAR", "BLOB", "UUID", "JSON", "INTERVAL", "TIME WITH TIME ZONE"]


@pytest.mark.parametrize("duck", [*WHOLE, "DATE[]", "TIMESTAMP_NS[]", "VARCHAR[]", "BIGINT[]", "DECIMAL(15,2)[]", "STRUCT(a VARCHAR, b BLOB)"])
def test_types_bigquery_holds_whole_have_no_refused_values(duck: str) -> None:
    # Inside JSON (lists), dates and timestamps are text: any of DuckDB's, infinities and nanoseconds included.
    assert refused(duck) == []


# The brief's mapping (issue 19), each BigQuery type from
# https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types
FIELDS: list[tuple[str, str]] = [
    ("BOOLEAN", "BOOL"),
    ("TINYINT", "INT64"),
    ("SMALLINT", "INT64"),
    ("INTEGER", "INT64"),
    ("BIGINT", "INT64"),
    ("UTINYINT", "INT64"),
    ("USMALLINT", "INT64"),
    ("UINTEGER", "INT64"),
    ("UBIGINT", "NUMERIC"),
    ("HUGEINT", "BIGNUMERIC"),
    ("DECIMAL(18,3)", "NUMERIC"),
    ("DECIMAL(38,9)", "NUMERIC"),  # 29 integer digits, 9 decimals: NUMERIC's own
    ("DECIMAL(9,9)", "NUMERIC"),
    ("DECIMAL(10,10)", "BIGNUMERIC"),  # 10 decimals
    ("DECIMAL(30,0)", "BIGNUMERIC"),  # 30 integer digits
    ("DECIMAL(38,10)", "BIGNUMERIC"),
    ("DECIMAL(38,0)", "BIGNUMERIC"),
    ("FLOAT", "FLOAT64"),
    ("DOUBLE", "FLOAT64"),
    ("VARCHAR", "STRING"),
    ("ENUM('a', 'b')", "STRING"),
    ("UUID", "STRING"),
    ("BLOB", "BYTES"),
    ("DATE", "DATE"),
    ("TIME", "TIME"),
    ("TIME_NS", "TIME"),
    ("TIMESTAMP", "DATETIME"),
    ("TIMESTAMP_S", "DATETIME"),
    ("TIMESTAMP_MS", "DATETIME"),
    ("TIMESTAMP_NS", "DATETIME"),
    ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP"),
    ("TIME WITH TIME ZONE", "STRING"),
    ("INTERVAL", "STRING"),
    ("BIT", "STRING"),
    ("UHUGEINT", "STRING"),
    ("VARINT", "STRING"),
    ("UNION(a INTEGER, b VARCHAR)", "STRING"),
    ("JSON", "JSON"),
    ("INTEGER[]", "JSON"),
    ("INTEGER[3]", "JSON"),
    ("STRUCT(a INTEGER)[]", "JSON"),
    ("MAP(VARCHAR, INTEGER)", "JSON"),
    ("STRUCT(a INTEGER, b VARCHAR[])", "JSON"),
    ("STRUCT(a STRUCT(b MAP(INTEGER, INTEGER)))", "JSON"),
    ('STRUCT("a b" INTEGER)', "JSON"),  # no BigQuery field name
    ("STRUCT(a INTEGER, b STRUCT(c HUGEINT, d UUID))", "RECORD"),
]


@pytest.mark.parametrize(("duck", "bigquery_type"), FIELDS)
def test_field_types(duck: str, bigquery_type: str) -> None:
    made = field("col", duck)
    assert (made.name, made.field_type, made.mode) == ("col", bigquery_type, "NULLABLE")


def test_field_maps_wide_decimals_and_hugeint_to_bignumeric() -> None:
    # emulator differs from BigQuery: it has no BIGNUMERIC (a table with one cannot be created), so these
    # types are left out of the round trip; this checks the mapping and the Parquet column DuckDB writes.
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#decimal_types
    for duck in ("HUGEINT", "DECIMAL(38,10)", "DECIMAL(30,0)"):
        assert field("x", duck).field_type == "BIGNUMERIC"
    con = duckdb.connect()
    con.execute("CREATE TABLE raw (h HUGEINT, d DECIMAL(38,10))")
    con.execute("INSERT INTO raw VALUES (99999999999999999999999999999999999999, 1234567890123456789012345678.0123456789)")
    written = con.execute(f"SELECT {parquet_column('h', 'HUGEINT')}, {parquet_column('d', 'DECIMAL(38,10)')} FROM raw").fetchall()
    assert written == [(Decimal("99999999999999999999999999999999999999"), Decimal("1234567890123456789012345678.0123456789"))]
    # Read back: BIGNUMERIC holds up to 76 digits, beyond DuckDB's DECIMAL: its exact text.
    assert duck_type(bigquery.SchemaField("x", "BIGNUMERIC")) == "VARCHAR"
    assert duck_type(bigquery.SchemaField("x", "BIGNUMERIC", precision=20, scale=5)) == "DECIMAL(20,5)"
    assert duck_type(bigquery.SchemaField("x", "BIGNUMERIC", precision=60, scale=5)) == "VARCHAR"


def test_record_fields_keep_their_names_and_types() -> None:
    made = field("rec", "STRUCT(a INTEGER, b STRUCT(c HUGEINT, d UUID), e TIMESTAMP_NS)")
    assert made.to_api_repr() == {
        "name": "rec",
        "type": "RECORD",
        "mode": "NULLABLE",
        "fields": [
            {"name": "a", "type": "INT64", "mode": "NULLABLE"},
            {"name": "b", "type": "RECORD", "mode": "NULLABLE", "fields": [{"name": "c", "type": "BIGNUMERIC", "mode": "NULLABLE"}, {"name": "d", "type": "STRING", "mode": "NULLABLE"}]},
            {"name": "e", "type": "DATETIME", "mode": "NULLABLE"},
        ],
    }


@pytest.mark.parametrize("duck", ["GEOMETRY", "NOT A TYPE", "INTEGER("])
def test_unknown_types_are_a_users_error_naming_the_type(duck: str) -> None:
    from headwater.errors import HeadwaterError

    with pytest.raises(HeadwaterError, match="cannot hold") as raised:
        field("x", duck)
    assert duck in str(raised.value)
    with pytest.raises(HeadwaterError):
        parquet_column("x", duck)


def _read(client: Any, table_id: str) -> tuple[dict[str, str], list[tuple[Any, ...]], duckdb.DuckDBPyConnection]:
    """`read_table` of a table into DuckDB: its columns' DuckDB types, its rows (by id), the connection."""
    con = duckdb.connect()
    rows = read_table(client, table_id, con, "back")
    types = {str(name): str(kind) for name, kind, *_ in con.execute("DESCRIBE back").fetchall()}
    got = con.execute("SELECT * FROM back ORDER BY 1").fetchall()
    assert rows == len(got)
    assert types == {f.name: duck_type(f) for f in client.get_table(table_id, retry=None).schema}
    return types, got, con


def test_duck_type_of_what_dbt_models_produce_read_by_read_table(emulator_client: Any, dataset: str) -> None:
    """A table made by a query (as dbt's table materialization makes them) of each BigQuery type the
    emulator makes from a query, read back with `read_table`: `duck_type`'s types, the same values."""
    table_id = f"{emulator_client.project}.{dataset}.modelled"
    run(
        emulator_client,
        f"""CREATE TABLE `{table_id}` AS
        SELECT 1 AS id, 9223372036854775807 AS i, NUMERIC '-99999999999999999999999999999.999999999' AS n, CAST('nan' AS FLOAT64) AS f,
               TRUE AS b, 'héllo 世界' AS s, FROM_BASE64('AP8=') AS by, DATE '0001-01-01' AS d, DATETIME '9999-12-31 23:59:59.999999' AS dt,
               TIME '23:59:59.999999' AS t, TIMESTAMP '2024-01-01 00:00:00.000001+03' AS ts, [1, -2] AS a, ARRAY<STRING>[] AS ae,
               STRUCT(1 AS x, 'a' AS y, [STRUCT(2.5 AS z)] AS zs) AS st
        UNION ALL
        SELECT 2, NULL, NULL, -0.0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL""",
    )
    types, got, con = _read(emulator_client, table_id)
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types : each type and its DuckDB twin
    assert types == {
        "id": "BIGINT",
        "i": "BIGINT",
        "n": "DECIMAL(38,9)",
        "f": "DOUBLE",
        "b": "BOOLEAN",
        "s": "VARCHAR",
        "by": "BLOB",
        "d": "DATE",
        "dt": "TIMESTAMP",
        "t": "TIME",
        "ts": "TIMESTAMP WITH TIME ZONE",
        "a": "BIGINT[]",
        "ae": "VARCHAR[]",
        "st": "STRUCT(x BIGINT, y VARCHAR, zs STRUCT(z DOUBLE)[])",
    }
    want = con.execute(
        """SELECT 1, 9223372036854775807::BIGINT, -99999999999999999999999999999.999999999::DECIMAL(38,9), 'nan'::DOUBLE, true, 'héllo 世界',
                  '\\x00\\xff'::BLOB, DATE '0001-01-01', TIMESTAMP '9999-12-31 23:59:59.999999', TIME '23:59:59.999999',
                  TIMESTAMPTZ '2024-01-01 00:00:00.000001+03', [1, -2]::BIGINT[], []::VARCHAR[], {'x': 1, 'y': 'a', 'zs': [{'z': 2.5::DOUBLE}]}
           UNION ALL
           SELECT 2, NULL, NULL, -0.0::DOUBLE, NULL, NULL, NULL, NULL, NULL, NULL, NULL, []::BIGINT[], []::VARCHAR[], NULL ORDER BY 1"""
    ).fetchall()
    # BigQuery reads a NULL ARRAY back as [] (https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#array_type)
    differences = [f"row {g[0]}, {name}: read back {a!r}, expected {b!r}" for g, w in zip(got, want, strict=True) for name, a, b in zip(types, g, w, strict=True) if not _same(a, b)]
    assert differences == []


def test_json_geography_and_interval_columns_read_back(emulator_client: Any, dataset: str) -> None:
    ds = f"{emulator_client.project}.{dataset}"
    # emulator differs from BigQuery: CREATE TABLE AS SELECT makes a JSON value a STRING column, a GEOGRAPHY
    # a BYTES one and an INTERVAL a STRING one; tables with these types are created with their schema instead.
    run(emulator_client, f"CREATE TABLE `{ds}.made` AS SELECT JSON '1' AS j, ST_GEOGPOINT(1, 2) AS g, INTERVAL 1 DAY AS iv")
    assert [f.field_type for f in emulator_client.get_table(f"{ds}.made", retry=None).schema] == ["STRING", "BYTES", "STRING"]

    F = bigquery.SchemaField
    schema = [F("id", "INT64"), F("j", "JSON"), F("g", "GEOGRAPHY"), F("iv", "INTERVAL"), F("rec", "RECORD", fields=[F("j", "JSON"), F("iv", "INTERVAL")])]
    emulator_client.create_table(bigquery.Table(f"{ds}.typed", schema=schema), retry=None)
    run(
        emulator_client,
        f"""INSERT INTO `{ds}.typed` (id, j, g, iv, rec) VALUES
        (1, JSON '{{"b": [1, 2.5, null], "a": "é"}}', ST_GEOGPOINT(1.5, -2), INTERVAL '1-2 3 4:5:6.789' YEAR TO SECOND, STRUCT(JSON 'null', INTERVAL 5 DAY)),
        (2, JSON 'null', NULL, INTERVAL '0:0:0.000001' HOUR TO SECOND, NULL),
        (3, NULL, NULL, NULL, STRUCT(NULL, NULL))""",
    )
    types, got, _ = _read(emulator_client, f"{ds}.typed")
    assert types == {"id": "BIGINT", "j": "JSON", "g": "VARCHAR", "iv": "INTERVAL", "rec": "STRUCT(j JSON, iv INTERVAL)"}
    con = duckdb.connect()
    want = con.execute(
        """SELECT 1, INTERVAL '1 year 2 months 3 days 04:05:06.789', INTERVAL 5 DAY UNION ALL
           SELECT 2, INTERVAL '0.000001 seconds', NULL UNION ALL SELECT 3, NULL, NULL ORDER BY 1"""
    ).fetchall()
    assert [(r[0], r[3], r[4]["iv"] if r[4] else None) for r in got] == want
    assert [(_as_json(r[1]), _as_json(r[4]["j"]) if r[4] else None) for r in got] == [({"b": [1, Decimal("2.5"), None], "a": "é"}, None), (None, None), (None, None)]
    assert got[1][1] == "null"  # JSON null is a value, not SQL's NULL
    assert [r[2] for r in got] == ["POINT(1.5 -2)", None, None] or [r[2] for r in got] == ["POINT (1.5 -2)", None, None]  # WKT


# BigQuery's canonical INTERVAL text and what it is, from Google's documentation (each part has its own
# sign: https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#interval_type).
# emulator differs from BigQuery: it writes one sign in front and the parts without theirs (INTERVAL -7 HOUR
# reads "-0-0 0 7:0:0"), so negative intervals are checked here, against the documented text.
CANONICAL = [
    ("0-0 0 10:20:30.520", "10:20:30.52"),
    ("1-2 3 4:5:6.789", "1 year 2 months 3 days 04:05:06.789"),
    ("-1-2 -3 -4:5:6.5", "-1 year -2 months -3 days -04:05:06.5"),
    ("0-0 -10 0:0:0", "-10 days"),
    ("0-0 0 -0:0:0.000001", "-0.000001 seconds"),
    ("10000-0 3660000 87840000:0:0", "10000 years 3660000 days 87840000 hours"),  # the maxima
]


def test_interval_text_is_read_as_documented(emulator_client: Any, dataset: str) -> None:
    from headwater.warehouse.bigquery.types import _interval_from_text

    con = duckdb.connect()
    for text, duck in CANONICAL:
        assert con.execute(f"SELECT {_interval_from_text(literal(text))} = INTERVAL {literal(duck)}").fetchall() == [(True,)], text
    with pytest.raises(duckdb.Error, match="canonical"):
        con.execute(f"SELECT {_interval_from_text(literal('1 day'))}").fetchall()

    ds = f"{emulator_client.project}.{dataset}"
    emulator_client.create_table(bigquery.Table(f"{ds}.negative", schema=[bigquery.SchemaField("iv", "INTERVAL")]), retry=None)
    run(emulator_client, f"INSERT INTO `{ds}.negative` (iv) VALUES (INTERVAL -7 HOUR)")
    text = [r[0] for r in emulator_client.list_rows(f"{ds}.negative", selected_fields=[bigquery.SchemaField("iv", "STRING")], retry=None)]
    assert text == ["-0-0 0 7:0:0"]  # BigQuery: "0-0 0 -7:0:0"


def test_read_table_reads_page_by_page_and_empty_tables(emulator_client: Any, storage_client: Any, dataset: str) -> None:
    ds = f"{emulator_client.project}.{dataset}"
    run(emulator_client, f"CREATE TABLE `{ds}.many` AS SELECT n AS id, CONCAT('row ', CAST(n AS STRING)) AS s, [n, -n] AS a FROM UNNEST(GENERATE_ARRAY(1, 3000)) AS n")
    assert len(list(emulator_client.list_rows(f"{ds}.many", page_size=700, retry=None).pages)) == 5  # REST pages for real
    for reader, page_size in [(None, 700), (None, None), (storage_client, None)]:  # 5 pages of REST, then the defaults
        con = duckdb.connect()
        assert read_table(emulator_client, f"{ds}.many", con, ident("my table"), bqstorage_client=reader, page_size=page_size) == 3000
        summary = con.execute('SELECT count(*), count(DISTINCT id), sum(id), min(s), max(a[2]) FROM "my table"').fetchall()
        assert summary == [(3000, 3000, 3000 * 3001 // 2, "row 1", -1)], (reader, page_size)

    emulator_client.create_table(bigquery.Table(f"{ds}.empty", schema=[bigquery.SchemaField("id", "INT64"), bigquery.SchemaField("j", "JSON")]), retry=None)
    for reader in (None, storage_client):
        con = duckdb.connect()
        assert read_table(emulator_client, f"{ds}.empty", con, "back", bqstorage_client=reader) == 0
        assert con.execute("DESCRIBE back").fetchall()[1][:2] == ("j", "JSON")
        assert con.execute("SELECT count(*) FROM back").fetchall() == [(0,)]


def test_storage_api_bignumeric_values_become_their_plain_text() -> None:
    # emulator differs from BigQuery: no BIGNUMERIC, so the Storage Read API's Arrow type for it,
    # decimal256(76, 38) (https://cloud.google.com/bigquery/docs/reference/storage#arrow_schema_details),
    # cannot come from the emulator: the conversion `read_table` applies to each such column is checked here.
    from headwater.warehouse.bigquery.types import _plain_decimals

    values = ["0", "1E-38", "-0.5", "1" + "0" * 37, "1E-10", "-" + "9" * 38 + "." + "9" * 38]
    column = pa.array([Decimal(v) for v in values] + [None], pa.decimal256(76, 38))
    assert _plain_decimals(column).to_pylist() == ["0", "0." + "0" * 37 + "1", "-0.5", "1" + "0" * 37, "0.0000000001", "-" + "9" * 38 + "." + "9" * 38, None]
    nested = pa.array([{"n": [Decimal("2.50"), None]}, None], pa.struct([("n", pa.list_(pa.decimal256(76, 38)))]))
    assert _plain_decimals(nested).to_pylist() == [{"n": ["2.5", None]}, None]
    assert _plain_decimals(pa.array([1, 2])).type == pa.int64()
