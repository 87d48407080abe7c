"""A full load into PostgreSQL, read on a second connection: the source is read while raw is written.

DuckDB's postgres extension, planning an insert into a PostgreSQL table, marks every postgres scan
in the plan (of any database: a PostgreSQL source's too) to be read in full, into memory and on one
thread, before the first row is written (``MaterializePostgresScans``). Written straight from a
PostgreSQL source, a full load held the whole table in memory, outside DuckDB's memory limit; staged
in a DuckDB temporary table first, it read the source and then wrote raw, one after the other.

Here the source is read by a second connection of the same DuckDB database whose source transaction
imports the table's own snapshot (`SqlSource.snapshot_reader`: PostgreSQL's exported snapshots), as
a stream of Arrow record batches. The table's transaction (``con``) writes raw from that stream
(binary COPY): the Arrow scan is no postgres scan, so nothing is materialized. The rows, raw and the
state still commit together, the rows are those of the snapshot the state records, and only the
batches in flight are held in memory.
Other sources are written from ``con`` as before: their scans are not postgres scans, and stream
straight into the COPY.

Each column crosses Arrow as its own DuckDB type, except TIMETZ, which crosses as text (`_as_sent`),
and is cast back to the relation's type as it is written: raw's columns are those ``CREATE TABLE ...
AS`` of the relation makes. tests/test_pg_warehouse_load.py compares both ways, value by value.
"""

from __future__ import annotations

import re

import duckdb

from headwater.sqltext import ident, one_value

BATCH_ROWS = 8_192  # rows per Arrow batch (four DuckDB vectors) handed from the reader to the writer
_BATCHES = "_hw_batches"
# How an error of the reader's query reaches the writer through Arrow's C stream interface.
_THROUGH_ARROW = re.compile(r"arrow_scan: get_next failed\(\): \w+: (?P<kind>[A-Za-z ]+ Error): (?P<message>.*)", re.DOTALL)
_KINDS: dict[str, type[duckdb.Error]] = {
    "IO Error": duckdb.IOException,
    "Out of Memory Error": duckdb.OutOfMemoryException,
    "Invalid Input Error": duckdb.InvalidInputException,
    "Conversion Error": duckdb.ConversionException,
    "Out of Range Error": duckdb.OutOfRangeException,
    "Catalog Error": duckdb.CatalogException,
    "Binder Error": duckdb.BinderException,
    "Constraint Error": duckdb.ConstraintException,
    "INTERRUPT Error": duckdb.InterruptException,
    "FATAL Error": duckdb.FatalException,
}


def load_full_from(con: duckdb.DuckDBPyConnection, reader: duckdb.DuckDBPyConnection, schema: str, table: str, rows: str) -> int:
    """Replace raw's ``schema.table`` by ``rows`` (a DuckDB SELECT) in ``con``'s open transaction,
    the rows read by ``reader`` (in the same source snapshot) as they are written; returns how many.
    An error of the reader's is raised as the reader raised it (`_unwrapped`), so the caller tells
    the source's errors from the warehouse's as it always has."""
    columns = [(str(r[0]), str(r[1])) for r in con.execute(f"DESCRIBE {rows}").fetchall()]
    sent = ", ".join(f"CAST({ident(n)} AS {_as_sent(t)}) AS {ident(n)}" if _as_sent(t) != t else ident(n) for n, t in columns)
    received = ", ".join(f"CAST({ident(n)} AS {t}) AS {ident(n)}" for n, t in columns)
    reader.execute("SET enable_progress_bar_print = false")  # a cursor's own setting (see `connect`)
    reader.execute(f"SELECT {sent} FROM ({rows})")
    # DuckDB's Arrow scan pulls the reader's stream itself, batch by batch: no Python in between.
    # The process still grows with the table in some runs (not in DuckDB's buffer pool, nor in
    # pyarrow's; reading the same stream into a count does not): docs/benchmarks.md.
    con.register(_BATCHES, reader.fetch_record_batch(BATCH_ROWS))
    try:
        return int(one_value(con.execute(f"CREATE OR REPLACE TABLE {ident(schema)}.{ident(table)} AS SELECT {received} FROM {_BATCHES}")))
    except duckdb.Error as exc:
        raise _unwrapped(exc) from None
    finally:
        con.unregister(_BATCHES)


def _unwrapped(exc: duckdb.Error) -> duckdb.Error:
    """The reader's own error, when ``exc`` is the reader's failure as the writer met it (Arrow's
    stream hands over only its text): the same DuckDB exception class, and the message as the reader
    raised it (a connection lost, a value `unfit` or `refused`, out of memory). Else ``exc``."""
    match = _THROUGH_ARROW.search(str(exc))
    if match is None:
        return exc
    return _KINDS.get(match["kind"], duckdb.Error)(f"{match['kind']}: {match['message']}")


def _as_sent(duck_type: str) -> str:
    """The type a column of ``duck_type`` crosses Arrow as: itself, but TIMETZ as text (Arrow's time
    has no offset: DuckDB would send 12:00+05 as 12:00). Text, and not DuckDB's lossless Arrow
    extension types: with those, DuckDB 1.4.4 writes lists of booleans into PostgreSQL wrongly
    (tests/test_pg_warehouse_load.py)."""
    return re.sub(r"TIME WITH TIME ZONE|TIMETZ", "VARCHAR", duck_type, flags=re.IGNORECASE)
