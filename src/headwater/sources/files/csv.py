"""CSV files staged for cleaning: DuckDB reads the bulk, Python looks only at the first rows.

Per file: the bytes are checked (hash, UTF-8 or not, blank lines), a non-UTF-8 file is transcoded,
the dialect is sniffed by DuckDB (``sniff_csv``) unless declared, and the first rows are parsed with
Python's csv module to find the header (stray title rows above it are skipped). Then DuckDB reads
every row as text, in parallel, numbering them ``WITH ORDINALITY``. Rows it cannot split into the
header's width land in its rejects table: after the scan, rows that are short, or long only by empty
trailing fields, are put back (padded); rows with extra values are quarantined as ``ragged_row``;
anything else (a stray quote, bytes that are not text) as ``unreadable_row``. The row numbers the
quarantine reports are the file's rows, header and title rows included, as a spreadsheet program
shows them (a field with a line break inside still counts as one row).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from headwater.clean.headers import (
    SAMPLE_ROWS,
    column_names,
    filled,
    find_header_row,
    header_texts,
)
from headwater.clean.load import Fixups, Rejected, Staged
from headwater.config.files import CsvSource, CsvTable, TableRules
from headwater.errors import ConfigError, HeadwaterError
from headwater.sources.files.base import FileSource, Opened
from headwater.sources.files.fetch import LocalFile, resolve
from headwater.sources.files.inspect import (
    FileFacts,
    content_kind,
    detect_encoding,
    inspect_file,
    transcode,
)
from headwater.sqltext import ident, literal

SAMPLE_BYTES = 1 << 18
_SHAPE_ERRORS = {"TOO MANY COLUMNS", "MISSING COLUMNS"}
Spec = CsvSource | CsvTable


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    quote: str
    escape: str


@dataclass
class _FilePlan:
    file: LocalFile
    path: Path  # UTF-8 bytes DuckDB reads (the file itself, or a transcoded copy)
    dialect: Dialect
    start: int  # physical lines before the first data row
    width: int
    names: list[str]
    droppable: list[str]  # columns without a header text: left out when they hold no value either
    blank_lines: list[int]
    rejects: str
    notes: list[str] = field(default_factory=list)


def stage_csv(con: duckdb.DuckDBPyConnection, spec: Spec, files: list[LocalFile], facts: dict[Path, FileFacts], where: str, work: Path) -> Staged:
    plans = [_plan_file(con, spec, f, facts[f.path], where, work, n) for n, f in enumerate(files)]
    for plan in plans:  # DuckDB appends to a rejects table: start from empty ones
        con.execute(f"DROP TABLE IF EXISTS {ident(plan.rejects)}")
        con.execute(f"DROP TABLE IF EXISTS {ident(plan.rejects + '_scan')}")
    names: list[str] = []
    for plan in plans:
        names += [n for n in plan.names if n not in names]
    notes = [note for plan in plans for note in plan.notes]
    if len(plans) > 1:
        for plan in plans:
            missing = [n for n in names if n not in plan.names]
            if missing:
                notes.append(f"{plan.file.label} has no column {', '.join(missing)} (NULL in its rows)")
    relation = "(" + " UNION ALL ".join(_select(plan, names) for plan in plans) + ")"
    droppable = [n for n in names if all(n in plan.droppable or n not in plan.names for plan in plans)]
    return Staged(relation, names, where, notes, droppable, finish=lambda c: _finish(c, plans, names))


def _check_text(file: LocalFile, where: str) -> None:
    """Refuse a file that is not text before its bytes are read as rows: a workbook, a SQLite file
    or a web page (a sheet's login page, downloaded with HTTP 200) would load as garbage."""
    kind = content_kind(file.path)
    if kind in ("excel", "sqlite"):
        named = "a spreadsheet workbook" if kind == "excel" else "a SQLite database"
        raise ConfigError(f"{where}: {file.label} is {named}, not CSV text", why=f"its first bytes are {named}'s", fix=f"Write type: {kind} for this source in headwater.yml.")
    if kind == "html":
        raise ConfigError(
            f"{where}: {file.label} is a web page, not CSV text",
            why="the file starts with HTML: a page (a login or an error) saved or downloaded in the CSV's place",
            fix="Point path: at the CSV itself; a Google sheet: File > Share > Publish to web, as CSV, and use that link.",
        )


def _plan_file(con: duckdb.DuckDBPyConnection, spec: Spec, file: LocalFile, facts: FileFacts, where: str, work: Path, number: int) -> _FilePlan:
    notes: list[str] = []
    _check_text(file, where)
    path, blank_lines = file.path, facts.blank_lines
    declared = None if spec.encoding == "auto" else codecs.lookup(spec.encoding).name
    if declared not in (None, "utf-8") or not facts.utf8:
        encoding = declared or detect_encoding(file.path)
        path = work / f"utf8-{number}.csv"
        try:
            blank_lines = transcode(file.path, encoding, path)
        except UnicodeDecodeError as exc:
            raise HeadwaterError(
                f"{where}: {file.label} is not readable as {encoding}",
                why=f"byte {exc.start}: {exc.reason}" + ("" if declared else " (the encoding was detected, and the guess is wrong)"),
                fix="Set encoding: in headwater.yml (utf-8, utf-16, windows-1252, latin-1, ...), or save the file as UTF-8.",
            ) from None
        if not declared:
            notes.append(f"{file.label}: not UTF-8, read as {encoding} (detected; set encoding: to be sure)")
    dialect = _dialect(con, spec, path)
    rows, lines_after, complete = _sample(path, dialect)
    if spec.header:
        top = (spec.header_row - 1) if spec.header_row else find_header_row(rows)
        header = rows[top : top + spec.header_rows]
        width = max((len(r) for r in header), default=0) or max((len(r) for r in rows), default=0) or 1
        texts = header_texts(header, width)
        consumed = top + len(header)
    else:
        consumed = (spec.header_row - 1) if spec.header_row else 0
        width = max((len(r) for r in rows[consumed:]), default=0) or 1
        texts = [""] * width
    if consumed > len(rows):
        shown = "has" if complete else "starts with"
        raise HeadwaterError(f"{where}: header_row {spec.header_row} is past the rows of {file.label}", why=f"the file {shown} {len(rows)} rows", fix="Check header_row in headwater.yml.")
    start = lines_after[consumed - 1] if consumed else 0
    names = column_names(texts, spec, f"{where}, file {file.label}")
    droppable = [name for name, text in zip(names, texts, strict=True) if not text.strip()]
    return _FilePlan(file, path, dialect, start, width, names, droppable, [b for b in blank_lines if b > start], f"hw_rejects_{number}", notes)


def _dialect(con: duckdb.DuckDBPyConnection, spec: Spec, path: Path) -> Dialect:
    delimiter, quote, escape = spec.delimiter, spec.quote, None
    if delimiter is None or quote is None:
        try:
            sniffed = con.execute("SELECT Delimiter, Quote, Escape FROM sniff_csv(?, ignore_errors = true, null_padding = true, sample_size = 2048)", [str(path)]).fetchone()
        except duckdb.Error:
            sniffed = None
        if sniffed:
            delimiter = delimiter or _char(sniffed[0])
            quote = quote or _char(sniffed[1])
            escape = _char(sniffed[2])
    quote = quote or '"'
    return Dialect(delimiter or ",", quote, escape or quote)


def _char(value: object) -> str | None:
    text = str(value or "")
    return text if len(text) == 1 and text != "\x00" else None


def _sample(path: Path, dialect: Dialect) -> tuple[list[list[str]], list[int], bool]:
    """The first rows as Python's csv module reads them, with the physical lines read after each one,
    and whether the sample is the whole file."""
    with open(path, "rb") as handle:
        data = handle.read(SAMPLE_BYTES + 1)
    complete = len(data) <= SAMPLE_BYTES
    text = codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode(data[:SAMPLE_BYTES])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter, quotechar=dialect.quote, doublequote=dialect.escape == dialect.quote, escapechar=None if dialect.escape == dialect.quote else dialect.escape)
    rows: list[list[str]] = []
    lines_after: list[int] = []
    try:
        for row in reader:
            rows.append(row)
            lines_after.append(reader.line_num)
            if len(rows) >= SAMPLE_ROWS + 10:
                break
    except csv.Error:
        pass  # a quoted field cut by the end of the sample: the rows before it are enough
    if not complete and len(rows) > 1 and len(rows) < SAMPLE_ROWS + 10:
        rows, lines_after = rows[:-1], lines_after[:-1]  # the last row may be cut by the sample's end
    return rows, lines_after, complete


def _select(plan: _FilePlan, names: list[str]) -> str:
    columns = "{" + ", ".join(f"'column{i}': 'VARCHAR'" for i in range(plan.width)) + "}"
    position = {name: i for i, name in enumerate(plan.names)}
    cells = ", ".join(f"column{position[n]} AS c{k}" if n in position else f"CAST(NULL AS VARCHAR) AS c{k}" for k, n in enumerate(names))
    d = plan.dialect
    scan = (
        f"read_csv({literal(str(plan.path))}, header = false, skip = {plan.start}, auto_detect = false, columns = {columns}, "
        f"delim = {literal(d.delimiter)}, quote = {literal(d.quote)}, escape = {literal(d.escape)}, "
        f"store_rejects = true, rejects_table = {literal(plan.rejects)}, rejects_scan = {literal(plan.rejects + '_scan')})"
    )
    return f"SELECT {literal(plan.file.label)} AS _file, {plan.start} + ordinality AS _row, {cells} FROM {scan} WITH ORDINALITY"


def _finish(con: duckdb.DuckDBPyConnection, plans: list[_FilePlan], names: list[str]) -> Fixups:
    fixups = Fixups()
    recovered: list[list[object]] = []
    for plan in plans:
        skipped = list(plan.blank_lines)
        rows = con.execute(
            f"SELECT line, list(DISTINCT CAST(error_type AS VARCHAR)), first(csv_line), first(error_message) FROM {ident(plan.rejects)} GROUP BY line ORDER BY line"
        ).fetchall()
        for line, kinds, csv_line, message in rows:
            skipped.append(line)
            text = (csv_line or "").lstrip("\r\n")
            fields = _split(text, plan.dialect) if set(kinds) <= _SHAPE_ERRORS else None
            if fields is not None and not any(filled(f) for f in fields[plan.width :]):
                cells = dict(zip(plan.names, fields[: plan.width] + [None] * (plan.width - len(fields)), strict=True))
                recovered.append([plan.file.label, line, *(cells.get(n) for n in names)])
            elif fields is not None:
                fixups.rejected.append(Rejected(plan.file.label, line, text, "ragged_row", f"{len(fields)} fields, but the header has {plan.width}: the extra values have no column"))
            else:
                fixups.rejected.append(Rejected(plan.file.label, line, text, "unreadable_row", " ".join(str(message).split())))
        fixups.skipped[plan.file.label] = skipped
        con.execute(f"DROP TABLE IF EXISTS {ident(plan.rejects)}")
        con.execute(f"DROP TABLE IF EXISTS {ident(plan.rejects + '_scan')}")
    if recovered:
        columns = list(zip(*recovered, strict=True))
        arrays = [pa.array(columns[0], pa.string()), pa.array(columns[1], pa.int64())] + [pa.array(c, pa.string()) for c in columns[2:]]
        fixups.recovered = pa.Table.from_arrays(arrays, names=["_file", "_row", *(f"c{k}" for k in range(len(names)))])
    return fixups


def _split(text: str, dialect: Dialect) -> list[str] | None:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter, quotechar=dialect.quote, doublequote=dialect.escape == dialect.quote, escapechar=None if dialect.escape == dialect.quote else dialect.escape)
    try:
        return next(reader, [])
    except csv.Error:
        return None


class CsvFileSource(FileSource):
    """``type: csv``: a file, a glob of files (one table) or an http(s) URL, per table."""

    settings: CsvSource

    def table_specs(self, work: Path) -> dict[str, TableRules]:
        if self.settings.tables:
            return dict(self.settings.tables)
        return {self.settings.table or self.name: self.settings}

    def open_table(self, table: str, spec: TableRules, work: Path) -> Opened:
        where = self.where(table)
        if not isinstance(spec, (CsvSource, CsvTable)) or spec.path is None:  # not after config's validation (`CsvSource._shape`)
            raise HeadwaterError(f"{where}: no file to read", fix="Give the table a path: (a file, a glob or an http(s) URL) in headwater.yml.")
        files = resolve(spec.path, self.root, work, where)
        facts = {f.path: inspect_file(f.path) for f in files}
        content = hashlib.sha256("".join(f"{f.label}\0{facts[f.path].sha256}\0" for f in files).encode()).hexdigest()
        return Opened(content, [f.label for f in files], lambda con: stage_csv(con, spec, files, facts, where, work))
