"""Whether a source can be reached, without moving any data: `headwater check`'s connectivity test.

A database source is attached read-only and its catalog listed (tables and views), as a sync
starts; a file source lists its tables, and its local files are looked for (a URL is not
downloaded: that would move the data); a Google Sheets source asks the API for the spreadsheet's
tabs, as a sync does first."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb

from headwater.config.files import CsvSource, CsvTable
from headwater.errors import HeadwaterError, first_line
from headwater.sources import open_source
from headwater.sources.files.base import FileSource
from headwater.sources.files.fetch import is_url, resolve
from headwater.sync.sql import SqlSource
from headwater.warehouse import connect


def reachable_tables(name: str, settings: Any, root: Path) -> list[str]:
    """The tables source ``name`` offers now; a `HeadwaterError` saying why when it cannot be reached."""
    try:
        return _tables(name, settings, root)
    except (duckdb.Error, OSError) as exc:  # what a source's own error handling left as it was (a damaged file)
        raise HeadwaterError(f"Source '{name}' cannot be read", why=first_line(str(exc)), fix=f"Check sources.{name} in headwater.yml and the file or server it names.") from None


def _tables(name: str, settings: Any, root: Path) -> list[str]:
    source = open_source(name, settings, root)
    if isinstance(source, SqlSource):
        con = connect(":memory:")
        try:
            source.attach(con)
            try:
                return sorted(source.discover(con, None))
            finally:
                source.detach(con)
        finally:
            con.close()
    if isinstance(source, FileSource):
        with tempfile.TemporaryDirectory(prefix=f"headwater-check-{name}-") as folder:
            work = Path(folder)
            specs = source.table_specs(work)
            for table, spec in specs.items():
                if isinstance(spec, (CsvSource, CsvTable)) and spec.path is not None and not is_url(spec.path):
                    resolve(spec.path, root, work, source.where(table))  # the file (or a file of the glob) is there
            return sorted(specs)
    raise TypeError(f"no probe for {type(source).__name__}")  # every kind is a SqlSource or a FileSource
