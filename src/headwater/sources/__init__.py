"""One module per kind of source; `open_source` picks by the ``type`` in headwater.yml."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from headwater.config.files import CsvSource, ExcelSource, GoogleSheetsSource
from headwater.config.sources import MySQLSettings, PostgresSettings, SQLiteSettings
from headwater.sources.sqlite import SQLiteSource
from headwater.sync.engine import Syncable as Source

# DuckDB extensions each kind of source attaches through (others read files with DuckDB's own readers).
EXTENSIONS = {"sqlite": "sqlite", "postgres": "postgres", "mysql": "mysql"}


def extensions_for(settings: Iterable[object]) -> tuple[str, ...]:
    """The extensions syncing these sources needs, to load before a confined connection is locked."""
    return tuple(sorted({EXTENSIONS[kind] for s in settings if (kind := getattr(s, "type", None)) in EXTENSIONS}))


def open_source(name: str, settings: object, root: Path, work_parent: Path | None = None) -> Source:
    """``work_parent``: where file sources make their work folder (default: the system's temporary folder)."""
    source = _open(name, settings, root)
    if work_parent is not None and hasattr(source, "work_parent"):
        source.work_parent = work_parent
    return source


def _open(name: str, settings: object, root: Path) -> Source:
    if isinstance(settings, SQLiteSettings):
        return SQLiteSource(name, settings, root)
    if isinstance(settings, PostgresSettings):
        from headwater.sources.postgres import PostgresSource

        return PostgresSource(name, settings, root)
    if isinstance(settings, MySQLSettings):
        from headwater.sources.mysql import MySQLSource

        return MySQLSource(name, settings, root)
    if isinstance(settings, CsvSource):
        from headwater.sources.files import CsvFileSource

        return CsvFileSource(name, settings, root)  # type: ignore[return-value]
    if isinstance(settings, ExcelSource):
        from headwater.sources.files import ExcelFileSource

        return ExcelFileSource(name, settings, root)  # type: ignore[return-value]
    if isinstance(settings, GoogleSheetsSource):
        from headwater.sources.files import GoogleSheetsFileSource

        return GoogleSheetsFileSource(name, settings, root)  # type: ignore[return-value]
    raise TypeError(f"no source implementation for {type(settings).__name__}")  # config validation prevents this


__all__ = ["Source", "extensions_for", "open_source"]
