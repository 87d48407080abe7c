"""Small projects with file sources, synced into a real DuckDB build database, for the file tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

from headwater.config import LoadedProject, load_project
from headwater.sources import open_source
from headwater.sync import TableStats, sync_source
from headwater.warehouse import Warehouse


def make_project(root: Path, sources_yaml: str, env: dict[str, str] | None = None) -> LoadedProject:
    root.mkdir(parents=True, exist_ok=True)
    (root / "headwater.yml").write_text("name: files_test\nsources:\n" + textwrap.indent(textwrap.dedent(sources_yaml).strip("\n"), "  ") + "\n")
    return load_project(root, env=env or {})


def sync(project: LoadedProject, source: str, *, full_refresh: bool = False, tables: list[str] | None = None, log: Callable[[str], None] | None = None) -> list[TableStats]:
    con = Warehouse(project.root, project.config.warehouse).connect_build()
    try:
        return sync_source(con, open_source(source, project.config.sources[source], project.root), log or (lambda _: None), tables=tables, full_refresh=full_refresh)
    finally:
        con.close()


def query(project: LoadedProject, sql: str, params: list | None = None) -> list[tuple]:
    con = Warehouse(project.root, project.config.warehouse).connect_build()
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def quarantine(project: LoadedProject, source: str, table: str) -> list[tuple]:
    """(row_number, column_name, original_value, rule) per quarantine row, in file order."""
    return query(project, f'SELECT row_number, column_name, original_value, rule FROM raw_{source}."{table}__quarantine" ORDER BY row_number, column_name, rule')


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path
