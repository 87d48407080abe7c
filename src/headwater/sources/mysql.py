"""MySQL and MariaDB through DuckDB's mysql extension: no rows pass through Python.

Every read is a ``mysql_query`` of a SELECT whose columns are written so that each value arrives
unchanged or with a documented mapping (the type table is in docs/sync.md): wide decimals as text,
BIT(n) as numbers, TIME as an interval, dates that are not dates (``0000-00-00``) as NULL, JSON and
binary-collated text as text. The extension runs all reads of one DuckDB transaction in one
``START TRANSACTION READ ONLY`` on one connection, so at InnoDB's default REPEATABLE READ every
read of one table's sync (changed rows, the row count, the keys) sees one snapshot. The session's
``time_zone`` is UTC, so TIMESTAMP columns arrive as UTC and are stored as instants.

A SELECT grant is all the sync user needs: no writes, no temporary tables, no binlog access.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import duckdb

from headwater.config.sources import MySQLSettings
from headwater.errors import ConfigError, HeadwaterError, TransientFailure, first_line, host_not_found, unresolved_host
from headwater.sources.tunnel import Tunnel
from headwater.sqltext import literal, mysql_ident
from headwater.sync.context import SyncContext
from headwater.sync.sql import HASH_COLUMN, Column, SqlSource, TableInfo
from headwater.sync.stats import TableStats
from headwater.warehouse import require_extension

SCHEMES = ("mysql", "mariadb", "mysql+pymysql", "mysql+mysqldb", "mysql+mysqlconnector", "mariadb+pymysql", "mariadb+mariadbconnector")
# URL query keys handed to the extension's connection string as they are.
_DSN_OPTIONS = ("ssl_mode", "ssl_ca", "ssl_capath", "ssl_cert", "ssl_cipher", "ssl_crl", "ssl_crlpath", "ssl_key", "compress")
_CURSOR_NAMES = ("updated_at", "modified_at", "last_modified", "updated", "modified", "changed_at", "last_updated", "update_time", "modified_on", "updated_on")
_TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json", "uuid", "inet4", "inet6")
_GEOMETRY_TYPES = ("geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection", "geomcollection")
_SNAPSHOT_LEVELS = ("REPEATABLE-READ", "SERIALIZABLE")
_BOOLEAN_GUARD = "not a boolean"  # marks the error raised when a TINYINT(1) holds something else than 0 or 1

_CATALOG = """
SELECT c.TABLE_NAME, t.TABLE_TYPE, t.TABLE_ROWS, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.EXTRA, c.NUMERIC_PRECISION, k.ORDINAL_POSITION, c.NUMERIC_SCALE
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
LEFT JOIN information_schema.KEY_COLUMN_USAGE k
  ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME AND k.CONSTRAINT_NAME = 'PRIMARY'
WHERE c.TABLE_SCHEMA = {schema}
ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION
"""
# MariaDB's JSON is LONGTEXT with a CHECK (json_valid(`col`)) constraint; MySQL has a real JSON type.
_MARIADB_JSON = "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = {schema} AND LEVEL = 'Column'"
_JSON_CHECK = re.compile(r"^json_valid\(`((?:[^`]|``)+)`\)$", re.IGNORECASE)


class MySQLSource(SqlSource):
    kind = "mysql"
    settings: MySQLSettings

    def __init__(self, name: str, settings: MySQLSettings, root: Path) -> None:
        super().__init__(name, settings)
        self.root = root
        self.tunnel = Tunnel(name, settings.ssh_tunnel, root)
        self.url = _parse_url(name, settings.url)
        self.server = ""  # VERSION() of the server, once attached
        self.isolation = ""

    # --- connection ----------------------------------------------------------------------------

    def dsn(self, host: str, port: int) -> str:
        """The extension's ``key="value"`` connection string (values quoted: passwords may hold anything)."""
        u = self.url
        values = {"host": host, "port": str(port), "user": u.user, "password": u.password, "database": u.database, **u.options}
        return " ".join(f'{k}="{_dsn_escape(v)}"' for k, v in values.items() if v != "")

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        require_extension(con, "mysql")
        # Read before ATTACH, by each new connection: UTC sessions (TIMESTAMP arrives as UTC), and
        # TINYINT(1), BIT and TIME typed the way `_read` expects whatever another user SET globally.
        con.execute("SET SESSION mysql_session_time_zone = '+00:00'")
        con.execute("SET SESSION mysql_tinyint1_as_boolean = false")
        con.execute("SET SESSION mysql_bit1_as_boolean = true")
        con.execute("SET SESSION mysql_time_as_time = false")
        host, port = self.tunnel.open(self.url.host, self.url.port)
        if host == "localhost":  # libmysqlclient would take "localhost" to mean its default unix socket
            host = "127.0.0.1"
        try:
            con.execute(f"ATTACH {literal(self.dsn(host, port))} AS {self.alias} (TYPE mysql, READ_ONLY)")
            facts = dict(self.query(con, "SHOW SESSION VARIABLES WHERE Variable_name IN ('version', 'tx_isolation', 'transaction_isolation')"))
        except duckdb.Error as exc:
            self.detach(con)
            raise self.connection_error(exc) from None
        except HeadwaterError:
            self.detach(con)
            raise
        self.server = facts.get("version", "")
        self.isolation = facts.get("transaction_isolation") or facts.get("tx_isolation", "")

    def detach(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            super().detach(con)
        finally:
            self.tunnel.close()

    def sync(self, ctx: SyncContext) -> list[TableStats]:
        try:
            stats = super().sync(ctx)
        except duckdb.Error as exc:  # a read failed half-way: the table's transaction was rolled back
            raise self.connection_error(exc) from None
        if self.isolation and self.isolation.upper() not in _SNAPSHOT_LEVELS:
            for s in stats:
                s.notes.append(
                    f"the server's transaction isolation is {self.isolation}, so this sync's reads did not share one snapshot; "
                    "the next sync still converges (see docs/sync.md), but REPEATABLE READ (InnoDB's default) makes each sync exact"
                )
        return stats

    def connection_error(self, exc: Exception) -> HeadwaterError:
        text = self.redact(str(exc))
        low = text.lower()
        where = self.where()
        # The extension repeats the connection string, or the whole query, before MySQL's own words.
        said = _CONNECT_FAILED.search(text) or _QUERY_FAILED.search(text)
        why = said.group(1).strip() if said else first_line(text)
        if _BOOLEAN_GUARD in low:
            return HeadwaterError(
                f"Source '{self.name}': {_guard_message(text)}",
                why="TINYINT(1) is MySQL's BOOLEAN, so Headwater syncs it as a boolean; this column holds other numbers, which a boolean would lose. The table was left as it was.",
                fix=f"Sync TINYINT(1) columns as numbers: add ?tinyint1_as_boolean=false to sources.{self.name}.url, then run "
                f"`headwater sync {self.name} --full-refresh` (their type changes from BOOLEAN to TINYINT).",
            )
        if "access denied for user" in low and "to database" in low:
            return HeadwaterError(f"Source '{self.name}': the user may not use the database on {where}", why=why, fix=f"GRANT SELECT ON `{self.url.database}`.* TO the sync user.")
        if "access denied for user" in low:
            return HeadwaterError(f"Source '{self.name}': MySQL refused the user or password", why=why, fix=f"Check the user and password in sources.{self.name}.url ({where}).")
        if "unknown database" in low:
            return HeadwaterError(f"Source '{self.name}': the database does not exist on {where}", why=why, fix=f"Fix the database name at the end of sources.{self.name}.url.")
        if "command denied" in low or "access denied" in low:
            return HeadwaterError(
                f"Source '{self.name}': permission denied on {where}", why=why, fix="GRANT SELECT ON the table (or the whole database) to the sync user; a view also needs its definer's rights."
            )
        if unresolved_host(text):
            return host_not_found(f"Source '{self.name}'", self.url.host or "", f"sources.{self.name}.url", why)
        transient = ("can't connect", "unknown mysql server host", "lost connection", "gone away", "timed out", "timeout", "connection refused", "connection reset", "deadlock", "too many connections")
        if any(w in low for w in transient):
            return TransientFailure(
                f"Source '{self.name}': cannot reach MySQL at {where}" if "connect" in low or "host" in low else f"Source '{self.name}': MySQL interrupted the read on {where}",
                why=why,
                fix="Check the host and port in the URL, that the server is running and accepts connections from here (bind-address, firewall, the user's host). The run is retried.",
            )
        if "conversion error" in low or "out of range" in low:
            return HeadwaterError(
                f"Source '{self.name}': a value from {where} does not fit its DuckDB type", why=why, fix="Please report this with the column's type (see docs/sync.md for the type mapping)."
            )
        return HeadwaterError(f"Source '{self.name}': MySQL error on {where}", why=why, fix="See the database's message above.")

    def redact(self, text: str) -> str:
        """A driver message without the password (the extension repeats the whole connection string)."""
        if self.url.password:
            for form in (_dsn_escape(self.url.password), self.url.password):
                text = text.replace(form, "***")
        return _PASSWORD.sub(r"\1***", text)

    def where(self) -> str:
        return f"{self.url.host}:{self.url.port}/{self.url.database}"

    def describe(self) -> str:
        return f"source '{self.name}' ({self.kind} {self.where()})"

    # --- catalog -------------------------------------------------------------------------------

    def discover(self, con: duckdb.DuckDBPyConnection, names: list[str] | None) -> dict[str, TableInfo]:
        # One DuckDB transaction: the extension opens a MySQL connection per transaction.
        con.execute("BEGIN TRANSACTION")
        try:
            return self._discover(con, names)
        finally:
            con.execute("ROLLBACK")

    def _discover(self, con: duckdb.DuckDBPyConnection, names: list[str] | None) -> dict[str, TableInfo]:
        schema = self.literal(self.url.database)
        rows = self.query(con, _CATALOG.format(schema=schema))
        json_columns: set[tuple[str, str]] = set()
        if "mariadb" in self.server.lower():
            for table, clause in self.query(con, _MARIADB_JSON.format(schema=schema)):
                if match := _JSON_CHECK.match(clause or ""):
                    json_columns.add((table, match.group(1).replace("``", "`")))
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            if names is None or row[0] in names:
                grouped.setdefault(row[0], []).append(row)
        return {name: self._table(con, name, columns, json_columns) for name, columns in grouped.items()}

    def _table(self, con: duckdb.DuckDBPyConnection, name: str, rows: list[tuple[Any, ...]], json_columns: set[tuple[str, str]]) -> TableInfo:
        kind = "view" if rows[0][1] == "VIEW" else "table"
        exprs = {r[3]: self._read(r[3], r[4].lower(), r[5].lower(), r[7]) for r in rows}
        select = ", ".join(f"{e} AS {self.quote(n)}" for n, e in exprs.items())
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM mysql_query({literal(self.alias)}, {literal(f'SELECT {select} FROM {self.qualified(name)} LIMIT 0')})").fetchall()
        except duckdb.Error as exc:  # this table fails; the others still sync
            error = self.connection_error(exc)
            return TableInfo(name, [], error=type(error)(f"{error.what} (reading table {name})", why=error.why, fix=error.fix))
        read_types = {r[0]: r[1] for r in described}
        for r in rows:
            if r[4].lower() == "decimal" and (r[7] or 0) <= 38 and read_types[r[3]] != (exact := f"DECIMAL({r[7]},{r[9]})"):
                # The extension derives DECIMAL(p-1,0) for DECIMAL(p,0), less for UNSIGNED ones and
                # DOUBLE for DECIMAL(1,0): its widest values would not read. Read the digits as text.
                exprs[r[3]], read_types[r[3]] = f"CAST({self.quote(r[3])} AS CHAR)", exact
        columns = [self._column(name, r[3], r[4].lower(), r[5].lower(), r[7], read_types[r[3]], (name, r[3]) in json_columns) for r in rows]
        key = [r[3] for r in sorted((r for r in rows if r[8] is not None), key=lambda r: r[8])]
        on_update = [r[3] for r in rows if "on update current_timestamp" in (r[6] or "").lower()]
        named = [r[3] for r in rows if r[3].lower() in _CURSOR_NAMES and r[4].lower() in ("timestamp", "datetime")]
        candidates = list(dict.fromkeys(on_update + named))
        estimated = int(rows[0][2]) if rows[0][2] is not None else None
        return TableInfo(name, columns, key, candidates, kind, estimated or None, read_exprs=exprs)

    def _read(self, column: str, data_type: str, column_type: str, precision: int | None) -> str:
        """The SELECT expression that makes the column arrive exactly (see the type table in docs/sync.md)."""
        c = self.quote(column)
        if data_type == "decimal" and (precision or 0) > 38:
            return f"CAST({c} AS CHAR)"  # DuckDB's DECIMAL stops at 38 digits; the extension would give a DOUBLE
        if data_type == "bit" and column_type != "bit(1)":
            return f"CAST({c} AS UNSIGNED)"
        if data_type in ("date", "datetime", "timestamp"):
            # '0000-00-00', '2024-02-00' and (ALLOW_INVALID_DATES) '2024-02-31' are not dates: NULL.
            return f"CASE WHEN DAYOFMONTH({c}) BETWEEN 1 AND DAYOFMONTH(LAST_DAY({c})) THEN {c} END"
        if data_type in _TEXT_TYPES:
            return f"CONVERT({c} USING utf8mb4)"  # binary collations and JSON would otherwise arrive as BLOB
        if data_type in _GEOMETRY_TYPES:
            return f"ST_AsText({c})"
        return c

    def _column(self, table: str, name: str, data_type: str, column_type: str, precision: int | None, read_type: str, mariadb_json: bool) -> Column:
        """Raw's type for the column and how the value read becomes it."""
        convert, duck_type, zone = "CAST({c} AS {t})", read_type, None
        if data_type == "json" or mariadb_json:
            duck_type = "JSON"
        elif data_type == "bit" and column_type != "bit(1)":
            duck_type = "UBIGINT"
        elif data_type == "time":
            duck_type = "INTERVAL"  # MySQL's TIME spans -838:59:59 to 838:59:59: a duration, not a time of day
        elif data_type == "tinyint" and column_type == "tinyint(1)" and self.url.tinyint1_as_boolean:
            duck_type = "BOOLEAN"
            message = literal(f"column {table}.{name} holds ").replace("{", "{{").replace("}", "}}")
            guard = literal(f", {_BOOLEAN_GUARD} (TINYINT(1) values must be 0 or 1)")
            convert = f"CASE WHEN {{c}} IS NULL THEN NULL WHEN {{c}} = 0 THEN false WHEN {{c}} = 1 THEN true ELSE error({message} || CAST({{c}} AS VARCHAR) || {guard}) END"
        elif data_type == "timestamp":
            duck_type, zone = "TIMESTAMPTZ", "UTC"  # an instant, read in the session's UTC
            convert = "timezone('UTC', CAST({c} AS TIMESTAMP))"
        elif data_type == "datetime" and self.settings.timezone:
            duck_type, zone = "TIMESTAMPTZ", self.settings.timezone
            convert = f"timezone({literal(zone)}, CAST({{c}} AS TIMESTAMP))"
        return Column(name, duck_type, column_type, convert, zone)

    def size_expr(self, info: TableInfo, column: Column) -> str:
        return f"OCTET_LENGTH({self.quote(column.name)})"

    def qualified(self, table: str) -> str:
        return f"{self.quote(self.url.database)}.{self.quote(table)}"

    # --- reads ---------------------------------------------------------------------------------

    def relation(self, con: duckdb.DuckDBPyConnection, table: TableInfo, *, where: str | None = None, columns: list[str] | None = None, parallel: bool = True) -> str:
        return self._streamed(self._select(table, where, columns))

    def hashed_relation(self, con: duckdb.DuckDBPyConnection, table: TableInfo, *, where: str | None = None, columns: list[str] | None = None) -> str:
        return self._streamed(self._select(table, where, columns, f"{self._row_hash(table)} AS {self.quote(HASH_COLUMN)}"))

    def _select(self, table: TableInfo, where: str | None, columns: list[str] | None, *extra: str) -> str:
        wanted = [c for c in table.columns if columns is None or c.name in columns]
        exprs = ", ".join([*(f"{table.read_exprs.get(c.name) or self.quote(c.name)} AS {self.quote(c.name)}" for c in wanted), *extra])
        return f"SELECT {exprs} FROM {self.qualified(table.name)}" + (f" WHERE {where}" if where else "")

    def _row_hash(self, table: TableInfo) -> str:
        """A 64-bit hash of a row's values as they are read (the first 16 hex digits of an MD5),
        computed by the server. Each value goes in through QUOTE (quoted, its quotes and backslashes
        escaped, NULL as the bare word NULL), so the comma-joined text is a different one for every
        different row: no two rows' values run together the same way. (QUOTE is also cheaper than
        casting each value and writing its length: 2.3 s against 3.1 s of server time per million
        rows of the benchmark's table.)"""
        values = ", ".join(f"QUOTE({table.read_exprs.get(c.name) or self.quote(c.name)})" for c in table.columns)
        return f"CAST(CONV(LEFT(MD5(CONCAT_WS(',', {values})), 16), 16, 10) AS UNSIGNED)"

    def _streamed(self, sql: str) -> str:
        """A read that DuckDB takes as MySQL sends it (``mysql_use_result``), on the DuckDB
        transaction's own MySQL connection, so in its snapshot: memory does not grow with the table.
        Without ``stream_results`` the client library holds the whole result first. (Extension 1.4.x:
        1.5 streams on a connection of its own, outside the transaction's snapshot;
        `test_streamed_reads_of_one_transaction_share_its_snapshot` says so if it is upgraded.)"""
        return f"mysql_query({literal(self.alias)}, {literal(sql)}, stream_results=TRUE)"

    def query_relation(self, sql: str) -> str:
        """Any SELECT in MySQL's own dialect, as a DuckDB relation (checks use this)."""
        return f"mysql_query({literal(self.alias)}, {literal(sql)})"

    def count_relation(self, table: TableInfo) -> str:
        return self._streamed(f"SELECT count(*) AS n FROM {self.qualified(table.name)}")

    def literal(self, value: Any) -> str:
        """Text goes as a hex literal unless it is plain: no quote or backslash escaping to get wrong
        (whether backslash escapes depends on the server's sql_mode)."""
        if isinstance(value, str):
            if value.isprintable() and not any(ch in value for ch in "'\\"):
                return f"'{value}'"
            return f"_utf8mb4 X'{value.encode().hex()}'" if value else "''"
        return super().literal(value)

    def quote(self, name: str) -> str:
        return mysql_ident(name)


class _Url:
    """The parts of a mysql:// URL the extension needs."""

    def __init__(self, host: str, port: int, user: str, password: str, database: str, options: dict[str, str], tinyint1_as_boolean: bool) -> None:
        self.host, self.port, self.user, self.password, self.database = host, port, user, password, database
        self.options, self.tinyint1_as_boolean = options, tinyint1_as_boolean


def _parse_url(source: str, url: str) -> _Url:
    try:
        parts = urlsplit(url)
        port = parts.port or 3306
    except ValueError as exc:
        raise ConfigError(f"sources.{source}.url is not a valid URL", why=_PASSWORD_IN_URL.sub(r"\1***\3", str(exc)), fix="Write mysql://user:password@host:3306/database.") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"sources.{source}.url is not a MySQL URL", why=f"it starts with '{parts.scheme}://'", fix="Write mysql://user:password@host:3306/database.")
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigError(f"sources.{source}.url names no database", fix="Add the database after the host: mysql://user:password@host:3306/database.")
    options: dict[str, str] = {}
    tinyint1_as_boolean = True
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "tinyint1_as_boolean":
            tinyint1_as_boolean = value.lower() not in ("false", "0", "no", "off")
        elif key in _DSN_OPTIONS:
            options[key] = value
        else:
            raise ConfigError(f"sources.{source}.url: unknown option '{key}'", fix=f"Use one of: {', '.join((*_DSN_OPTIONS, 'tinyint1_as_boolean'))} (e.g. ?ssl_mode=required).")
    return _Url(parts.hostname or "localhost", port, unquote(parts.username or ""), unquote(parts.password or ""), database, options, tinyint1_as_boolean)


def _dsn_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _guard_message(text: str) -> str:
    match = re.search(r"column .*? not a boolean \(TINYINT\(1\) values must be 0 or 1\)", text)
    return match.group(0) if match else first_line(text)


_CONNECT_FAILED = re.compile(r'Failed to connect to MySQL database with parameters ".*?"": (.*)')
_QUERY_FAILED = re.compile(r'(?s)for MySQL query ".*"\s*:\s*(\S.*)$')
_PASSWORD = re.compile(r"(password\s*=\s*)(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_PASSWORD_IN_URL = re.compile(r"(\w+://[^:/@\s]+:)([^@\s]+)(@)")
