"""A full load into PostgreSQL, read on a second connection: the source is read while raw is written.

DuckDB's postgres extension, planning an insert into a PostgreSQL table, marks every postgres scan
in the plan (of any database: a PostgreSQL source's too) to be read in full, into memory and on one
thread, before the first row is written (``MaterializePostgresScans``). Written straight from a
PostgreSQL source, a full load held the whole table in memory, outside DuckDB's memory limit; staged
in a DuckDB temporary table first, it read the source and then wrote raw, one after the other.

Here the source is read by a second connection of the same DuckDB database whose source transaction
imports the table's own snapshot (`SqlSource.snapshot_reader`: PostgreSQL's exported snapshots), as
a stream of Arrow record batches, in a thread of its own. The table's transaction (``con``) writes
raw from that stream (binary COPY), so the rows, raw and the state still commit together, the rows
are those of the snapshot the state records, and only the batches in flight are held in memory.
Other sources are written from ``con`` as before: their scans are not postgres scans, and stream
straight into the COPY.

Each column crosses Arrow as its own DuckDB type, except TIMETZ, which crosses as text (`_as_sent`),
and is cast back to the relation's type as it is written: raw's columns are those ``CREATE TABLE ...
AS`` of the relation makes. tests/test_pg_warehouse_load.py compares both ways, value by value.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator

import duckdb
import pyarrow as pa

from headwater.sqltext import ident, one_value

BATCH_ROWS = 8_192  # rows per Arrow batch (four DuckDB vectors); at most IN_FLIGHT + 2 batches are held
IN_FLIGHT = 2  # batches read ahead of the writer
_DONE = object()
_BATCHES = "_hw_batches"


def load_full_from(con: duckdb.DuckDBPyConnection, reader: duckdb.DuckDBPyConnection, schema: str, table: str, rows: str) -> int:
    """Replace raw's ``schema.table`` by ``rows`` (a DuckDB SELECT) in ``con``'s open transaction,
    the rows read by ``reader`` (in the same source snapshot) as they are written; returns how many.
    An error of either side is raised as it was raised there, so the caller tells the source's
    errors from the warehouse's as it always has."""
    columns = [(str(r[0]), str(r[1])) for r in con.execute(f"DESCRIBE {rows}").fetchall()]
    sent = ", ".join(f"CAST({ident(n)} AS {_as_sent(t)}) AS {ident(n)}" if _as_sent(t) != t else ident(n) for n, t in columns)
    received = ", ".join(f"CAST({ident(n)} AS {t}) AS {ident(n)}" for n, t in columns)
    for each in (con, reader):  # DuckDB prints a progress bar on stdout (into --json) for a query this long
        each.execute("SET enable_progress_bar_print = false")
    reader.execute(f"SELECT {sent} FROM ({rows})")
    batches = reader.fetch_record_batch(BATCH_ROWS)
    handed: queue.Queue[object] = queue.Queue(maxsize=IN_FLIGHT)
    stop = threading.Event()
    failed: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                try:
                    batch = batches.read_next_batch()
                except StopIteration:
                    _put(handed, _DONE, stop)
                    return
                _put(handed, batch, stop)
        except BaseException as exc:  # noqa: BLE001 - handed over: raised by the writer's side, below
            if not stop.is_set():  # (else: interrupted because the writer failed)
                failed.append(exc)
                _put(handed, exc, stop)

    def received_batches() -> Iterator[pa.RecordBatch]:
        while (item := handed.get()) is not _DONE:
            if not isinstance(item, pa.RecordBatch):  # the read failed: its own error is raised instead
                raise RuntimeError("the source's read failed")
            yield item

    thread = threading.Thread(target=read, name="headwater-read", daemon=True)
    thread.start()
    con.register(_BATCHES, pa.RecordBatchReader.from_batches(batches.schema, received_batches()))
    try:
        written = int(one_value(con.execute(f"CREATE OR REPLACE TABLE {ident(schema)}.{ident(table)} AS SELECT {received} FROM {_BATCHES}")))
    except BaseException:
        stop.set()
        reader.interrupt()
        thread.join()
        if failed:
            raise failed[0] from None
        raise
    finally:
        con.unregister(_BATCHES)
    thread.join()
    return written


def _put(handed: queue.Queue[object], item: object, stop: threading.Event) -> None:
    """Hand ``item`` to the writer, waiting while it is busy, unless it has stopped."""
    while not stop.is_set():
        try:
            handed.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


def _as_sent(duck_type: str) -> str:
    """The type a column of ``duck_type`` crosses Arrow as: itself, but TIMETZ as text (Arrow's time
    has no offset: DuckDB would send 12:00+05 as 12:00). Text, and not DuckDB's lossless Arrow
    extension types: with those, DuckDB 1.4.4 writes lists of booleans into PostgreSQL wrongly
    (tests/test_pg_warehouse_load.py)."""
    return re.sub(r"TIME WITH TIME ZONE|TIMETZ", "VARCHAR", duck_type, flags=re.IGNORECASE)
