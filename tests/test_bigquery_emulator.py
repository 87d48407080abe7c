"""What the BigQuery emulator (tests/bq.py, the ``bqemulator`` package) does, probed with Google's own client.

Groundwork for the BigQuery warehouse (issue 19): each test states BigQuery's documented behaviour
(the doc's URL beside it). Where the emulator does the same, the test asserts it. Where it does not,
the test asserts what the emulator actually does, under a comment "emulator differs from BigQuery: ...",
so the warehouse is written to BigQuery's documentation and its tests know which checks the emulator
cannot make. A newer emulator that fixes a gap fails such a test: then update it and docs/warehouses.md.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import bq
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.bigquery

if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
    pytest.importorskip("google.cloud.bigquery", reason="the [bigquery] extra (in [test]) is not installed")
from google.api_core import exceptions as gexc  # noqa: E402  (CI fails here rather than skip)
from google.cloud import bigquery  # noqa: E402


@pytest.fixture
def client(bigquery_emulator: bq.Emulator) -> Iterator[Any]:
    c = bq.client(bigquery_emulator)
    yield c
    c.close()


def run(client: Any, sql: str, **config: Any) -> list[dict[str, Any]]:
    """Run a query job to the end, no retries (a retried 500 would hide the emulator's answer for minutes)."""
    job = client.query(sql, job_config=bigquery.QueryJobConfig(**config) if config else None, retry=None, job_retry=None)
    return [dict(row) for row in job.result(retry=None, timeout=30)]


# One column of each BigQuery type a warehouse writes; BIGNUMERIC has its own test (the emulator cannot store it).
# https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types
def _schema() -> list[Any]:
    F = bigquery.SchemaField
    return [
        F("i", "INT64", mode="REQUIRED"),
        F("n", "NUMERIC"),
        F("s", "STRING"),
        F("b", "BYTES"),
        F("f", "BOOL"),
        F("x", "FLOAT64"),
        F("d", "DATE"),
        F("dt", "DATETIME"),
        F("ts", "TIMESTAMP"),
        F("t", "TIME"),
        F("j", "JSON"),
        F("a", "INT64", mode="REPEATED"),
        F("st", "RECORD", fields=[F("k", "STRING"), F("v", "FLOAT64")]),
    ]


# The Arrow types BigQuery maps from each column type when loading Parquet:
# https://cloud.google.com/bigquery/docs/loading-data-cloud-storage-parquet#parquet_conversions
ARROW_SCHEMA = pa.schema(
    [
        pa.field("i", pa.int64(), nullable=False),
        ("n", pa.decimal128(38, 9)),
        ("s", pa.string()),
        ("b", pa.binary()),
        ("f", pa.bool_()),
        ("x", pa.float64()),
        ("d", pa.date32()),
        ("dt", pa.timestamp("us")),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("t", pa.time64("us")),
        ("j", pa.string()),
        ("a", pa.list_(pa.int64())),
        ("st", pa.struct([("k", pa.string()), ("v", pa.float64())])),
    ]
)

ROWS = [
    {
        "i": 1,
        "n": Decimal("12345678901234567890123456789.123456789"),  # NUMERIC's full range: 29 digits . 9 digits
        "s": "héllo, 世界 'quoted' \"too\"",
        "b": b"\x00\xff\x10",
        "f": True,
        "x": 1.5,
        "d": dt.date(2024, 2, 29),
        "dt": dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
        "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 654321, tzinfo=dt.UTC),
        "t": dt.time(23, 59, 59, 999999),
        "j": '{"a": [1, 2], "b": {"c": null}}',
        "a": [1, 2, 3],
        "st": {"k": "key", "v": 2.5},
    },
    {"i": 2, "n": Decimal("-0.000000001"), "s": "", "b": b"", "f": False, "x": -0.0, "d": dt.date(1, 1, 1), "dt": dt.datetime(9999, 12, 31, 23, 59, 59, 999999)}
    | {"ts": dt.datetime(1970, 1, 1, tzinfo=dt.UTC), "t": dt.time(0), "j": "[]", "a": [-(2**63)], "st": {"k": None, "v": None}},
    {"i": 3, "n": None, "s": None, "b": None, "f": None, "x": None, "d": None, "dt": None, "ts": None, "t": None, "j": None, "a": [], "st": None},
]


def _parquet(rows: list[dict[str, Any]]) -> io.BytesIO:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=ARROW_SCHEMA), buf)
    buf.seek(0)
    return buf


def _expected(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the client returns it: JSON parsed (https://cloud.google.com/bigquery/docs/reference/standard-sql/json-data)."""
    import json

    return row | {"j": None if row["j"] is None else json.loads(row["j"])}


def test_all_column_types_and_a_parquet_load_into_an_existing_table_round_trip(client: Any, fresh_bq_dataset: str) -> None:
    table_id = f"{client.project}.{fresh_bq_dataset}.all_types"
    client.create_table(bigquery.Table(table_id, schema=_schema()), retry=None)
    got = client.get_table(table_id, retry=None)
    assert [(f.name, f.field_type, f.mode) for f in got.schema] == [(f.name, f.field_type, f.mode) for f in _schema()]

    # WRITE_APPEND into the pre-created table: https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationLoad
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
    output_rows = []
    for _ in range(2):  # appended twice: the second load adds, it does not replace
        job = client.load_table_from_file(_parquet(ROWS), table_id, job_config=config)
        job.result(retry=None, timeout=30)
        output_rows.append(job.output_rows)
    # BigQuery: statistics.load.outputRows is the "number of rows imported in a load job".
    # https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobStatistics3
    # emulator differs from BigQuery: it reports the table's row count after the load (3, then 6), not the rows loaded.
    assert output_rows == [len(ROWS), 2 * len(ROWS)]

    expected = sorted([_expected(r) for r in ROWS] * 2, key=lambda r: r["i"])
    assert run(client, f"SELECT * FROM `{table_id}` ORDER BY i") == expected
    assert sorted((dict(r) for r in client.list_rows(table_id, retry=None)), key=lambda r: r["i"]) == expected  # tabledata.list
    assert client.get_table(table_id, retry=None).num_rows == 2 * len(ROWS)


def test_a_parquet_load_cannot_create_its_table(client: Any, fresh_bq_dataset: str) -> None:
    # BigQuery: a load job's createDisposition defaults to CREATE_IF_NEEDED, the schema read from the Parquet file.
    # https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationLoad (createDisposition)
    # emulator differs from BigQuery: the load fails with "Table with name ... does not exist" (create the table first).
    table_id = f"{client.project}.{fresh_bq_dataset}.created_by_load"
    job = client.load_table_from_file(_parquet(ROWS), table_id, job_config=bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET))
    with pytest.raises(gexc.BadRequest, match="does not exist"):
        job.result(retry=None, timeout=30)


def test_bignumeric_columns_cannot_be_created(client: Any, bigquery_emulator: bq.Emulator, fresh_bq_dataset: str) -> None:
    # BigQuery: BIGNUMERIC holds 76.76 digits (scale 38). https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#decimal_types
    # emulator differs from BigQuery: it maps BIGNUMERIC to DuckDB's DECIMAL(76, 38), which DuckDB refuses (width <= 38):
    # creating the table is an internal error (500), and a BIGNUMERIC value beyond 38 digits fails in a query.
    # After a 500 the emulator drops the kept-alive connection, so the client's next request on it can fail with
    # ConnectionResetError (the default retry hides this; these tests pass retry=None): a new client follows.
    with pytest.raises(gexc.InternalServerError):
        client.create_table(bigquery.Table(f"{client.project}.{fresh_bq_dataset}.big", schema=[bigquery.SchemaField("v", "BIGNUMERIC")]), retry=None)
    with pytest.raises(gexc.BadRequest, match="out of range"):
        run(bq.client(bigquery_emulator), "SELECT BIGNUMERIC '123456789012345678901234567890.123' AS v")
    assert run(bq.client(bigquery_emulator), "SELECT BIGNUMERIC '1.5' AS v") == [{"v": Decimal("1.5")}]  # within 38 digits it works


def _merge_tables(client: Any, ds: str) -> None:
    run(client, f"CREATE TABLE `{ds}.target` (id INT64, v STRING)")
    run(client, f"INSERT INTO `{ds}.target` (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    run(client, f"CREATE TABLE `{ds}.changes` (id INT64, v STRING, op STRING)")
    run(client, f"INSERT INTO `{ds}.changes` (id, v, op) VALUES (2, 'B', 'U'), (3, NULL, 'D'), (4, 'd', 'I')")
    run(client, f"CREATE TABLE `{ds}.state` (k STRING, cursor INT64)")
    run(client, f"INSERT INTO `{ds}.state` (k, cursor) VALUES ('orders', 0)")


def test_a_transaction_merges_deletes_and_moves_the_state_together(client: Any, fresh_bq_dataset: str) -> None:
    # https://cloud.google.com/bigquery/docs/transactions ; MERGE: https://cloud.google.com/bigquery/docs/reference/standard-sql/dml-syntax#merge_statement
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    run(
        client,
        f"""
        BEGIN TRANSACTION;
        MERGE `{ds}.target` t USING (SELECT * FROM `{ds}.changes` WHERE op != 'D') s ON t.id = s.id
          WHEN MATCHED THEN UPDATE SET v = s.v
          WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v);
        DELETE FROM `{ds}.target` WHERE id IN (SELECT id FROM `{ds}.changes` WHERE op = 'D');
        UPDATE `{ds}.state` SET cursor = 4 WHERE k = 'orders';
        INSERT INTO `{ds}.state` (k, cursor) VALUES ('customers', 7);
        COMMIT TRANSACTION;
        """,
    )
    assert run(client, f"SELECT id, v FROM `{ds}.target` ORDER BY id") == [{"id": 1, "v": "a"}, {"id": 2, "v": "B"}, {"id": 4, "v": "d"}]
    assert run(client, f"SELECT k, cursor FROM `{ds}.state` ORDER BY k") == [{"k": "customers", "cursor": 7}, {"k": "orders", "cursor": 4}]

    # BigQuery: MERGE's "INSERT ROW" inserts every column of the source row (same link).
    # emulator differs from BigQuery: "INSERT ROW" is a parser error; list the columns (as above).
    with pytest.raises(gexc.BadRequest, match="syntax error"):
        run(client, f"MERGE `{ds}.target` t USING `{ds}.changes` s ON t.id = s.id WHEN NOT MATCHED THEN INSERT ROW")


def test_merge_on_is_not_distinct_from_matches_null_keys(client: Any, fresh_bq_dataset: str) -> None:
    # The sync's MERGE matches keys with IS NOT DISTINCT FROM, so a NULL key matches a NULL key and the join
    # stays an equality join (spelt "r.k = s.k OR (r.k IS NULL AND s.k IS NULL)" the emulator joins by nested
    # loops: 14-16 s for 20,000 rows into 1M, against 0.07 s; bench/warehouse_bigquery.py).
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/operators#is_distinct
    ds = fresh_bq_dataset
    run(client, f"CREATE TABLE `{ds}.target` (k STRING, n INT64, v STRING)")
    run(client, f"INSERT INTO `{ds}.target` (k, n, v) VALUES ('a', 1, 'old a1'), ('a', NULL, 'old a-null'), (NULL, 1, 'old null-1'), (NULL, NULL, 'old null-null')")
    run(client, f"CREATE TABLE `{ds}.changes` (k STRING, n INT64, v STRING)")
    run(client, f"INSERT INTO `{ds}.changes` (k, n, v) VALUES ('a', NULL, 'new a-null'), (NULL, NULL, 'new null-null'), (NULL, 2, 'new null-2')")
    on = "t.k IS NOT DISTINCT FROM s.k AND t.n IS NOT DISTINCT FROM s.n"
    run(client, f"MERGE `{ds}.target` t USING `{ds}.changes` s ON {on} WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (k, n, v) VALUES (s.k, s.n, s.v)")
    got = sorted((r["k"] or "", -1 if r["n"] is None else r["n"], r["v"]) for r in run(client, f"SELECT k, n, v FROM `{ds}.target`"))
    assert got == [("", -1, "new null-null"), ("", 1, "old null-1"), ("", 2, "new null-2"), ("a", -1, "new a-null"), ("a", 1, "old a1")]
    # The same match in a DELETE (the sync's rows gone from the source): only the NULL-keyed row goes.
    run(client, f"DELETE FROM `{ds}.target` t WHERE EXISTS (SELECT 1 FROM (SELECT CAST(NULL AS STRING) AS k, CAST(NULL AS INT64) AS n) s WHERE {on})")
    assert sorted(r["v"] for r in run(client, f"SELECT v FROM `{ds}.target`")) == ["new a-null", "new null-2", "old a1", "old null-1"]


def test_a_failing_statement_rolls_the_whole_transaction_back(client: Any, fresh_bq_dataset: str) -> None:
    # BigQuery: "If an error occurs during a transaction and the query has no exception handler, the query fails
    # and BigQuery automatically rolls back the transaction." https://cloud.google.com/bigquery/docs/transactions
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    before = run(client, f"SELECT id, v FROM `{ds}.target` ORDER BY id")
    with pytest.raises(gexc.BadRequest, match="boom"):
        run(
            client,
            f"""
            BEGIN TRANSACTION;
            DELETE FROM `{ds}.target` WHERE TRUE;
            UPDATE `{ds}.state` SET cursor = 99 WHERE TRUE;
            INSERT INTO `{ds}.state` (k, cursor) VALUES ('customers', 7);
            SELECT ERROR('boom');
            COMMIT TRANSACTION;
            """,
        )
    assert run(client, f"SELECT id, v FROM `{ds}.target` ORDER BY id") == before
    assert run(client, f"SELECT k, cursor FROM `{ds}.state`") == [{"k": "orders", "cursor": 0}]


def test_rollback_transaction_abandons_the_changes(client: Any, fresh_bq_dataset: str) -> None:
    # BigQuery: "ROLLBACK TRANSACTION ... abandons all changes made inside the transaction." https://cloud.google.com/bigquery/docs/transactions
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    before = run(client, f"SELECT id, v FROM `{ds}.target` ORDER BY id")
    run(client, f"BEGIN TRANSACTION; DELETE FROM `{ds}.target` WHERE TRUE; ROLLBACK TRANSACTION;")
    assert run(client, f"SELECT id, v FROM `{ds}.target` ORDER BY id") == before

    # The documented pattern: an exception handler that rolls back (same link, "exception handler" example).
    run(
        client,
        f"""
        BEGIN
          BEGIN TRANSACTION;
          DELETE FROM `{ds}.target` WHERE TRUE;
          SELECT ERROR('boom');
          COMMIT TRANSACTION;
        EXCEPTION WHEN ERROR THEN
          ROLLBACK TRANSACTION;
        END;
        """,
    )
    # emulator differs from BigQuery: ROLLBACK TRANSACTION in the exception handler does not undo the DELETE:
    # the table is left empty. A warehouse must not rely on this pattern under the emulator (a failing
    # statement without a handler does roll back: the test above).
    assert run(client, f"SELECT id, v FROM `{ds}.target` ORDER BY id") == []


def test_a_copy_job_copies_a_table(client: Any, fresh_bq_dataset: str) -> None:
    # https://cloud.google.com/bigquery/docs/managing-tables#copy-table ; writeDisposition:
    # https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationTableCopy
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    job = client.copy_table(f"{ds}.target", f"{ds}.copy", retry=None)
    job.result(retry=None, timeout=30)
    assert job.state == "DONE"
    assert run(client, f"SELECT id, v FROM `{ds}.copy` ORDER BY id") == run(client, f"SELECT id, v FROM `{ds}.target` ORDER BY id")

    # BigQuery: WRITE_TRUNCATE replaces the destination's rows (and schema) with the source's.
    # emulator differs from BigQuery: a copy job with WRITE_TRUNCATE onto an existing table is an internal error (500).
    with pytest.raises(gexc.InternalServerError):
        client.copy_table(f"{ds}.changes", f"{ds}.copy", job_config=bigquery.CopyJobConfig(write_disposition="WRITE_TRUNCATE"), retry=None).result(retry=None, timeout=30)


def test_create_or_replace_view_repoints_the_view(client: Any, fresh_bq_dataset: str) -> None:
    # https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language#create_view_statement
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    run(client, f"CREATE OR REPLACE VIEW `{ds}.current` AS SELECT id, v FROM `{ds}.target`")
    assert run(client, f"SELECT id FROM `{ds}.current` ORDER BY id") == [{"id": 1}, {"id": 2}, {"id": 3}]
    run(client, f"CREATE OR REPLACE VIEW `{ds}.current` AS SELECT id, v FROM `{ds}.changes`")
    assert run(client, f"SELECT id FROM `{ds}.current` ORDER BY id") == [{"id": 2}, {"id": 3}, {"id": 4}]
    view = client.get_table(f"{ds}.current", retry=None)
    assert view.table_type == "VIEW"
    # BigQuery: tables.get of a view returns its SQL in view.query. https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#ViewDefinition
    # emulator differs from BigQuery: a view made by DDL has no view.query.
    assert view.view_query is None


def test_bytes_processed_and_maximum_bytes_billed(client: Any, fresh_bq_dataset: str) -> None:
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    # BigQuery: a job whose bytes billed would pass maximum_bytes_billed fails ("bytesBilledLimitExceeded") without running;
    # on-demand billing is at least 10 MB per table referenced, so a limit of 1 byte fails any query of a table.
    # https://cloud.google.com/bigquery/docs/best-practices-costs#limit_query_costs_by_restricting_the_number_of_bytes_billed
    # https://cloud.google.com/bigquery/pricing#on_demand_pricing
    # emulator differs from BigQuery: the limit is not enforced and no bytes are counted
    # (total_bytes_processed 0, total_bytes_billed absent), real or dry run.
    job = client.query(f"SELECT * FROM `{ds}.target`", job_config=bigquery.QueryJobConfig(maximum_bytes_billed=1), retry=None, job_retry=None)
    assert len(list(job.result(retry=None, timeout=30))) == 3
    assert (job.total_bytes_processed, job.total_bytes_billed) == (0, None)
    dry = client.query(f"SELECT * FROM `{ds}.target`", job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False), retry=None, job_retry=None)
    assert dry.total_bytes_processed == 0


def test_countif_type(client: Any, fresh_bq_dataset: str) -> None:
    # BigQuery: COUNTIF returns INT64. https://cloud.google.com/bigquery/docs/reference/standard-sql/aggregate_functions#countif
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    result = client.query(f"SELECT COUNTIF(id > 1) AS c, COUNT(*) AS n FROM `{ds}.target`", retry=None, job_retry=None).result(retry=None, timeout=30)
    assert [dict(r) for r in result] == [{"c": 2, "n": 3}]
    assert {f.name: f.field_type for f in result.schema} == {"c": "INTEGER", "n": "INTEGER"}
    # A table made from it (CREATE TABLE AS SELECT, as dbt's table materialization does) keeps INT64 in BigQuery.
    # emulator differs from BigQuery: the created table's COUNTIF column is NUMERIC (COUNT's stays INT64);
    # cast it (CAST(COUNTIF(...) AS INT64)) where the column's type matters.
    run(client, f"CREATE TABLE `{ds}.counted` AS SELECT COUNTIF(id > 1) AS c, COUNT(*) AS n FROM `{ds}.target`")
    assert {f.name: f.field_type for f in client.get_table(f"{ds}.counted", retry=None).schema} == {"c": "NUMERIC", "n": "INTEGER"}
    run(client, f"CREATE TABLE `{ds}.counted_cast` AS SELECT CAST(COUNTIF(id > 1) AS INT64) AS c FROM `{ds}.target`")
    assert {f.name: f.field_type for f in client.get_table(f"{ds}.counted_cast", retry=None).schema} == {"c": "INTEGER"}


def test_datasets_list_and_delete(client: Any, bigquery_emulator: bq.Emulator) -> None:
    import uuid

    name = f"hw_list_{uuid.uuid4().hex[:12]}"
    client.create_dataset(name, retry=None)
    # https://cloud.google.com/bigquery/docs/reference/rest/v2/datasets/list
    assert name in {d.dataset_id for d in client.list_datasets(retry=None)}
    run(client, f"CREATE TABLE `{name}.t` (id INT64)")
    # BigQuery: deleting a dataset that holds tables without deleteContents fails: 400 "resourceInUse".
    # https://cloud.google.com/bigquery/docs/reference/rest/v2/datasets/delete
    # emulator differs from BigQuery: it fails with 404 NotFound ("is not empty; use delete_contents=True").
    with pytest.raises(gexc.NotFound, match="not empty"):
        client.delete_dataset(name, retry=None)
    assert name in {d.dataset_id for d in client.list_datasets(retry=None)}
    client.delete_dataset(name, delete_contents=True, retry=None)
    assert name not in {d.dataset_id for d in client.list_datasets(retry=None)}
    with pytest.raises(gexc.NotFound):
        client.get_dataset(name, retry=None)


def _small_parquet(rows: list[dict[str, Any]]) -> io.BytesIO:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.int64()), ("v", pa.string())])), buf)
    buf.seek(0)
    return buf


def test_write_dispositions_of_loads_and_query_destinations(client: Any, fresh_bq_dataset: str) -> None:
    # writeDisposition: https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationLoad
    # and https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationQuery
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    parquet = bigquery.SourceFormat.PARQUET
    job = client.load_table_from_file(_small_parquet([{"id": 9, "v": "z"}]), f"{ds}.target", job_config=bigquery.LoadJobConfig(source_format=parquet, write_disposition="WRITE_TRUNCATE"))
    job.result(retry=None, timeout=30)
    assert run(client, f"SELECT id, v FROM `{ds}.target`") == [{"id": 9, "v": "z"}]
    # WRITE_EMPTY: "If the table already exists and contains data, a 'duplicate' error is returned in the job result."
    # emulator differs from BigQuery: the upload itself is refused (400 "is not empty"), no job is created to fail.
    with pytest.raises(gexc.BadRequest, match="not empty"):
        job = client.load_table_from_file(_small_parquet([{"id": 8, "v": "y"}]), f"{ds}.target", job_config=bigquery.LoadJobConfig(source_format=parquet, write_disposition="WRITE_EMPTY"))
        job.result(retry=None, timeout=30)
    assert run(client, f"SELECT id, v FROM `{ds}.target`") == [{"id": 9, "v": "z"}]

    # A query job with a destination table and WRITE_TRUNCATE replaces the table with the query's result.
    # emulator differs from BigQuery: the job succeeds and the destination is left as it was;
    # write the table with DML or CREATE OR REPLACE TABLE ... AS SELECT (below) instead.
    config = bigquery.QueryJobConfig(destination=f"{client.project}.{ds}.target", write_disposition="WRITE_TRUNCATE")
    client.query("SELECT 5 AS id, 'q' AS v", job_config=config, retry=None, job_retry=None).result(retry=None, timeout=30)
    assert run(client, f"SELECT id, v FROM `{ds}.target`") == [{"id": 9, "v": "z"}]

    # https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language#create_table_statement
    run(client, f"CREATE OR REPLACE TABLE `{ds}.built` AS SELECT 1 AS id")
    run(client, f"CREATE OR REPLACE TABLE `{ds}.built` AS SELECT 2 AS id, 'x' AS s")
    assert run(client, f"SELECT id, s FROM `{ds}.built`") == [{"id": 2, "s": "x"}]
    run(client, f"TRUNCATE TABLE `{ds}.built`")  # https://cloud.google.com/bigquery/docs/reference/standard-sql/dml-syntax#truncate_table_statement
    assert run(client, f"SELECT COUNT(*) AS n FROM `{ds}.built`") == [{"n": 0}]


def test_catalog_and_schema_changes(client: Any, fresh_bq_dataset: str) -> None:
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    # https://cloud.google.com/bigquery/docs/information-schema-tables , https://cloud.google.com/bigquery/docs/information-schema-columns
    assert run(client, f"SELECT table_name, table_type FROM `{ds}`.INFORMATION_SCHEMA.TABLES WHERE table_name = 'target'") == [{"table_name": "target", "table_type": "BASE TABLE"}]
    columns = run(client, f"SELECT column_name, data_type FROM `{ds}`.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 'target' ORDER BY ordinal_position")
    assert columns == [{"column_name": "id", "data_type": "INT64"}, {"column_name": "v", "data_type": "STRING"}]

    # ALTER TABLE ... ADD COLUMN: https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language#alter_table_add_column_statement
    # emulator differs from BigQuery: the column reaches the data (queries can select it) but not the table's
    # schema (tables.get does not show it).
    run(client, f"ALTER TABLE `{ds}.target` ADD COLUMN n NUMERIC")
    assert run(client, f"SELECT id, n FROM `{ds}.target` ORDER BY id LIMIT 1") == [{"id": 1, "n": None}]
    assert [f.name for f in client.get_table(f"{ds}.target", retry=None).schema] == ["id", "v"]

    # Adding a column through tables.patch (the client's update_table): https://cloud.google.com/bigquery/docs/managing-table-schemas#add_an_empty_column
    # emulator differs from BigQuery the other way: the schema shows the column, queries cannot select it.
    table = client.get_table(f"{ds}.target", retry=None)
    table.schema = [*table.schema, bigquery.SchemaField("added", "STRING")]
    table.description = "raw orders"
    client.update_table(table, ["schema", "description"], retry=None)
    patched = client.get_table(f"{ds}.target", retry=None)
    assert ([f.name for f in patched.schema], patched.description) == (["id", "v", "added"], "raw orders")
    with pytest.raises(gexc.BadRequest, match='column "added" not found'):
        run(client, f"SELECT added FROM `{ds}.target`")

    # CREATE SCHEMA / DROP SCHEMA ... CASCADE are datasets: https://cloud.google.com/bigquery/docs/reference/standard-sql/data-definition-language#create_schema_statement
    other = f"{ds}_other"
    run(client, f"CREATE SCHEMA IF NOT EXISTS `{other}`")
    run(client, f"CREATE TABLE `{other}.t` (a INT64)")
    assert other in {d.dataset_id for d in client.list_datasets(retry=None)}
    run(client, f"DROP SCHEMA `{other}` CASCADE")
    assert other not in {d.dataset_id for d in client.list_datasets(retry=None)}


def test_a_session_transaction_is_isolated_until_commit(client: Any, fresh_bq_dataset: str) -> None:
    # Sessions: a transaction across several queries. https://cloud.google.com/bigquery/docs/sessions-write-queries#multi_transactions
    # Snapshot isolation: another query does not see uncommitted changes. https://cloud.google.com/bigquery/docs/transactions
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    begin = client.query("BEGIN TRANSACTION", job_config=bigquery.QueryJobConfig(create_session=True), retry=None, job_retry=None)
    begin.result(retry=None, timeout=30)
    in_session = bigquery.QueryJobConfig(connection_properties=[bigquery.ConnectionProperty("session_id", begin.session_info.session_id)])
    client.query(f"INSERT INTO `{ds}.target` (id, v) VALUES (10, 'x')", job_config=in_session, retry=None, job_retry=None).result(retry=None, timeout=30)
    outside = run(client, f"SELECT COUNT(*) AS n FROM `{ds}.target`")
    client.query("COMMIT TRANSACTION", job_config=in_session, retry=None, job_retry=None).result(retry=None, timeout=30)
    assert run(client, f"SELECT COUNT(*) AS n FROM `{ds}.target`") == [{"n": 4}]
    # emulator differs from BigQuery: a query outside the session already sees the uncommitted row (BigQuery: 3 rows).
    assert outside == [{"n": 4}]


def _read_client(emulator: bq.Emulator) -> Any:
    """The Storage Read API client on the emulator's gRPC port (plain text: the emulator has no TLS)."""
    import grpc
    from google.cloud import bigquery_storage
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    return bigquery_storage.BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=grpc.insecure_channel(f"127.0.0.1:{emulator.grpc_port}")))


def test_storage_read_api(client: Any, bigquery_emulator: bq.Emulator, fresh_bq_dataset: str) -> None:
    # https://cloud.google.com/bigquery/docs/reference/storage : Arrow record batches of a table over gRPC.
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    reader = _read_client(bigquery_emulator)
    table = client.list_rows(f"{ds}.target", retry=None).to_arrow(bqstorage_client=reader)
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]
    # The client's to_arrow() uses the Storage API by default once google-cloud-bigquery-storage is installed,
    # and by default it dials Google's host, not the emulator: pass create_bqstorage_client=False or a client as above.
    query = client.query(f"SELECT id FROM `{ds}.target` ORDER BY id", retry=None, job_retry=None).result(retry=None, timeout=30)
    assert query.to_arrow(create_bqstorage_client=False).to_pylist() == [{"id": 1}, {"id": 2}, {"id": 3}]
    # BigQuery: a query's results (its anonymous destination table) can be read through the Storage Read API too;
    # the client does so for large results. https://cloud.google.com/bigquery/docs/reference/storage#read_from_a_query_result
    # emulator differs from BigQuery: the anonymous table is not found there; read results over REST (as above).
    again = client.query(f"SELECT id FROM `{ds}.target` ORDER BY id", retry=None, job_retry=None).result(retry=None, timeout=30)
    with pytest.raises(gexc.NotFound, match="bqemu_anonymous"):
        again.to_arrow(bqstorage_client=reader)


# --- dbt-bigquery ---------------------------------------------------------------------------------------


def _dbt(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    dbt = Path(sys.executable).with_name("dbt")
    env = os.environ | {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_NO_PRINT": "false"}
    return subprocess.run([str(dbt), *args, "--profiles-dir", str(project), "--project-dir", str(project)], capture_output=True, text=True, env=env, timeout=180, check=False)


def test_dbt_bigquery_debug_build_twice_and_docs(client: Any, bigquery_emulator: bq.Emulator, fresh_bq_dataset: str, tmp_path: Path) -> None:
    # dbt-bigquery's profile: https://docs.getdbt.com/docs/core/connect-data-platform/bigquery-setup (oauth-secrets; api_endpoint)
    ds = fresh_bq_dataset
    _merge_tables(client, ds)
    (tmp_path / "models").mkdir()
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "dbt_project.yml").write_text("name: probe\nversion: '1.0'\nprofile: probe\nmodel-paths: [models]\nsnapshot-paths: [snapshots]\nvars: {round: 1}\n")
    (tmp_path / "profiles.yml").write_text(bq.profiles_yml(bigquery_emulator, "probe", ds))
    (tmp_path / "models" / "clean.sql").write_text(f"{{{{ config(materialized='table') }}}}\nselect id, upper(v) as v from `{bigquery_emulator.project}`.`{ds}`.`target`\n")
    (tmp_path / "models" / "counted.sql").write_text("select count(*) as n, max(v) as top from {{ ref('clean') }}\n")
    # Rows that change between two builds (var round): id 2's status changes, id round+2 is new.
    (tmp_path / "models" / "moving.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select id, case when id = 2 and {{ var('round') }} = 2 then 'changed' else 'orig' end as status\n"
        "from unnest(generate_array(1, {{ var('round') }} + 2)) as id\n"
    )
    # The incremental merge strategy and a check snapshot, as the demo project's dbt uses them.
    (tmp_path / "models" / "merged.sql").write_text("{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }}\nselect id, status from {{ ref('moving') }}\n")
    (tmp_path / "models" / "schema.yml").write_text("models:\n  - name: merged\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\n")
    (tmp_path / "snapshots" / "history.yml").write_text("snapshots:\n  - name: history\n    relation: ref('moving')\n    config: {unique_key: id, strategy: check, check_cols: [status]}\n")

    debug = _dbt(tmp_path, "debug")
    assert debug.returncode == 0 and "Connection test: [OK connection ok]" in debug.stdout.replace("\x1b[32m", "").replace("\x1b[0m", ""), debug.stdout + debug.stderr
    for round_ in (1, 2):
        built = _dbt(tmp_path, "build", "--vars", f"{{round: {round_}}}")
        assert built.returncode == 0 and "PASS=7 " in built.stdout, built.stdout + built.stderr  # 4 models, 1 snapshot, 2 data tests
    assert run(client, f"SELECT id, v FROM `{ds}.clean` ORDER BY id") == [{"id": 1, "v": "A"}, {"id": 2, "v": "B"}, {"id": 3, "v": "C"}]
    assert run(client, f"SELECT n, top FROM `{ds}.counted`") == [{"n": 3, "top": "C"}]
    assert {t.table_id: t.table_type for t in client.list_tables(ds, retry=None)}.items() >= {"clean": "TABLE", "counted": "VIEW", "merged": "TABLE", "history": "TABLE"}.items()
    assert run(client, f"SELECT id, status FROM `{ds}.merged` ORDER BY id") == [{"id": 1, "status": "orig"}, {"id": 2, "status": "changed"}, {"id": 3, "status": "orig"}, {"id": 4, "status": "orig"}]
    history = run(client, f"SELECT id, status, dbt_valid_to IS NULL AS current FROM `{ds}.history` ORDER BY id, current")
    assert history == [{"id": 1, "status": "orig", "current": True}, {"id": 2, "status": "orig", "current": False}, {"id": 2, "status": "changed", "current": True}] + [
        {"id": i, "status": "orig", "current": True} for i in (3, 4)
    ]

    # dbt docs generate reads the catalog from the dataset's __TABLES__ / INFORMATION_SCHEMA.
    # emulator differs from BigQuery: there is no `__TABLES__`, so the catalog query fails.
    docs = _dbt(tmp_path, "docs", "generate")
    assert docs.returncode != 0 and "__TABLES__" in docs.stdout and "was not found" in docs.stdout, docs.stdout + docs.stderr
