"""PostgreSQL through DuckDB's postgres extension: binary COPY, no rows pass through Python.

Reads only (SELECT, and COPY of a SELECT), so a read-only role on a hot standby is enough: no temp
tables, no writes, no replication slot. Changed rows are found by transaction id (``xmin``), not by
a timestamp column: see docs/sync.md for why that is exact under late commits and bulk updates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import duckdb

from headwater.config.sources import PostgresSettings
from headwater.errors import ConfigError, HeadwaterError, TransientFailure, first_line, host_not_found, unresolved_host
from headwater.redact import redact
from headwater.sources.tunnel import Tunnel
from headwater.sqltext import libpq_dsn, literal, one_value, without_password
from headwater.sync.sql import UNFIT as UNFIT_MARK
from headwater.sync.sql import Column, SqlSource, TableInfo, unfit, unfit_error
from headwater.sync.types import normalise
from headwater.warehouse import connect, require_extension

XID_SPAN = 2**32
XID_HALF = 2**31

# Types the scanner's parallel read turns into exactly the type a query read gives (after the
# DuckDB-side cast); a table with any other type is read through one COPY of a SELECT instead.
_CURSOR_TYPES = ("TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "DATE", "BIGINT", "INTEGER")
# DuckDB's TIMESTAMP ends in 294247 AD, PostgreSQL's in 294276 AD; the scanner wraps later values
# around to about 290279 BC. PostgreSQL's own first instant is 4714-11-24 00:00 BC (UTC), so a
# timestamp read before it can only be such a wrapped value. (Microseconds, not year(): ICU's year of
# a TIMESTAMPTZ counts BC years upwards.)
_WRAPPED = "epoch_us({v}) < -210866803200000000"
_CURSOR_NAMES = ("updated_at", "modified_at", "last_modified", "updated", "modified", "changed_at", "last_updated")

_CATALOG = """
SELECT c.relname, c.relkind, c.relispopulated, greatest(c.reltuples, 0)::bigint AS estimated, c.oid::bigint || '/' || c.relfilenode::bigint AS identity,
       a.attname, format_type(a.atttypid, a.atttypmod) AS type_text,
       t.typtype, t.typcategory, coalesce(bt.typname, t.typname) AS base_type,
       CASE WHEN a.atttypmod > 0 THEN a.atttypmod ELSE -1 END AS typmod,
       coalesce(et.typname, '') AS element_type, a.attndims AS dimensions,
       coalesce(array_position(pk.indkey::int2[], a.attnum) - array_lower(pk.indkey::int2[], 1) + 1, 0) AS key_position,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indisvalid) AS leads_index
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
LEFT JOIN pg_catalog.pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_catalog.pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
WHERE n.nspname = {schema} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY c.relname, a.attnum
"""

# Read just before a table's snapshot is taken (docs/sync.md, "Between full passes"): the start of
# the oldest transaction in this database that could write rows, or now; and whether that can be
# trusted. Autovacuum and WAL senders never write table rows (and a long autovacuum would otherwise
# hold the bound back for its whole run).
_HORIZON = """
SELECT (extract(epoch FROM least(clock_timestamp(), min(a.xact_start))) * 1000000)::bigint AS micros,
       count(*) FILTER (WHERE a.query = '<insufficient privilege>' OR a.state = 'disabled') AS hidden,  -- disabled: track_activities off
       pg_is_in_recovery() AS standby,
       (SELECT count(*) FROM pg_catalog.pg_prepared_xacts WHERE database = current_database()) AS prepared
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = current_database() AND coalesce(a.backend_type, 'hidden') NOT IN ('autovacuum worker', 'walsender')
"""


class PostgresSource(SqlSource):
    kind = "postgres"
    settings: PostgresSettings

    def __init__(self, name: str, settings: PostgresSettings, root: Path) -> None:
        super().__init__(name, settings)
        self.root = root
        self.tunnel = Tunnel(name, settings.ssh_tunnel, root)
        self._guards: dict[str, tuple[str, set[str]]] = {}  # table -> (a condition raising on values raw cannot hold, the columns it checks)

    # --- connection ----------------------------------------------------------------------------

    def dsn(self, host: str | None = None, port: int | None = None, application_name: str | None = None) -> str:
        """libpq key=value string from the URL (through the tunnel, when there is one)."""
        parts = urlsplit(self.settings.url)
        if parts.scheme not in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
            raise ConfigError(f"sources.{self.name}.url is not a PostgreSQL URL", why=f"it starts with '{parts.scheme}://'", fix="Write postgresql://user:password@host:5432/database.")
        return libpq_dsn(self.settings.url, host=host, port=port, application_name=application_name or self.application_name)

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        require_extension(con, "postgres")
        host, port = self._endpoint()
        try:
            con.execute(f"ATTACH {literal(self.dsn(host, port))} AS {self.alias} (TYPE postgres, READ_ONLY)")
            con.execute(f"SELECT * FROM postgres_query({literal(self.alias)}, 'SELECT 1')").fetchall()
        except duckdb.Error as exc:
            self.tunnel.close()
            con.execute(f"DETACH DATABASE IF EXISTS {self.alias}")
            raise self.connection_error(exc) from None

    def detach(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            super().detach(con)
        finally:
            self.tunnel.close()

    def connection_error(self, exc: Exception) -> HeadwaterError:
        text = self.redact(str(exc))
        if (unfit := unfit_error(self.name, text)) is not None:
            return unfit
        low = text.lower()
        where = self.where()
        if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
            return HeadwaterError(f"Source '{self.name}': PostgreSQL refused the user or password", why=first_line(text), fix=f"Check the user and password in sources.{self.name}.url ({where}).")
        if "does not exist" in low and "database" in low:
            return HeadwaterError(f"Source '{self.name}': the database does not exist on {where}", why=first_line(text), fix=f"Fix the database name at the end of sources.{self.name}.url.")
        if unresolved_host(text):
            return host_not_found(f"Source '{self.name}'", urlsplit(self.settings.url).hostname or "", f"sources.{self.name}.url", first_line(text))
        if any(w in low for w in ("could not connect", "connection refused", "timeout", "timed out", "could not translate host", "no route", "connection reset", "server closed")):
            return TransientFailure(
                f"Source '{self.name}': cannot reach PostgreSQL at {where}",
                why=first_line(text),
                fix="Check the host and port in the URL, that the server is running and accepts connections from here (pg_hba.conf, firewall). The run is retried.",
            )
        if "permission denied" in low:
            return HeadwaterError(f"Source '{self.name}': permission denied on {where}", why=first_line(text), fix="GRANT USAGE ON SCHEMA and SELECT ON the tables to the sync user.")
        return HeadwaterError(f"Source '{self.name}': PostgreSQL error on {where}", why=first_line(text), fix="See the database's message above.")

    def copy_progress(self) -> Callable[[], int | None] | None:
        """Rows sent so far by this sync's COPY commands, from pg_stat_progress_copy (PostgreSQL 14+),
        read on a connection of its own; our sessions are found by their application_name."""
        probe = connect(":memory:")
        try:
            probe.execute("LOAD postgres")
            probe.execute(f"ATTACH {literal(self.dsn(*self._endpoint(), application_name='headwater progress'))} AS p (TYPE postgres, READ_ONLY)")
        except duckdb.Error:
            probe.close()
            return None
        sql = (
            "SELECT coalesce(sum(c.tuples_processed), 0)::bigint FROM pg_stat_progress_copy c JOIN pg_stat_activity a ON a.pid = c.pid "
            f"WHERE a.application_name = {literal(self.application_name)}"
        )

        return _CopyCounter(probe, f"SELECT * FROM postgres_query('p', {literal(sql)})")

    @property
    def application_name(self) -> str:
        return f"headwater sync {self.name}"

    def _endpoint(self) -> tuple[str, int]:
        parts = urlsplit(self.settings.url)
        return self.tunnel.open(parts.hostname or "localhost", parts.port or 5432)

    def redact(self, text: str) -> str:
        """A driver message without the password: the literal first (a quote in it would end a
        pattern early), then every URL and ``password=`` form."""
        return redact(without_password(text, self.settings.url))

    def where(self) -> str:
        parts = urlsplit(self.settings.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{parts.path.lstrip('/')}"

    # --- catalog -------------------------------------------------------------------------------

    def discover(self, con: duckdb.DuckDBPyConnection, names: list[str] | None) -> dict[str, TableInfo]:
        rows = self.query(con, _CATALOG.format(schema=literal(self.settings.schema_)))
        tables: dict[str, TableInfo] = {}
        keys: dict[str, list[tuple[int, str]]] = {}
        raw: dict[str, list[tuple[str, str, str, str, str, int, str, int]]] = {}
        kinds: dict[str, tuple[str, int]] = {}
        indexed: dict[str, list[str]] = {}
        identities: dict[str, str] = {}
        unpopulated: set[str] = set()
        for relname, relkind, populated, estimated, identity, attname, type_text, typtype, typcategory, base_type, typmod, element_type, dimensions, key_position, leads_index in rows:
            if names is not None and relname not in names:
                continue
            if not populated:
                unpopulated.add(relname)
            kinds[relname] = (relkind, estimated)
            identities[relname] = identity
            if leads_index:
                indexed.setdefault(relname, []).append(attname)
            raw.setdefault(relname, []).append((attname, type_text, typtype, typcategory, base_type, typmod, element_type, dimensions))
            if key_position:
                keys.setdefault(relname, []).append((key_position, attname))
        for relname, columns in raw.items():
            relkind, estimated = kinds[relname]
            if relname in unpopulated:  # reading it is an error ("has not been populated")
                why = "a materialized view created WITH NO DATA is not populated yet: skipped; it syncs once REFRESH MATERIALIZED VIEW has filled it"
                tables[relname] = TableInfo(relname, [], kind="view", skip=why)
                continue
            tables[relname] = self._table(con, relname, relkind, estimated, columns, [a for _, a in sorted(keys.get(relname, []))])
            tables[relname].indexed = indexed.get(relname, [])
            tables[relname].identity = identities[relname]
        return tables

    def _table(self, con: duckdb.DuckDBPyConnection, name: str, relkind: str, estimated: int, columns: list[tuple[str, str, str, str, str, int, str, int]], key: list[str]) -> TableInfo:
        exprs = {c[0]: self._read_expr(*c) for c in columns}
        select = ", ".join(f"{e} AS {self.quote(n)}" for n, e in exprs.items())
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM postgres_query({literal(self.alias)}, {literal(f'SELECT {select} FROM {self.qualified(name)} LIMIT 0')})").fetchall()
        except duckdb.Error as exc:  # this table fails; the others still sync
            error = self.connection_error(exc)
            return TableInfo(name, [], error=type(error)(f"{error.what} (reading table {name})", why=error.why, fix=error.fix))
        duck = {r[0]: r[1] for r in described}
        out: list[Column] = []
        for attname, type_text, _typtype, _cat, base_type, _typmod, _elem, _dims in columns:
            duck_type = duck[attname]
            convert = "CAST({c} AS {t})"
            zone = None
            if base_type in ("json", "jsonb"):
                duck_type = "JSON"
            elif base_type == "_json" or base_type == "_jsonb":
                duck_type = "JSON[]"
            scanned = normalise(duck_type)
            if scanned == "TIMESTAMP" and self.settings.timezone:
                duck_type, zone = "TIMESTAMPTZ", self.settings.timezone
                convert = f"timezone({literal(zone)}, CAST({{c}} AS TIMESTAMP))"
            elif scanned == "TIMESTAMP[]" and self.settings.timezone:  # each element as the scalars are: that zone's local time
                duck_type = "TIMESTAMPTZ[]"
                convert = f"list_transform(CAST({{c}} AS TIMESTAMP[]), x -> timezone({literal(self.settings.timezone)}, x))"
            if scanned in ("TIMESTAMP", "TIMESTAMPTZ"):
                convert = unfit(convert, _WRAPPED.format(v="{c}"), name, attname, "a timestamp after 294247-01-10 (DuckDB's last)")
            elif scanned in ("TIMESTAMP[]", "TIMESTAMPTZ[]"):
                wrapped = f"len(list_filter({{c}}, x -> {_WRAPPED.format(v='x')})) > 0"
                convert = unfit(convert, wrapped, name, attname, "a timestamp after 294247-01-10 (DuckDB's last)")
            out.append(Column(attname, duck_type, type_text, convert, zone))
        kind = {"r": "table", "p": "partitioned", "v": "view", "m": "view", "f": "foreign"}[relkind]
        candidates = [c.name for c in out if c.name.lower() in _CURSOR_NAMES and normalise(c.type) in _CURSOR_TYPES]
        info = TableInfo(name, out, key, candidates, kind, estimated or None, tracks_transactions=kind in ("table", "partitioned"), read_exprs=exprs)
        info.parallel_ok = None if kind == "table" else False  # asked when a whole-table read needs it
        guards = {c[0]: guard for c in columns if (guard := _guard(*c[1:6], c[7])) is not None}
        self._guards[name] = (" AND ".join(self._guard_sql(name, column, key, relkind, *guard) for column, guard in guards.items()), set(guards))
        return info

    def _guard_sql(self, table: str, column: str, key: list[str], relkind: str, condition: str, holds: str) -> str:
        """A PostgreSQL condition, true for every row, that instead raises an error naming the table,
        column and key on a row where ``condition`` (over ``{c}``) holds: a value the scanner would
        read as another one (NaN in numeric(p,s) as 0) or cannot read at all (an array of more
        dimensions than its column declares). (PostgreSQL has no function that raises in plain SQL,
        and a read-only role cannot create one: the message is cast to boolean, which fails quoting it.
        It depends on the row, so the planner cannot fold it in advance.) A row without a key is
        named by its ctid, or in a view (which has none) by its whole text."""
        col = self.quote(column)
        whole = "ctid::text" if relkind in ("r", "p", "m") else f"{self.quote(table)}::text"
        keys = " || ', ' || ".join(f"{literal(k + '=')} || coalesce({self.quote(k)}::text, 'NULL')" for k in key) or whole
        message = f"{literal(f'{UNFIT_MARK}column {table}.{column} (key ')} || {keys} || {literal(') holds ' + holds)}"
        return f"CASE WHEN {condition.format(c=col)} THEN ({message})::boolean ELSE true END"

    def _read_expr(self, attname: str, type_text: str, typtype: str, typcategory: str, base_type: str, typmod: int, element_type: str, dimensions: int) -> str:
        """The SELECT expression that makes a column arrive unchanged (see the type table in docs/sync.md)."""
        col = self.quote(attname)
        if typcategory == "A" and dimensions > 1:
            return f"{col}::text"  # declared int[][]: the scanner's query reads only one dimension; PostgreSQL's own text of the array
        if base_type == "char":
            return f"{col}::text"  # the single-byte "char" (or a domain over it): the scanner reads ' ' as ''
        if base_type == "bpchar" and typtype != "d" and typmod > 4:
            return f"rpad({col}::text, {typmod - 4})"  # ::text (and the scanner) drop char(n)'s padding; rpad puts it back
        if element_type == "bpchar" and typmod > 4:  # char(n)[]: each element padded, in order
            padded = f"ARRAY(SELECT rpad(e::text, {typmod - 4}) FROM unnest({col}) WITH ORDINALITY AS u(e, i) ORDER BY i)"
            return f"CASE WHEN {col} IS NULL THEN NULL ELSE {padded} END"
        if base_type == "numeric" and not _fits_decimal(typmod):
            return f"{col}::text"  # unconstrained, wider than DuckDB's DECIMAL(38) or an odd scale: exact as text
        if element_type == "numeric":
            return f"{col}::text[]"
        if base_type == "money":
            return f"{col}::numeric(20,2)"
        if typcategory in ("G", "I", "R", "U") and base_type not in ("uuid", "bytea", "json", "jsonb"):
            # Geometric, network, range and other types without a DuckDB twin (or a domain over one):
            # their text form. inet's cast to text always adds the netmask ('10.0.0.1/32'); abbrev()
            # is its output function's text ('10.0.0.1'), what PostgreSQL shows.
            return f"abbrev({col})" if base_type == "inet" else f"{col}::text"
        if typtype == "d":  # a domain: read as its base type
            return f"{col}::{_BASE_TYPE_NAMES.get(base_type, base_type)}"
        if element_type and typcategory == "A" and element_type not in ("int2", "int4", "int8", "float4", "float8", "text", "varchar", "bool", "uuid", "date", "timestamp", "timestamptz", "bpchar"):
            return f"{col}::text::text[]"  # each element in its output function's text (the array's own text, parsed)
        return col

    def _parallel_ok(self, con: duckdb.DuckDBPyConnection, table: TableInfo) -> bool:
        if table.parallel_ok is None:
            table.parallel_ok = self._scanner_agrees(con, table, table.read_exprs)
        return table.parallel_ok

    def _scanner_agrees(self, con: duckdb.DuckDBPyConnection, info: TableInfo, exprs: dict[str, str]) -> bool:
        """Whether the parallel scan of the table yields every column as a plain query does."""
        if any(e != self.quote(n) for n, e in exprs.items()):
            return False
        try:
            scanned = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {self.alias}.{self.quote(self.settings.schema_)}.{self.quote(info.name)}").fetchall()}
        except duckdb.Error:
            return False
        for column in info.columns:
            got = scanned.get(column.name)
            if got is None:
                return False
            if normalise(got) != normalise(column.type) and not (got.startswith("ENUM") or (column.type.startswith("JSON") and got == "VARCHAR")):
                return False
        return True

    def size_expr(self, info: TableInfo, column: Column) -> str:
        col = self.quote(column.name)
        return f"octet_length({col})" if column.source_type == "bytea" else f"octet_length({col}::text)"

    def qualified(self, table: str) -> str:
        return f"{self.quote(self.settings.schema_)}.{self.quote(table)}"

    # --- reads ---------------------------------------------------------------------------------

    def relation(self, con: duckdb.DuckDBPyConnection, table: TableInfo, *, where: str | None = None, columns: list[str] | None = None, parallel: bool = True) -> str:
        wanted = [c for c in table.columns if columns is None or c.name in columns]
        guard, guarded = self._guards.get(table.name, ("", set()))
        if not guarded.intersection(c.name for c in wanted):
            guard = ""
        if parallel and where is None and columns is None and self._parallel_ok(con, table):
            if guard:  # the scanner cannot carry the guard: one pass in PostgreSQL first, sending nothing
                self.query(con, f"SELECT count(*) FROM {self.qualified(table.name)} WHERE NOT ({guard})")
            # DuckDB's scanner: parallel COPYs of ctid ranges within one exported snapshot.
            return f"(SELECT {', '.join(self.quote(c.name) for c in wanted)} FROM {self.alias}.{self.quote(self.settings.schema_)}.{self.quote(table.name)})"
        if guard:
            where = f"({where}) AND {guard}" if where else guard
        exprs = ", ".join(f"{self._expr_for(table, c.name)} AS {self.quote(c.name)}" for c in wanted)
        sql = f"SELECT {exprs} FROM {self.qualified(table.name)}" + (f" WHERE {where}" if where else "")
        return f"postgres_query({literal(self.alias)}, {literal(sql)})"

    def _expr_for(self, table: TableInfo, column: str) -> str:
        return table.read_exprs.get(column) or self.quote(column)

    def query_relation(self, sql: str) -> str:
        """Any SELECT in PostgreSQL's own dialect, as a DuckDB relation (checks use this)."""
        return f"postgres_query({literal(self.alias)}, {literal(sql)})"

    def count_relation(self, table: TableInfo) -> str:
        return f"postgres_query({literal(self.alias)}, {literal(f'SELECT count(*) FROM {self.qualified(table.name)}')})"

    def probe(self, con: duckdb.DuckDBPyConnection, table: TableInfo, where: str) -> tuple[int, int] | None:
        changed, total = self.query(con, f"SELECT count(*) FILTER (WHERE {where}) AS changed, count(*) AS total FROM {self.qualified(table.name)}")[0]
        return int(changed), int(total)

    def begin(self, con: duckdb.DuckDBPyConnection, table: TableInfo) -> dict[str, Any]:
        """Fix the transaction's snapshot first: every read of this table's sync sees it, and its
        xmin (the oldest transaction still running) is where the next sync starts looking."""
        if not table.tracks_transactions:
            return {}
        (xmin,) = self.query(con, "SELECT txid_snapshot_xmin(txid_current_snapshot())::text")[0]
        return {"xmin": int(xmin)}

    @contextmanager
    def snapshot_reader(self, con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A second DuckDB connection whose transaction on the source imports the snapshot of
        ``con``'s (``pg_export_snapshot``, as DuckDB's parallel scan and pg_dump -j do): it reads
        exactly the rows ``con`` would. The snapshot stays valid while ``con``'s transaction is open."""
        (snapshot,) = self.query(con, "SELECT pg_export_snapshot()")[0]
        reader = con.cursor()
        try:
            reader.execute("BEGIN TRANSACTION")
            # The first statement of the reader's source transaction, as PostgreSQL requires.
            reader.execute(f"CALL postgres_execute({literal(self.alias)}, {literal(f'SET TRANSACTION SNAPSHOT {literal(str(snapshot))}')})")
            yield reader
        finally:
            try:
                reader.execute("ROLLBACK")  # it only read
            except duckdb.Error:
                pass
            reader.close()

    def horizon(self, con: duckdb.DuckDBPyConnection, table: TableInfo) -> tuple[dt.datetime | None, str | None]:
        """The start of the oldest transaction running in the database, read *before* the table's
        snapshot is taken: any transaction that snapshot cannot see was running at this moment (so it
        started no earlier) or started after it. None when some transactions cannot be seen."""
        micros, hidden, standby, prepared = self.query(con, _HORIZON)[0]
        if standby:
            return None, "the source is a read replica, where the primary's running transactions cannot be seen"
        if hidden:
            user = unquote(urlsplit(self.settings.url).username or "the sync user")
            return None, (
                f"the sync user cannot see every session's transaction (`GRANT pg_read_all_stats TO {user}` lets syncs read changes through an index; "
                "track_activities must be on)"
            )
        if prepared:
            return None, "prepared (two-phase) transactions are pending, and their start is unknown"
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=int(micros)), None

    def stamped_since(self, table: TableInfo, column: str, moment: dt.datetime) -> str:
        return f"{self.quote(column)} >= {literal(moment.isoformat())}::timestamptz"

    def changed_since(self, table: TableInfo, since_xmin: int) -> str:
        """Rows whose writing transaction was not visible to a snapshot whose xmin was ``since_xmin``:
        their xmin is at or after it, compared modulo 2^32 as PostgreSQL itself compares xids."""
        low = since_xmin % XID_SPAN
        return f"((xmin::text::bigint - {low}) & {XID_SPAN - 1}) < {XID_HALF}"

    def xmin_usable(self, state: dict[str, Any], snapshot: dict[str, Any]) -> bool:
        oldest = state.get("pass_xmin", state.get("xmin"))
        return oldest is not None and "xmin" in snapshot and 0 <= snapshot["xmin"] - int(oldest) < XID_HALF


class _CopyCounter:
    def __init__(self, probe: duckdb.DuckDBPyConnection, sql: str) -> None:
        self.probe, self.sql = probe, sql

    def __call__(self) -> int | None:
        try:
            return int(one_value(self.probe.execute(self.sql)))
        except duckdb.Error:
            return None

    def close(self) -> None:
        self.probe.close()


def _guard(type_text: str, typtype: str, typcategory: str, base_type: str, typmod: int, dimensions: int) -> tuple[str, str] | None:
    """The condition (over ``{c}``) on a value of this column that raw cannot hold as read, and what
    such a value is, for the message; None when every value arrives exactly."""
    if _holds_nan(typtype, base_type, typmod):
        return "{c} = 'NaN'", "NaN (not a number)"
    if typcategory == "A" and dimensions <= 1:
        return (
            "array_ndims({c}) > 1",
            f"an array of more than one dimension in a column declared with one (declared {type_text}[] it syncs as PostgreSQL's text of the array)",
        )
    return None


def _holds_nan(typtype: str, base_type: str, typmod: int) -> bool:
    """numeric(p,s) read as DECIMAL (p <= 38; wider and unconstrained ones arrive as text, NaN included)."""
    return typtype != "d" and base_type == "numeric" and typmod > 0 and ((typmod - 4) >> 16) <= 38


_BASE_TYPE_NAMES = {"int4": "integer", "int8": "bigint", "int2": "smallint", "float8": "double precision", "float4": "real", "bool": "boolean"}


def _fits_decimal(typmod: int) -> bool:
    """Whether numeric(p,s) of this typmod is a DuckDB DECIMAL(p,s): p ≤ 38 and 0 ≤ s ≤ p. PostgreSQL
    15 also allows a negative scale (numeric(5,-2): hundreds) and one above the precision
    (numeric(3,5): 0.00xyz); the scale is an 11-bit signed number in the typmod's low bits."""
    if typmod < 0:
        return False
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (((typmod - 4) & 0x7FF) ^ 1024) - 1024
    return precision <= 38 and 0 <= scale <= precision
