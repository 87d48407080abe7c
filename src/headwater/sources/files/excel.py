"""Excel workbooks (.xlsx, .xlsm, .xlsb, .xls, .ods): one table per sheet, cells staged as text.

Two readers built on the Rust calamine library: fastexcel reads the body of a sheet straight into
Arrow (every cell as text, formulas as their cached values, error cells reported apart), which
DuckDB scans without a copy; python-calamine reads the first rows as Python values, with the merged
cell ranges, to find the header. A 100,000-row sheet stages in about a second, where openpyxl needs
several (docs/benchmarks.md, "Spreadsheets and files").

Cell errors (#N/A, #DIV/0!, ...) have no value to load: their rows go to the quarantine as
``cell_error`` with the error shown as the original value.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from headwater.clean.headers import (
    SAMPLE_ROWS,
    column_names,
    find_header_row,
    header_texts,
    snake_case,
)
from headwater.clean.load import Fixups, Rejected, Staged
from headwater.config.files import RULE_FIELDS, ExcelSheet, ExcelSource, TableRules
from headwater.errors import ConfigError, HeadwaterError, NotFound
from headwater.sources.files.base import FileSource, Opened
from headwater.sources.files.cells import cell_text
from headwater.sources.files.fetch import LocalFile, resolve
from headwater.sources.files.inspect import content_kind, inspect_file

_ERRORS = {"Div0": "#DIV/0!", "NA": "#N/A", "Value": "#VALUE!", "Ref": "#REF!", "Name": "#NAME?", "Num": "#NUM!", "Null": "#NULL!", "GettingData": "#GETTING_DATA"}
_ERROR_DETAIL = re.compile(r"Error\((\w+)\)")


class ExcelFileSource(FileSource):
    """``type: excel``: a workbook; a named sheet, every sheet, or ``tables:`` naming sheets."""

    settings: ExcelSource

    def __init__(self, name: str, settings: ExcelSource, root: Path) -> None:
        super().__init__(name, settings, root)
        self._book: tuple[LocalFile, str] | None = None  # fetched once per sync: (file, content hash)

    def _workbook(self, work: Path) -> tuple[LocalFile, str]:
        if self._book is None or not self._book[0].path.exists():
            files = resolve(self.settings.path, self.root, work, f"Source '{self.name}'")
            if len(files) > 1:
                raise HeadwaterError(f"Source '{self.name}': {self.settings.path} matches {len(files)} workbooks", fix="Point path: at one workbook (a source per workbook).")
            self._book = (files[0], inspect_file(files[0].path, scan_lines=False).sha256)
        return self._book

    def table_specs(self, work: Path) -> dict[str, TableRules]:
        s = self.settings
        if s.tables:
            return dict(s.tables)
        if s.sheet != "*":
            return {s.table or self.name: s}
        book, _ = self._workbook(work)
        rules = s.model_dump(include=set(RULE_FIELDS))
        specs: dict[str, TableRules] = {}
        for sheet in _sheet_names(book, f"Source '{self.name}'"):
            name = snake_case(sheet) or "sheet"
            while name in specs:
                name += "_"
            specs[name] = ExcelSheet.model_validate({**rules, "sheet": sheet})
        return specs

    def open_table(self, table: str, spec: TableRules, work: Path) -> Opened:
        book, digest = self._workbook(work)
        sheet = spec.sheet if isinstance(spec, ExcelSheet) else (self.settings.sheet or 1)
        return Opened(digest, [book.label], lambda con: stage_sheet(con, book, sheet, spec, self.where(table)))


def _sheet_names(book: LocalFile, where: str) -> list[str]:
    import python_calamine

    try:
        workbook = python_calamine.CalamineWorkbook.from_path(str(book.path))
    except (python_calamine.CalamineError, OSError) as exc:  # zip, XML, password, missing file, ...
        kind = content_kind(book.path)
        if kind == "text":
            raise ConfigError(
                f"{where}: {book.label} holds text, not a workbook",
                why="a workbook is a zip archive (.xlsx, .ods) or an old .xls file; this is text, as a CSV file is",
                fix="Write type: csv for this source in headwater.yml (or save the file from the spreadsheet as .xlsx).",
            ) from None
        if kind == "html":
            raise ConfigError(
                f"{where}: {book.label} is a web page, not a workbook",
                why="the file starts with HTML: a page (a login or an error) saved or downloaded in the workbook's place",
                fix="Point path: at the workbook itself, or at a link that downloads it.",
            ) from None
        raise HeadwaterError(f"{where}: {book.label} is not a readable workbook", why=f"{type(exc).__name__}: {exc}", fix="Save it as .xlsx (or .xls/.ods) and check the path.") from None
    try:
        return list(workbook.sheet_names)
    finally:
        workbook.close()


def _pick_sheet(names: list[str], wanted: str | int, book: LocalFile, where: str) -> str:
    if isinstance(wanted, int):
        if 1 <= wanted <= len(names):
            return names[wanted - 1]
        raise NotFound(f"{where}: {book.label} has {len(names)} sheet(s), no sheet number {wanted}", why=f"its sheets: {', '.join(names)}", fix="Fix sheet: in headwater.yml.")
    if wanted in names:
        return wanted
    folded = {n.strip().casefold(): n for n in names}
    if wanted.strip().casefold() in folded:
        return folded[wanted.strip().casefold()]
    hint = difflib.get_close_matches(wanted, names, n=1)
    raise NotFound(
        f"{where}: {book.label} has no sheet '{wanted}'",
        why=f"its sheets: {', '.join(names)}",
        fix=(f"Did you mean '{hint[0]}'? " if hint else "") + "Fix sheet: in headwater.yml.",
    )


def stage_sheet(con: duckdb.DuckDBPyConnection, book: LocalFile, wanted: str | int, spec: TableRules, where: str) -> Staged:
    import fastexcel
    import python_calamine

    sheet = _pick_sheet(_sheet_names(book, where), wanted, book, where)
    label = f"{book.label} [{sheet}]"
    workbook = python_calamine.CalamineWorkbook.from_path(str(book.path))
    try:
        grid = workbook.get_sheet_by_name(sheet)
        first_row, first_col = grid.start or (0, 0)
        top_rows = [[cell_text(v) for v in row] for row in grid.to_python(skip_empty_area=False, nrows=first_row + SAMPLE_ROWS)]
        merged = grid.merged_cell_ranges
    finally:
        workbook.close()
    header_at, data_at = _header_rows(top_rows, spec, where, label)
    body, errors = fastexcel.read_excel(str(book.path)).load_sheet(sheet, header_row=None, skip_rows=data_at or None, dtypes="string").to_arrow_with_errors()
    body_first = data_at if data_at else first_row  # fastexcel starts at the used range unless rows are skipped
    width = max(body.num_columns, max((len(r) for r in top_rows[header_at:data_at]), default=0) - first_col)
    header = [row[first_col:] for row in top_rows[header_at:data_at]]
    spans = None if merged is None else [(r0 - header_at, c0 - first_col, r1 - header_at, c1 - first_col) for (r0, c0), (r1, c1) in merged]
    texts = header_texts(header, width, spans) if spec.header else [""] * width
    names = column_names(texts, spec, where)
    rejected = _cell_errors(errors, names, label)
    table = _arrow(body, width, label, body_first)
    view = f"hw_sheet_{abs(hash((book.label, sheet))) % 10**8}"
    con.register(view, table)

    def finish(c: duckdb.DuckDBPyConnection) -> Fixups:
        c.unregister(view)
        return Fixups(rejected=rejected)

    droppable = [n for n, t in zip(names, texts, strict=True) if not t.strip()]
    return Staged(view, names, where, droppable=droppable, finish=finish)


def _header_rows(rows: list[list[str | None]], spec: TableRules, where: str, label: str) -> tuple[int, int]:
    """(index of the first header row, index of the first data row), 0-based sheet rows."""
    if not spec.header:
        start = (spec.header_row - 1) if spec.header_row else 0
        return start, start
    top = (spec.header_row - 1) if spec.header_row else find_header_row(rows)
    if top >= len(rows) and spec.header_row:
        raise HeadwaterError(f"{where}: header_row {spec.header_row} is past the rows of {label}", why=f"the sheet has {len(rows)} rows", fix="Check header_row in headwater.yml.")
    return top, top + spec.header_rows


def _cell_errors(errors: object, names: list[str], label: str) -> list[Rejected]:
    """Error cells (read as empty) as quarantine entries: their rows are checked like the others, then
    held back."""
    rejected = []
    for error in getattr(errors, "errors", None) or []:
        row, col = error.position
        match = _ERROR_DETAIL.search(error.detail)
        shown = _ERRORS.get(match.group(1), match.group(1)) if match else error.detail
        column = names[col] if col < len(names) else None
        rejected.append(Rejected(label, row + 1, shown, "cell_error", f"the cell holds the error {shown} (a formula that failed), not a value", column))
    return rejected


def _arrow(body: pa.RecordBatch | pa.Table, width: int, label: str, first_row: int) -> pa.Table:
    """The body as the staged shape: _file, _row (1-based sheet row), c0..c{width-1}."""
    n = body.num_rows
    columns = [body.column(i) if i < body.num_columns else pa.nulls(n, pa.string()) for i in range(width)]
    return pa.Table.from_arrays(
        [pa.array([label] * n, pa.string()), pa.array(range(first_row + 1, first_row + n + 1), pa.int64()), *(c.cast(pa.string()) for c in columns)],
        names=["_file", "_row", *(f"c{i}" for i in range(width))],
    )
