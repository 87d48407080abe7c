"""Load source tables into the warehouse's ``raw_<source>`` schemas.

This first engine refreshes every table in full, all tables of a source in one transaction, so raw is
never a mix of two loads and a crash leaves the previous load in place. Incremental and exact sync
replaces the inside of `sync_source`; its signature is the seam.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import duckdb

from headwater.sources import Source

SYNCED_AT = "_headwater_synced_at"


@dataclass(frozen=True)
class TableStats:
    table: str
    rows: int
    seconds: float
    mode: str = "full"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def raw_schema(source_name: str) -> str:
    return f"raw_{source_name}"


def sync_source(con: duckdb.DuckDBPyConnection, source: Source, log: Callable[[str], None] = lambda _: None) -> list[TableStats]:
    schema = raw_schema(source.name)
    tables = source.attach(con)
    stats: list[TableStats] = []
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for table in tables:
            started = time.perf_counter()
            con.execute(f'CREATE OR REPLACE TABLE "{schema}"."{table.name}" AS SELECT *, now() AS {SYNCED_AT} FROM {table.relation}')
            rows = con.execute(f'SELECT count(*) FROM "{schema}"."{table.name}"').fetchone()[0]
            stats.append(TableStats(table.name, rows, round(time.perf_counter() - started, 3)))
            log(f"source {source.name}: table {table.name}: {rows:,} rows loaded into {schema}.{table.name}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        source.detach(con)
    return stats
