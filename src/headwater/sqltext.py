"""Quoting names and values into SQL text, written once.

Standard SQL (DuckDB, PostgreSQL, SQLite) quotes an identifier in double quotes and a string in
single quotes, doubling the quote inside; MySQL/MariaDB quotes identifiers in backticks. Every
module that builds SQL text uses these rather than its own copy, so a fix lands everywhere.
"""

from __future__ import annotations

from typing import Any, Protocol


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



class _Cursor(Protocol):
    def fetchone(self) -> tuple[Any, ...] | None: ...


def one_row(cursor: _Cursor) -> tuple[Any, ...]:
    """The row of a query that always returns exactly one: an aggregate without GROUP BY (``count(*)``,
    ``max(x)``), ``current_setting(...)``, or the row count DuckDB returns for INSERT/UPDATE/DELETE."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("a query that always returns one row returned none")
    return row


def one_value(cursor: _Cursor) -> Any:
    """The first value of `one_row` (its type is the query's: DuckDB's results are not typed)."""
    return one_row(cursor)[0]


def libpq_dsn(url: str, *, host: str | None = None, port: int | None = None, application_name: str | None = None) -> str:
    """A libpq key=value connection string from a ``postgresql://`` URL (its query parameters
    kept: sslmode, sslrootcert...), with ``host``/``port`` replaced when given (an SSH tunnel's
    end). Values are single-quoted with backslash escapes, as libpq reads them."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    values = {
        "host": host or parts.hostname or "localhost",
        "port": str(port or parts.port or 5432),
        "dbname": unquote(parts.path.lstrip("/")) or "postgres",
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }
    for item in filter(None, parts.query.split("&")):
        key, _, value = item.partition("=")
        values[key] = unquote(value)
    values.setdefault("connect_timeout", "15")
    if application_name:
        values["application_name"] = application_name
    return " ".join(f"{k}='{_libpq_quoted(v)}'" for k, v in values.items() if v != "")


def without_password(text: str, url: str) -> str:
    """``text`` (a driver's message) with the URL's password taken out, as written in the URL and as
    `libpq_dsn` quotes it (the postgres extension repeats the connection string). The literal goes
    first: a quote in it would end `headwater.redact`'s patterns early; run those afterwards."""
    from urllib.parse import unquote, urlsplit

    password = unquote(urlsplit(url).password or "")
    if len(password) < 2:
        return text
    return text.replace(_libpq_quoted(password), "***").replace(password, "***")


def _libpq_quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
