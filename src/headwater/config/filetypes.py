"""A source's file told by its name, so a type that cannot read it is an error at once, naming the
type that can: `type: excel` on data/people.csv says to write `type: csv`, before any sync (rather than
a workbook reader's "Cannot detect file format" at every run).

Only names that say what a file is count (.csv, .xlsx, .db, ...): a file named otherwise, or a URL
whose path has no such suffix, is left to the reader, which tells text from a workbook by its bytes
(sources/files/excel.py, csv.py). A Google sheet's own address (docs.google.com/spreadsheets/d/ID/edit)
is a web page, not a file: it is refused with the two ways to read the sheet.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic_core import PydanticCustomError

# The types a file source's or a SQLite source's path: can be, and the names their files go by.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".tsv", ".tab", ".txt"),
    "excel": (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods"),
    "sqlite": (".db", ".sqlite", ".sqlite3"),
}
WHAT = {"csv": "a CSV (delimited text) file", "excel": "a spreadsheet workbook", "sqlite": "a SQLite database"}
P = TypeVar("P", str, str | None)
_SHEET_EXPORTS = {"csv": "csv", "excel": "xlsx"}  # what a Google sheet's export or published link gives, by the type reading it


def kind_of(path: str) -> str | None:
    """The source type that reads ``path`` (a file, a glob or an http(s) URL), by its suffix; None when
    the name does not say."""
    name = urlsplit(path).path if path.lower().startswith(("http://", "https://")) else path
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return next((kind for kind, suffixes in SUFFIXES.items() if suffix in suffixes), None)


def readable_by(source_type: str, path: P) -> P:
    """``path`` when a source of ``source_type`` can read it; else a validation error naming the type
    that can (pydantic puts it at the path: line)."""
    if path is None:
        return path
    sheet = _google_sheet(path)
    if sheet is not None and source_type in _SHEET_EXPORTS:
        spreadsheet_id, gives = sheet
        if gives != _SHEET_EXPORTS[source_type]:
            raise PydanticCustomError(
                "file_kind",
                "type: {type} reads a {what}, and this is a Google sheet's web page: publish the sheet as {export} (File > Share > Publish to web) and use that link, "
                "or read the sheet itself with type: google_sheets and spreadsheet_id: {id} (docs/files.md)",
                {"type": source_type, "what": "CSV file" if source_type == "csv" else "workbook", "export": _SHEET_EXPORTS[source_type].upper(), "id": spreadsheet_id},
            )
        return path
    kind = kind_of(path)
    if kind is not None and kind != source_type:
        raise PydanticCustomError(
            "file_kind", "type: {type} does not read {what}: write type: {kind}", {"what": WHAT[kind], "type": source_type, "kind": kind}
        )
    return path


def _google_sheet(path: str) -> tuple[str, str | None] | None:
    """(spreadsheet id, the format the link gives: csv, xlsx or None for the sheet's page) of a
    docs.google.com/spreadsheets/d/ID/... link; None for any other path."""
    parts = urlsplit(path)
    segments = parts.path.split("/")
    if (parts.hostname or "").lower() != "docs.google.com" or segments[1:3] != ["spreadsheets", "d"] or len(segments) < 4:
        return None
    query = parse_qs(parts.query)
    given = query.get("format") or query.get("output")
    return segments[3], given[0].lower() if given else None


def sheet_id(value: str) -> str:
    """A google_sheets source's ``spreadsheet_id``, refused when it is the sheet's whole address (the
    API would answer "not found"), naming the id to write."""
    sheet = _google_sheet(value)
    if sheet is not None or value.lower().startswith(("http://", "https://")):
        raise PydanticCustomError(
            "sheet_id",
            "spreadsheet_id is the id in the sheet's address, not the address: write spreadsheet_id: {id}",
            {"id": sheet[0] if sheet else "the part between /d/ and the next /"},
        )
    return value
