"""One module per kind of source; `open_source` picks by the ``type`` in headwater.yml."""

from __future__ import annotations

from pathlib import Path

from headwater.config.model import SQLiteSource as SQLiteSettings
from headwater.sources.base import Source, SourceTable
from headwater.sources.sqlite import SQLiteSource


def open_source(name: str, settings: object, root: Path) -> Source:
    if isinstance(settings, SQLiteSettings):
        return SQLiteSource(name, settings, root)
    raise TypeError(f"no source implementation for {type(settings).__name__}")  # config validation prevents this


__all__ = ["Source", "SourceTable", "open_source"]
