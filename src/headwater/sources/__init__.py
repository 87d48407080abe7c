"""One module per kind of source, all listed in `KINDS`; `open_source` picks by the settings' class.

A kind is its settings model (config/, validated from headwater.yml), its implementation (imported
only when a source of that kind opens, so drivers such as psycopg load only when used), the DuckDB
extension it attaches through, and what it can do. Adding a kind: its module, its settings model in
the config's `Source` union, and one line in `KINDS`.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from headwater.config.files import CsvSource, ExcelSource, GoogleSheetsSource
from headwater.config.sources import MySQLSettings, PostgresSettings, SQLiteSettings
from headwater.sync.engine import Syncable as Source


@dataclass(frozen=True)
class SourceKind:
    type: str  # the ``type:`` in headwater.yml
    settings: builtins.type  # its settings model
    implementation: str  # "module:Class", imported when a source of this kind opens
    extension: str | None = None  # the DuckDB extension it attaches through (files use DuckDB's own readers)
    work_folder: bool = False  # stages what it reads in a work folder (`open_source`'s ``work_parent``)

    def implementation_class(self) -> builtins.type:
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


KINDS: tuple[SourceKind, ...] = (
    SourceKind("sqlite", SQLiteSettings, "headwater.sources.sqlite:SQLiteSource", extension="sqlite"),
    SourceKind("postgres", PostgresSettings, "headwater.sources.postgres:PostgresSource", extension="postgres"),
    SourceKind("mysql", MySQLSettings, "headwater.sources.mysql:MySQLSource", extension="mysql"),
    SourceKind("csv", CsvSource, "headwater.sources.files:CsvFileSource", work_folder=True),
    SourceKind("excel", ExcelSource, "headwater.sources.files:ExcelFileSource", work_folder=True),
    SourceKind("google_sheets", GoogleSheetsSource, "headwater.sources.files:GoogleSheetsFileSource", work_folder=True),
)

# DuckDB extensions each kind of source attaches through, by type.
EXTENSIONS = {kind.type: kind.extension for kind in KINDS if kind.extension}


def kind_of(settings: object) -> SourceKind:
    """The kind whose settings model ``settings`` is."""
    for kind in KINDS:
        if isinstance(settings, kind.settings):
            return kind
    raise TypeError(f"no source implementation for {type(settings).__name__}: add its SourceKind to headwater.sources.KINDS")  # config validation prevents this


def extensions_for(settings: Iterable[object]) -> tuple[str, ...]:
    """The extensions syncing these sources needs, to load before a confined connection is locked."""
    return tuple(sorted({EXTENSIONS[kind] for s in settings if (kind := getattr(s, "type", None)) in EXTENSIONS}))


def open_source(name: str, settings: object, root: Path, work_parent: Path | None = None) -> Source:
    """``work_parent``: where file sources make their work folder (default: the system's temporary folder)."""
    kind = kind_of(settings)
    source: Source = kind.implementation_class()(name, settings, root)
    if work_parent is not None and kind.work_folder:
        source.work_parent = work_parent  # type: ignore[attr-defined]
    return source


__all__ = ["EXTENSIONS", "KINDS", "Source", "SourceKind", "extensions_for", "kind_of", "open_source"]
