"""Ad-hoc SQL on the published data (or, asked for, on raw) for `headwater query` and `headwater shell`.

Read-only is the engine's, not a parser's: the database opens with DuckDB's ``read_only`` access
mode, so any statement that would change it is refused by DuckDB itself, whatever its spelling
(``INSERT``, ``CREATE ... AS``, ``COPY ... FROM``, a ``CALL`` of a writing function). External
access (files, URLs, ``ATTACH``, ``read_csv``, extension loading) and scans of Python variables
are switched off and the configuration locked before the user's first statement: the connection
reaches the one database file and nothing else, so on an install with many organisations an
organisation's SQL reads only its own folder's data. What is left writable is DuckDB's own
in-memory scratch (``CREATE TEMP TABLE``), which dies with the connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from headwater.checks.outcome import json_safe
from headwater.errors import HeadwaterError, NotFound
from headwater.sqltext import ident
from headwater.warehouse import WarehouseEngine, connect

READ_ONLY_WORDS = ("read-only", "read only")


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class Target:
    """What a session reads: the published snapshot, or the build database's raw tables."""

    path: Path
    what: str  # "published snapshot run-000003.duckdb" | "raw (build.duckdb)"
    fallback: str | None = None  # the snapshot is an older one than the pointer names (see Warehouse.fallback)


def published_target(warehouse: WarehouseEngine) -> Target:
    snapshot = warehouse.current_snapshot()
    if snapshot is None:
        raise NotFound("Nothing has been published yet", why="published data appears only after a run succeeds", fix="Run `headwater run`, or query raw with --raw.")
    return Target(snapshot, f"published snapshot {snapshot.name}", warehouse.fallback)


def raw_target(warehouse: WarehouseEngine, kind: str) -> Target:
    """The build database, which holds raw: the DuckDB warehouse's file, or a BigQuery warehouse's local mirror."""
    local = getattr(warehouse, "local", warehouse)
    build = getattr(local, "build_path", None)
    if kind == "postgres" or not isinstance(build, Path):
        raise HeadwaterError(
            "--raw reads a DuckDB build database, and this project's raw tables live in PostgreSQL",
            why="with a PostgreSQL warehouse raw_<source> schemas are in the project's database, not in a local file",
            fix="Query them there (psql with the warehouse's URL), or drop --raw to query the published tables.",
        )
    if not build.is_file():
        raise NotFound("Nothing has been synced yet", why=f"{build} does not exist", fix="Run `headwater sync` or `headwater run` first.")
    return Target(build, f"raw ({build.name})")


@contextmanager
def session(target: Target, threads: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to ``target`` that can reach nothing else (see the module's docstring)."""
    con = connect(target.path, read_only=True, threads=threads)
    try:
        con.execute("SET python_enable_replacements = false")
        con.execute("SET enable_external_access = false")  # cannot be switched back on
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


def tables(con: duckdb.DuckDBPyConnection) -> Result:
    """The tables a session sees (schema, table, columns, estimated rows), DuckDB's own catalogs left out."""
    return run(
        con,
        "SELECT schema_name AS schema, table_name AS table, column_count AS columns, estimated_size AS rows "
        "FROM duckdb_tables() WHERE database_name = current_database() AND NOT internal ORDER BY 1, 2",
    )


def run(con: duckdb.DuckDBPyConnection, sql: str) -> Result:
    """``sql``'s columns and rows; a statement DuckDB refuses is a user error saying why (exit 2)."""
    cursor = con.cursor()
    try:
        cursor.execute(sql)
        if cursor.description is None:
            return Result([], [])
        return Result([d[0] for d in cursor.description], cursor.fetchall())
    except duckdb.Error as exc:
        raise refused(exc) from None
    finally:
        cursor.close()


def refused(exc: duckdb.Error) -> HeadwaterError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if any(word in text.lower() for word in READ_ONLY_WORDS) or (isinstance(exc, duckdb.TransactionException) and "read" in text.lower()):
        return HeadwaterError(
            "The query tried to change data; headwater query and shell are read-only",
            why=f"DuckDB refused it: {first}",
            fix="Change data in the sources or the dbt models, then `headwater run`. SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN work here.",
        )
    if isinstance(exc, duckdb.PermissionException):
        return HeadwaterError(
            "The query tried to reach something outside this project's data",
            why=f"DuckDB refused it: {first} (files, URLs, ATTACH and extensions are switched off here)",
            fix="Query the tables of the published data (or raw, with --raw); `.tables` in `headwater shell` lists them.",
        )
    return HeadwaterError("DuckDB could not run the query", why=text.replace("\n", " ") or first, fix="Correct the SQL; `headwater shell` then `.tables` lists the tables and their columns.")


def plain(value: Any) -> Any:
    """A value as JSON holds it: the checks' samples' rules (`checks.outcome.json_safe`): numbers stay
    numbers (a decimal only when a float holds it exactly, else its exact text), dates and times in
    ISO 8601, bytes as hex, NaN and infinities as text."""
    return json_safe(value)


def published_summary(warehouse: WarehouseEngine) -> tuple[Path, dict[str, int]] | None:
    """The snapshot readers see now and the rows of each of its tables (None: nothing published)."""
    snapshot = warehouse.current_snapshot()
    if snapshot is None:
        return None
    with session(Target(snapshot, snapshot.name)) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT internal ORDER BY 1").fetchall()]
        counts = {}
        for name in names:
            row = con.execute(f"SELECT count(*) FROM {ident(name)}").fetchone()
            counts[name] = int(row[0]) if row else 0
    return snapshot, counts
