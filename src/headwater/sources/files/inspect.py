"""One pass over a file's bytes: its content hash, whether it is UTF-8, and where its blank lines are.

The hash decides whether the file changed since the last sync. UTF-8 (with or without BOM) goes to
DuckDB as it is; anything else is decoded (declared, or detected by charset-normalizer: Windows-1252
from Excel on Windows, UTF-16 from "Unicode text") and written to a UTF-8 copy in streaming chunks,
so memory stays flat. Blank lines matter because DuckDB's CSV reader skips them without counting:
knowing where they are keeps the row numbers in the quarantine equal to the file's rows.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20
UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
DETECT_BYTES = 1 << 20


@dataclass
class FileFacts:
    sha256: str
    size: int
    utf8: bool  # valid UTF-8 (a UTF-8 BOM allowed)
    blank_lines: list[int] = field(default_factory=list)  # 1-based physical line numbers (UTF-8 files only)


class _BlankLines:
    """Finds empty lines ('\\n' or '\\r\\n' alone) chunk by chunk, without copying the chunks: one
    search for the file's kind of line break and one count of line breaks per chunk."""

    def __init__(self) -> None:
        self.lines_before = 0
        self.previous = b"\n"  # the file starts at a line start: a first line that is empty is blank
        self.pattern: bytes | None = None
        self.found: list[int] = []

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.pattern is None:  # the file's line break, from its first one
            first = chunk.find(b"\n")
            if first < 0:
                self.previous = (self.previous + chunk)[-2:]
                return
            self.pattern = b"\n\r\n" if (self.previous + chunk[:first]).endswith(b"\r") else b"\n\n"
        starts = []
        joint = self.previous + chunk[: len(self.pattern)]  # a blank line across the chunk boundary
        at = joint.find(self.pattern)
        while 0 <= at < len(self.previous):
            if at + len(self.pattern) > len(self.previous):  # straddles: not seen in the previous chunk alone
                starts.append(at + 1 - len(self.previous))  # where the blank line starts, relative to chunk
            at = joint.find(self.pattern, at + 1)
        at = chunk.find(self.pattern)
        while at >= 0:
            starts.append(at + 1)
            at = chunk.find(self.pattern, at + 1)
        for start in sorted(set(starts)):
            if start >= 0:
                before = self.lines_before + chunk.count(b"\n", 0, start)
            else:  # the blank line began at the end of the previous chunk
                before = self.lines_before - self.previous[start:].count(b"\n")
            self.found.append(before + 1)
        self.lines_before += chunk.count(b"\n")
        self.previous = (self.previous + chunk)[-2:]


def inspect_file(path: Path, *, scan_lines: bool = True) -> FileFacts:
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    blanks = _BlankLines() if scan_lines else None
    utf8, size, first = True, 0, True
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if first and chunk.startswith(UTF16_BOMS) and not chunk.startswith(UTF8_BOM):
                utf8 = False
            first = False
            if utf8 and not chunk.isascii():
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            if blanks is not None and utf8:
                blanks.feed(chunk)
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return FileFacts(digest.hexdigest(), size, utf8, blanks.found if blanks is not None and utf8 else [])


def detect_encoding(path: Path) -> str:
    """The most likely codec of a file that is not UTF-8."""
    from charset_normalizer import from_bytes

    with open(path, "rb") as handle:
        sample = handle.read(DETECT_BYTES)
    if sample.startswith(UTF16_BOMS):
        return "utf-16"
    matches = from_bytes(sample)
    best = matches.best()
    if best is None or best.encoding in ("ascii", "utf_8"):
        return "cp1252"  # bytes that are not UTF-8 in a sample that looks like it: Windows' Western default
    # A short sample often fits several code pages equally well (cp1250 and cp1252 share most
    # letters); spreadsheets saved on Windows in the West are cp1252, so it wins a tie.
    tied = [m for m in matches if m.chaos <= best.chaos + 0.02]
    if any("cp1252" in m.could_be_from_charset for m in tied):
        return "cp1252"
    return best.encoding


def transcode(source: Path, encoding: str, target: Path) -> list[int]:
    """Write ``source`` (in ``encoding``) as UTF-8 to ``target``, a chunk at a time; returns its blank lines."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    blanks = _BlankLines()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(CHUNK):
            data = decoder.decode(chunk).encode("utf-8")
            blanks.feed(data)
            dst.write(data)
        tail = decoder.decode(b"", final=True).encode("utf-8")
        blanks.feed(tail)
        dst.write(tail)
    return blanks.found


# What a file is by its first bytes, for the error when a source's type cannot read it (the name was
# checked when headwater.yml was read: config/filetypes.py; a URL or a misnamed file gets here).
_SIGNATURES = ((b"PK\x03\x04", "excel"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "excel"), (b"SQLite format 3\x00", "sqlite"))


def content_kind(path: Path) -> str | None:
    """``excel`` (a zip archive, as .xlsx and .ods files are, or an old .xls), ``sqlite``, ``html`` (a
    web page: a login or error page downloaded instead of the file), ``text``, or None when it cannot
    tell."""
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError:
        return None
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head.startswith((*UTF16_BOMS, UTF8_BOM)):
        return "text"
    if b"\x00" in head:
        return None
    start = head.lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "text" if head else None
