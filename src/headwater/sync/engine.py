"""Load source tables into the warehouse's ``raw_<source>`` schemas.

`sync_source` is the one entry point (pipelines and `headwater sync` both call it); each kind of
source implements ``sync(ctx) -> list[TableStats]``: SQL databases through `headwater.sync.sql`,
files and spreadsheets through `headwater.sources.files`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import duckdb

from headwater.sync.context import Progress, RawTarget, SyncContext
from headwater.sync.stats import TableStats

SYNCED_AT = "_headwater_synced_at"
QUARANTINE_SUFFIX = "__quarantine"  # a raw table's companion: the rows that did not load, with why


class Syncable(Protocol):
    name: str

    def sync(self, ctx: SyncContext) -> list[TableStats]: ...


def raw_schema(source_name: str) -> str:
    return f"raw_{source_name}"


def sync_source(
    con: duckdb.DuckDBPyConnection,
    source: Syncable,
    log: Callable[[str], None] = lambda _: None,
    *,
    tables: list[str] | None = None,
    full_refresh: bool = False,
    progress: Progress | None = None,
    prune: bool = False,
    memory_limit: str | None = None,
    target: RawTarget | None = None,
) -> list[TableStats]:
    return source.sync(SyncContext(con, log, tables, full_refresh, progress, prune, memory_limit, target or RawTarget()))
