"""PROVISIONAL (replaced by the hw-bq-types branch): DuckDB <-> BigQuery column types."""

from __future__ import annotations

import re
from typing import Any

import duckdb

from headwater.sqltext import ident

_SIMPLE = {
    "BOOLEAN": "BOOL", "TINYINT": "INT64", "SMALLINT": "INT64", "INTEGER": "INT64", "BIGINT": "INT64", "UTINYINT": "INT64", "USMALLINT": "INT64", "UINTEGER": "INT64",
    "FLOAT": "FLOAT64", "DOUBLE": "FLOAT64", "VARCHAR": "STRING", "BLOB": "BYTES", "DATE": "DATE", "TIME": "TIME", "TIMESTAMP": "DATETIME",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", "JSON": "JSON", "UUID": "STRING",
}


def field(name: str, duck_type: str) -> Any:
    from google.cloud.bigquery import SchemaField

    t = duck_type.upper()
    if re.match(r"DECIMAL", t):
        return SchemaField(name, "NUMERIC")
    return SchemaField(name, _SIMPLE.get(t, "STRING"))


def parquet_column(name: str, duck_type: str) -> str:
    t = duck_type.upper()
    if re.match(r"DECIMAL", t):
        return f"CAST({ident(name)} AS DECIMAL(38, 9)) AS {ident(name)}"
    if t in _SIMPLE and t not in ("JSON", "UUID"):
        return ident(name)
    return f"CAST({ident(name)} AS VARCHAR) AS {ident(name)}"


def refused(duck_type: str) -> list[tuple[str, str]]:
    return []


_BACK = {"INT64": "BIGINT", "INTEGER": "BIGINT", "FLOAT64": "DOUBLE", "FLOAT": "DOUBLE", "BOOL": "BOOLEAN", "BOOLEAN": "BOOLEAN", "STRING": "VARCHAR", "BYTES": "BLOB", "DATE": "DATE",
         "DATETIME": "TIMESTAMP", "TIMESTAMP": "TIMESTAMPTZ", "TIME": "TIME", "NUMERIC": "DECIMAL(38,9)", "JSON": "JSON"}


def duck_type(f: Any) -> str:
    return _BACK.get(f.field_type, "VARCHAR")


def read_table(client: Any, table_id: str, con: duckdb.DuckDBPyConnection, name: str) -> int:
    table = client.get_table(table_id)
    arrow = client.list_rows(table).to_arrow(create_bqstorage_client=False)
    con.register("_hw_bq_read", arrow)
    try:
        cols = ", ".join(f"CAST({ident(f.name)} AS {duck_type(f)}) AS {ident(f.name)}" for f in table.schema)
        con.execute(f"CREATE TABLE {name} AS SELECT {cols} FROM _hw_bq_read")
    finally:
        con.unregister("_hw_bq_read")
    return int(arrow.num_rows)
