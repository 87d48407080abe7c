"""Demo projects on a PostgreSQL warehouse, and what the tests read back from that warehouse.

`on_postgres` turns a demo project (`demo_project.make_project`) into one whose headwater.yml says
``warehouse: {type: postgres, url: ...}``: the template's ``warehouse:`` block is replaced, so the file
keeps exactly one ``warehouse:`` key. The URL is written as users write it, ``postgresql://...``,
without SQLAlchemy's ``+psycopg`` driver suffix the test fixtures hand out.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from headwater.config import LoadedProject, load_project
from headwater.sqltext import ident

WAREHOUSE_BLOCK = re.compile(r"^warehouse:\n(?:[ \t]+.*\n|[ \t]*\n)*", re.MULTILINE)


def plain_url(url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql://...`` (what a user writes in headwater.yml)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def on_postgres(project: LoadedProject, url: str) -> LoadedProject:
    """The same project folder, its warehouse now the PostgreSQL database at ``url``."""
    path = project.root / "headwater.yml"
    text = path.read_text()
    assert len(WAREHOUSE_BLOCK.findall(text)) == 1, "the demo's headwater.yml should have one warehouse: block"
    text = WAREHOUSE_BLOCK.sub(f"warehouse:\n  type: postgres\n  url: {plain_url(url)}\n", text)
    assert len(re.findall(r"^warehouse:", text, re.MULTILINE)) == 1
    path.write_text(text)
    loaded = load_project(project.root)
    assert loaded.config.warehouse.type == "postgres"
    return loaded


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """A psycopg connection (autocommit) to the database at ``url`` (either spelling of the scheme)."""
    return psycopg.connect(plain_url(url), autocommit=True, **kwargs)


def checksum(url: str, schema: str, table: str) -> str | None:
    """md5 of the table's rows as text, in a total order (every column, ordered by the whole row's
    text); None when the table does not exist."""
    with connect(url) as con:
        if con.execute("SELECT to_regclass(%s)", [f"{ident(schema)}.{ident(table)}"]).fetchone()[0] is None:  # type: ignore[index]
            return None
        relation = f"{ident(schema)}.{ident(table)}"
        row = con.execute(f"SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')), count(*) FROM {relation} t").fetchone()
        assert row is not None
        return f"{row[0]}:{row[1]}"


def schema_checksums(url: str, schema: str) -> dict[str, str | None]:
    """Every table of ``schema`` and its checksum ({} when the schema does not exist)."""
    with connect(url) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", [schema]).fetchall()]
    return {t: checksum(url, schema, t) for t in tables}


def rows(url: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connect(url) as con:
        return con.execute(sql, params).fetchall()
