"""Sync state lives in the warehouse, next to the data, and commits in the same transaction.

A sync killed at any instant therefore leaves either the old rows with the old state or the new rows
with the new state: the next sync continues from exactly what raw holds (see docs/sync.md).
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

STATE_SCHEMA = "_headwater"
STATE_TABLE = f"{STATE_SCHEMA}.sync_state"


def ensure_state_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (source VARCHAR NOT NULL, table_name VARCHAR NOT NULL, "
        "state JSON NOT NULL, updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (source, table_name))"
    )


def load_state(con: duckdb.DuckDBPyConnection, source: str, table: str) -> dict[str, Any] | None:
    ensure_state_table(con)
    row = con.execute(f"SELECT state FROM {STATE_TABLE} WHERE source = ? AND table_name = ?", [source, table]).fetchone()
    return json.loads(row[0]) if row else None


def save_state(con: duckdb.DuckDBPyConnection, source: str, table: str, state: dict[str, Any]) -> None:
    """Call inside the transaction that writes the table's rows."""
    con.execute(f"DELETE FROM {STATE_TABLE} WHERE source = ? AND table_name = ?", [source, table])
    con.execute(f"INSERT INTO {STATE_TABLE} VALUES (?, ?, ?, now())", [source, table, json.dumps(state, default=str)])


def drop_state(con: duckdb.DuckDBPyConnection, source: str, table: str | None = None) -> None:
    ensure_state_table(con)
    if table is None:
        con.execute(f"DELETE FROM {STATE_TABLE} WHERE source = ?", [source])
    else:
        con.execute(f"DELETE FROM {STATE_TABLE} WHERE source = ? AND table_name = ?", [source, table])
