"""CSV and XLSX from published data, streamed in batches with no row cap.

Used by `headwater export` and by the web app's downloads alike:

- CSV: pyarrow's CSV writer, one Arrow batch at a time (``BATCH_ROWS``), so memory stays flat
  whatever the row count. `write` writes straight into a file; `csv_chunks` yields the bytes of each
  batch for an HTTP response, optionally gzip-compressed at level 1 (`gzip_chunks`): five times
  smaller for about a tenth of the time level 9 takes.
- XLSX: xlsxwriter in constant-memory mode (each row goes to a temporary file as it is written).
  Excel has a hard limit of 1,048,576 rows per sheet, the header row included: past it the rows go on
  in further sheets (``data``, ``data (2)``, ...), each starting with the header row. An XLSX file
  is a zip written when the workbook closes, so a download is written to an anonymous temporary
  file first (`xlsx_file`) and then streamed from it (`file_chunks`); the file is gone when it is
  closed, also if the download is cut off.
- Lists, structs, maps and intervals have no CSV form in pyarrow (a download died half-way with
  "Unsupported Type"): such columns are written as DuckDB writes them as text (``[1, 2]``,
  ``{'a': 1}``, ``1 day``), converted per batch by an in-memory DuckDB (`textual`).
- Formulas: a spreadsheet opening a CSV runs a cell that starts with ``=``, ``+``, ``-`` or ``@``
  (and, in some, a tab or carriage return first), so a volunteer named ``=HYPERLINK(...)`` would
  become a live link in whoever opens the download. CSV text cells (and headers, which a pivot takes
  from data) that start so get a leading ``'`` (OWASP's rule; `neutralised`). Only text: a number
  column is written as numbers, which a spreadsheet reads as numbers (-5 is -5, not a formula).
  ``raw=True`` (``headwater export --raw``, ``hw_raw=1`` on a download) writes values as they are,
  for programs. XLSX needs none of this: its text cells are strings, never formulas.
  Done on each Arrow batch with Arrow's vectorised regex replace: measured as fast as the raw export
  (a DuckDB-side CASE per column was ~30% slower, as DuckDB then builds every string anew).
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, BinaryIO, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

BATCH_ROWS = 32_768  # rows per Arrow batch of an export: see docs/benchmarks.md
# DuckDB keeps the blocks a query read in its buffer pool (up to 80% of RAM by default): a process
# that only exports (`headwater export`) caps it, so its memory stays flat whatever the table's size.
EXPORT_MEMORY_LIMIT = "64MB"
XLSX_MAX_ROWS = 1_048_576  # Excel's hard limit per sheet, the header row included
CHUNK_BYTES = 1 << 20
GZIP_LEVEL = 1
FORMULA_CHARS = ("=", "+", "-", "@", "\t", "\r")  # a CSV cell starting with one is a formula to a spreadsheet (OWASP)
FORMULA_START = r"^[=+\-@\t\r]"  # the same, as the regex Arrow runs
Format = Literal["csv", "xlsx"]
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


class _Parts:
    """A write-only file for pyarrow's CSV writer that hands over what was written since the last take."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))  # pyarrow passes a buffer it reuses: keep a copy
        return len(self.parts[-1])

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        parts, self.parts = self.parts, []
        return parts[0] if len(parts) == 1 else b"".join(parts)


def neutralised(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` with every text value and column name that starts like a formula prefixed with
    ``'`` (see the module's docstring); other columns pass through untouched."""
    schema = pa.schema([field.with_name(_neutral(field.name)) for field in reader.schema])
    text = [i for i, field in enumerate(reader.schema) if _is_text(field.type)]

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            columns = batch.columns
            for i in text:
                columns[i] = _neutral_array(columns[i])
            yield pa.RecordBatch.from_arrays(columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _is_text(kind: pa.DataType) -> bool:
    """Text as a spreadsheet sees it: strings, and bytes (a BLOB is written as its bytes)."""
    if pa.types.is_dictionary(kind):  # DuckDB's ENUM
        return _is_text(kind.value_type)
    return any(test(kind) for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_binary, pa.types.is_large_binary))


def _neutral_array(values: pa.Array) -> pa.Array:
    if isinstance(values, pa.DictionaryArray):
        return pa.DictionaryArray.from_arrays(values.indices, _neutral_array(values.dictionary))
    return pc.replace_substring_regex(values, FORMULA_START, "'\\0", max_replacements=1)


def _neutral(name: str) -> str:
    return "'" + name if name.startswith(FORMULA_CHARS) else name


def textual(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` with every column pyarrow's CSV writer cannot write turned into DuckDB's text of it."""
    nested = [i for i, field in enumerate(reader.schema) if not _csv_writable(field.type)]
    if not nested:
        return reader
    schema = pa.schema([field.with_type(pa.string()) if i in nested else field for i, field in enumerate(reader.schema)])

    def batches() -> Iterator[pa.RecordBatch]:
        import duckdb

        con = duckdb.connect(config={"enable_external_access": False, "threads": 1})
        try:
            for batch in reader:
                columns = batch.columns
                texts = con.from_arrow(pa.table([columns[i] for i in nested], names=[f"c{i}" for i in nested]))
                converted = texts.project(", ".join(f"CAST(c{i} AS VARCHAR)" for i in nested)).fetch_arrow_table()
                for n, i in enumerate(nested):
                    columns[i] = converted.column(n).combine_chunks()
                yield pa.RecordBatch.from_arrays(columns, schema=schema)
        finally:
            con.close()

    return pa.RecordBatchReader.from_batches(schema, batches())


def _csv_writable(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _csv_writable(kind.value_type)
    return not (pa.types.is_nested(kind) or pa.types.is_interval(kind) or isinstance(kind, pa.ExtensionType))


def _csv_ready(reader: pa.RecordBatchReader, raw: bool) -> pa.RecordBatchReader:
    reader = textual(reader)
    return reader if raw else neutralised(reader)


def csv_chunks(reader: pa.RecordBatchReader, *, raw: bool = False) -> Iterator[bytes]:
    """CSV bytes, header first (also for an empty result), one chunk per Arrow batch; formulas
    neutralised unless ``raw``."""
    reader = _csv_ready(reader, raw)
    sink = _Parts()
    with pacsv.CSVWriter(sink, reader.schema) as writer:
        yield sink.take()  # the header
        for batch in reader:
            writer.write_batch(batch)
            if sink.parts:
                yield sink.take()
    if sink.parts:
        yield sink.take()


def gzip_chunks(chunks: Iterable[bytes], level: int = GZIP_LEVEL) -> Iterator[bytes]:
    """The gzip stream of ``chunks`` (for ``Content-Encoding: gzip``)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for chunk in chunks:
        if out := compressor.compress(chunk):
            yield out
    yield compressor.flush()


def write(reader: pa.RecordBatchReader, fmt: Format, out: BinaryIO, *, raw: bool = False) -> int:
    """Write all of ``reader`` to ``out``; returns the number of data rows. CSV formulas are
    neutralised unless ``raw``."""
    if fmt == "xlsx":
        return write_xlsx(reader, out)
    reader = _csv_ready(reader, raw)
    rows = 0
    with pacsv.CSVWriter(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def xlsx_file(reader: pa.RecordBatchReader) -> tuple[IO[bytes], int]:
    """All of ``reader`` as an XLSX in an anonymous temporary file (deleted when closed), read from
    its start; and the number of data rows."""
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - the caller streams it, then closes it
    try:
        rows = write_xlsx(reader, handle)
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle, rows


def file_chunks(handle: IO[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The rest of ``handle`` in chunks; closes it at the end, or when the consumer stops early."""
    try:
        while chunk := handle.read(size):
            yield chunk
    finally:
        handle.close()


def write_xlsx(reader: pa.RecordBatchReader, out: BinaryIO | Path | IO[bytes], sheet: str = "data") -> int:
    """XLSX in xlsxwriter's constant-memory mode; past Excel's row limit the rows go on in
    further sheets (``data``, ``data (2)``, ...), each with the header row. Returns the data rows."""
    import xlsxwriter

    with tempfile.TemporaryDirectory(prefix=_scratch_prefix()) as scratch:  # xlsxwriter's row files, removed even on errors
        workbook = xlsxwriter.Workbook(
            out,
            {
                "constant_memory": True,
                "tmpdir": scratch,
                "remove_timezone": True,
                "nan_inf_to_errors": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        try:
            total = _write_sheets(workbook, reader, sheet)
        finally:
            workbook.close()
    return total


def _write_sheets(workbook: object, reader: pa.RecordBatchReader, sheet: str) -> int:
    bold = workbook.add_format({"bold": True})  # type: ignore[attr-defined]
    formats = {
        "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),  # type: ignore[attr-defined]
        "datetime": workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),  # type: ignore[attr-defined]
    }
    names = [f.name for f in reader.schema]
    sheet_no, row, total = 0, XLSX_MAX_ROWS, 0
    worksheet = None
    for batch in reader:
        for record in zip(*(col.to_pylist() for col in batch.columns), strict=True):
            if row >= XLSX_MAX_ROWS:
                sheet_no += 1
                worksheet = workbook.add_worksheet(sheet if sheet_no == 1 else f"{sheet} ({sheet_no})")  # type: ignore[attr-defined]
                worksheet.write_row(0, 0, names, bold)
                row = 1
            for col, value in enumerate(record):
                _write_cell(worksheet, row, col, value, formats)
            row += 1
            total += 1
    if worksheet is None:
        workbook.add_worksheet(sheet).write_row(0, 0, names, bold)  # type: ignore[attr-defined]
    return total


def _write_cell(ws: object, row: int, col: int, value: object, formats: dict[str, object]) -> None:
    if value is None:
        return
    if isinstance(value, dt.datetime):
        ws.write_datetime(row, col, value.replace(tzinfo=None) if value.tzinfo else value, formats["datetime"])  # type: ignore[attr-defined]
    elif isinstance(value, dt.date):
        ws.write_datetime(row, col, dt.datetime(value.year, value.month, value.day), formats["date"])  # type: ignore[attr-defined]
    elif isinstance(value, bool):
        ws.write_boolean(row, col, value)  # type: ignore[attr-defined]
    elif isinstance(value, (int, float)):
        ws.write_number(row, col, value)  # type: ignore[attr-defined]
    elif isinstance(value, decimal.Decimal):
        ws.write_number(row, col, float(value)) if value.is_finite() else ws.write_string(row, col, str(value))  # type: ignore[attr-defined]
    else:
        ws.write_string(row, col, str(value))  # type: ignore[attr-defined]


SCRATCH = "headwater-xlsx-"


def _scratch_prefix() -> str:
    """The writing process's id is in the name: a process killed while writing (a download cut by a
    server's SIGKILL, an OOM kill) leaves its folder behind, and `remove_stale_scratch` then knows it
    is nobody's."""
    return f"{SCRATCH}{os.getpid()}-"


def remove_stale_scratch(folder: Path | None = None) -> list[Path]:
    """Remove the XLSX scratch folders of processes that have ended (called when a server or an
    export starts). A folder of a live process, this one's or another server's, is never touched;
    nor one without a process id in its name (left by an older version: its owner is unknown)."""
    removed = []
    for scratch in Path(folder or tempfile.gettempdir()).glob(f"{SCRATCH}*"):
        pid = scratch.name[len(SCRATCH) :].split("-", 1)[0]
        if scratch.is_dir() and not scratch.is_symlink() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(scratch)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


__all__ = ["BATCH_ROWS", "EXPORT_MEMORY_LIMIT", "MEDIA_TYPES", "XLSX_MAX_ROWS", "csv_chunks", "file_chunks", "gzip_chunks", "neutralised", "remove_stale_scratch", "textual", "write", "write_xlsx", "xlsx_file"]
