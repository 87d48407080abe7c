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
import pyarrow.csv as pacsv

BATCH_ROWS = 32_768  # rows per Arrow batch of an export: see docs/benchmarks.md
# DuckDB keeps the blocks a query read in its buffer pool (up to 80% of RAM by default): a process
# that only exports (`headwater export`) caps it, so its memory stays flat whatever the table's size.
EXPORT_MEMORY_LIMIT = "64MB"
XLSX_MAX_ROWS = 1_048_576  # Excel's hard limit per sheet, the header row included
CHUNK_BYTES = 1 << 20
GZIP_LEVEL = 1
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


def csv_chunks(reader: pa.RecordBatchReader) -> Iterator[bytes]:
    """CSV bytes, header first (also for an empty result), one chunk per Arrow batch."""
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


def write(reader: pa.RecordBatchReader, fmt: Format, out: BinaryIO) -> int:
    """Write all of ``reader`` to ``out``; returns the number of data rows."""
    if fmt == "xlsx":
        return write_xlsx(reader, out)
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


__all__ = ["BATCH_ROWS", "EXPORT_MEMORY_LIMIT", "MEDIA_TYPES", "XLSX_MAX_ROWS", "csv_chunks", "file_chunks", "gzip_chunks", "write", "write_xlsx", "xlsx_file"]


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
