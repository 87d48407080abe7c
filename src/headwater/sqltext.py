"""Quoting names and values into SQL text, written once.

Standard SQL (DuckDB, PostgreSQL, SQLite) quotes an identifier in double quotes and a string in
single quotes, doubling the quote inside; MySQL/MariaDB quotes identifiers in backticks. Every
module that builds SQL text uses these rather than its own copy, so a fix lands everywhere.
"""

from __future__ import annotations


def ident(name: str) -> str:
    """``name`` as a double-quoted identifier (DuckDB, PostgreSQL, SQLite): any text, as is."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """``value`` as a standard string literal: only the single quote is special (a backslash is data)."""
    return "'" + value.replace("'", "''") + "'"


def literal_list(values: list[str]) -> str:
    """``values`` as a parenthesised list of literals, for ``IN (...)``."""
    return "(" + ", ".join(literal(v) for v in values) + ")"


def mysql_ident(name: str) -> str:
    """``name`` as a MySQL/MariaDB identifier (backticks; ANSI_QUOTES may be off on the server)."""
    return "`" + name.replace("`", "``") + "`"

