"""Load source tables into the warehouse's ``raw_<source>`` schemas.

`sync_source` is the one entry point (pipelines and `headwater sync` both call it); each kind of
source implements ``sync(ctx) -> list[TableStats]``: SQL databases through `headwater.sync.sql`,
files and spreadsheets through `headwater.sources.files`.
"""

from __future__ import annotations

import hashlib
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


def quarantine_table(table: str, max_identifier: int | None = None) -> str:
    """The name of raw ``table``'s quarantine companion: ``<table>__quarantine``. One longer than the
    warehouse keeps (``max_identifier``, `RawTarget.max_identifier`: PostgreSQL cuts names at 63
    bytes, so the companions of two long names could meet, or land on a table of ``<table>__``) is
    the table's name cut, a digest of the whole name, and the suffix. Every reader of a companion
    finds it through this function."""
    name = table + QUARANTINE_SUFFIX
    if max_identifier is None or len(name.encode()) <= max_identifier:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    head = table.encode()[: max_identifier - len(QUARANTINE_SUFFIX) - len(digest) - 1].decode(errors="ignore")
    return f"{head}_{digest}{QUARANTINE_SUFFIX}"


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
