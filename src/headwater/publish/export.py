"""CSV and XLSX from published data, streamed in batches with no row cap.

Used by `headwater export` and by the web app's downloads alike.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.csv as pacsv

XLSX_MAX_ROWS = 1_048_576  # Excel's hard limit per sheet, the header row included
Format = Literal["csv", "xlsx"]


def csv_chunks(reader: pa.RecordBatchReader) -> Iterator[bytes]:
    """CSV bytes, header first (also for an empty result), one chunk per Arrow batch."""
    sink = io.BytesIO()
    with pacsv.CSVWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            yield _drain(sink)
    yield _drain(sink)


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


def write(reader: pa.RecordBatchReader, fmt: Format, out: BinaryIO) -> int:
    """Write all of ``reader`` to ``out``; returns the number of data rows."""
    counted = _Counter(reader)
    if fmt == "csv":
        for chunk in csv_chunks(counted.reader()):
            out.write(chunk)
    else:
        write_xlsx(counted.reader(), out)
    return counted.rows


class _Counter:
    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self.source, self.rows = reader, 0

    def reader(self) -> pa.RecordBatchReader:
        def counting() -> Iterator[pa.RecordBatch]:
            for batch in self.source:
                self.rows += batch.num_rows
                yield batch

        return pa.RecordBatchReader.from_batches(self.source.schema, counting())


def write_xlsx(reader: pa.RecordBatchReader, out: BinaryIO | Path, sheet: str = "data") -> int:
    """XLSX in xlsxwriter's constant-memory mode; past Excel's row limit the rows go on in
    further sheets (``data``, ``data (2)``, ...), each with the header row."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(out, {"constant_memory": True, "remove_timezone": True, "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False})
    bold = workbook.add_format({"bold": True})
    formats = {
        "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),
        "datetime": workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
    }
    names = [f.name for f in reader.schema]
    sheet_no, row, total = 0, XLSX_MAX_ROWS, 0
    worksheet = None
    for batch in reader:
        for record in zip(*(col.to_pylist() for col in batch.columns), strict=True):
            if row >= XLSX_MAX_ROWS:
                sheet_no += 1
                worksheet = workbook.add_worksheet(sheet if sheet_no == 1 else f"{sheet} ({sheet_no})")
                worksheet.write_row(0, 0, names, bold)
                row = 1
            for col, value in enumerate(record):
                _write_cell(worksheet, row, col, value, formats)
            row += 1
            total += 1
    if worksheet is None:
        workbook.add_worksheet(sheet).write_row(0, 0, names, bold)
    workbook.close()
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
        ws.write_number(row, col, float(value))  # type: ignore[attr-defined]
    else:
        ws.write_string(row, col, str(value))  # type: ignore[attr-defined]
