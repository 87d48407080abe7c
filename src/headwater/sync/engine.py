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

from headwater.errors import ConfigError
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
    """The name of raw ``table``'s quarantine companion: ``<table>__quarantine``, fitted to what the
    warehouse keeps (`fitted_name`: the companions of two long names could meet, or land on a table
    of ``<table>__``). Every reader of a companion finds it through this function."""
    return fitted_name(table, max_identifier, "_", QUARANTINE_SUFFIX)


def fitted_name(name: str, max_identifier: int | None, sep: str, suffix: str = "") -> str:
    """``name + suffix``, or when that is longer than the warehouse keeps (``max_identifier`` bytes,
    `RawTarget.max_identifier`: PostgreSQL cuts names at 63 bytes, silently, so two long names could
    become one) ``name`` cut short, ``sep``, a digest of the whole, and ``suffix``."""
    whole = name + suffix
    if max_identifier is None or len(whole.encode()) <= max_identifier:
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:16]
    head = name.encode()[: max_identifier - len(suffix) - len(digest) - len(sep)].decode(errors="ignore")
    return f"{head}{sep}{digest}{suffix}"


_CUT = {
    "table": "so this table could land on another's raw table; it was not synced",
    "column": "so the column would land under another name (or on another column); the table was not synced",
}


def check_name_fits(kind: str, name: str, max_identifier: int | None, *, where: str, fix: str, shown: str | None = None) -> None:
    """Refuse a ``kind`` ("table" or "column") named in more bytes than the warehouse keeps: PostgreSQL
    would cut it silently. ``where`` starts the message (the source, or a file of it); ``shown``
    names it there (default: ``name``)."""
    size = len(name.encode())
    if max_identifier is not None and size > max_identifier:
        raise ConfigError(
            f"{where}: {kind} {shown or name} has a name of {size} bytes, longer than the warehouse keeps ({max_identifier})",
            why=f"PostgreSQL cuts longer names short, {_CUT[kind]}",
            fix=fix,
        )


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
