"""DuckDB's types as raw tables in PostgreSQL hold them: what each becomes, and how a column widens.

DuckDB's postgres extension creates a raw table's columns from the DuckDB types the sync reads. Most
have a PostgreSQL twin and read back as themselves; the rest are cast *in DuckDB*, before the rows
leave, to a type PostgreSQL holds exactly — or the cast fails and the table's sync fails with it:

    HUGEINT        -> DECIMAL(38,0)  numeric(38,0)   (the extension would make it double precision: rounded)
    UBIGINT        -> DECIMAL(20,0)  numeric(20,0)
    UTINYINT..UINTEGER -> BIGINT     bigint
    TINYINT        -> SMALLINT       smallint
    TIMESTAMP_S/_MS -> TIMESTAMP     timestamp       (PostgreSQL keeps microseconds; _NS is refused below)
    STRUCT, MAP    -> JSON           json            (PostgreSQL's composite types must be named)
    UHUGEINT, BIT, UNION, VARINT -> VARCHAR text      (no twin: kept as their exact text)

``stored_type`` answers with the DuckDB type the column reads back as, so the sync's schema check
compares like with like (docs/warehouses.md, "Types").

``refused`` stops the sync of a row holding a value that would not arrive as itself, with an error
naming table, column and key (tests/test_sync_pg_warehouse.py): text with a NUL byte (PostgreSQL's
text cannot hold one; SQLite's and DuckDB's can), and a text array element spelled ``NULL`` (any
case), which PostgreSQL holds but the extension cannot write: it copies a table with a list column
in COPY's text format and leaves the element unquoted, so PostgreSQL would read a NULL element.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import duckdb

from headwater.errors import HeadwaterError
from headwater.sqltext import ident, literal, one_value
from headwater.sync.context import RawTarget, Reader
from headwater.sync.state import STATE_SCHEMA
from headwater.sync.types import normalise
from headwater.warehouse.postgres import load

_AS = {
    "HUGEINT": "DECIMAL(38,0)",
    "INT128": "DECIMAL(38,0)",
    "UBIGINT": "DECIMAL(20,0)",
    "UINTEGER": "BIGINT",
    "USMALLINT": "BIGINT",
    "UTINYINT": "BIGINT",
    "TINYINT": "SMALLINT",
    "INT1": "SMALLINT",
    "TIMESTAMP_S": "TIMESTAMP",
    "TIMESTAMP_MS": "TIMESTAMP",
    "UHUGEINT": "VARCHAR",
    "BIT": "VARCHAR",
    "BITSTRING": "VARCHAR",
    "VARINT": "VARCHAR",
    "BIGNUM": "VARCHAR",
    "TIMETZ": "TIME WITH TIME ZONE",
    "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE",
}

# DuckDB's type name (as it reads back from PostgreSQL) -> PostgreSQL's, for ALTER COLUMN ... TYPE.
_PG = {
    "BOOLEAN": "boolean",
    "SMALLINT": "smallint",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "VARCHAR": "varchar",
    "BLOB": "bytea",
    "DATE": "date",
    "TIME": "time",
    "TIME WITH TIME ZONE": "timetz",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
    "UUID": "uuid",
    "JSON": "json",
}


_NO_NUL = "which PostgreSQL's text cannot hold"
_SPELLED_NULL = (
    "an array element spelled NULL, which PostgreSQL would store as a NULL element "
    "(DuckDB's postgres extension copies arrays as text and leaves it unquoted; the DuckDB warehouse keeps it)"
)
# Key types (as DuckDB names raw's columns) whose equality PostgreSQL decides exactly as DuckDB does.
# Not floats (NaN, -0.0), json (no equality in PostgreSQL), intervals ('1 day' = '24 hours' there), time
# zones of TIMETZ, or anything nested.
_SAME_EQUALITY = re.compile(r"SMALLINT|INTEGER|BIGINT|DECIMAL\(\d+,\s*\d+\)|VARCHAR|BLOB|BOOLEAN|UUID|DATE|TIMESTAMP|TIMESTAMP WITH TIME ZONE")
KEYS_TABLE = "_hw_matching_keys"  # in STATE_SCHEMA; created and dropped inside one table's transaction


class PostgresRaw(RawTarget):
    """Raw tables in a PostgreSQL warehouse attached to the sync's DuckDB under ``catalog``."""

    checkpoints = False  # DuckDB would send PostgreSQL a CHECKPOINT (see `RawTarget.checkpoints`)
    max_identifier = 63  # NAMEDATALEN - 1: longer names are cut, silently

    def __init__(self, catalog: str, errors: Callable[[Exception], HeadwaterError] | None = None) -> None:
        self.catalog = catalog
        self._threads: int | None = None  # DuckDB's threads before a streamed full load (`load_full`)
        self.errors = errors  # the warehouse's own errors (`Warehouse.connection_error`)

    def stored_type(self, duck_type: str) -> str:
        text = duck_type.strip()
        upper = text.upper()
        if upper.endswith("[]"):
            inner = self.stored_type(text[:-2])
            return "JSON" if inner == "JSON" else inner + "[]"  # PostgreSQL arrays of composites: as JSON too
        if upper.startswith(("STRUCT", "MAP")):
            return "JSON"
        if upper.startswith(("UNION", "ENUM")):
            return "VARCHAR"
        if upper.startswith("TIMESTAMP_NS"):
            raise HeadwaterError(
                "A column holds nanosecond timestamps, which a PostgreSQL warehouse cannot hold",
                why="PostgreSQL's timestamp keeps microseconds; loading would silently drop the last three digits",
                fix="Cast the column to TIMESTAMP in the source (or in a file source's column type), or use the DuckDB warehouse.",
            )
        return _AS.get(upper, text)

    def execute(self, con: duckdb.DuckDBPyConnection, sql: str) -> None:
        """SQL run by PostgreSQL itself, in the transaction DuckDB holds open on the warehouse."""
        con.execute(f"CALL postgres_execute({literal(self.catalog)}, {literal(sql)})")

    def store(self, value: str, duck_type: str) -> str:
        stored = self.stored_type(duck_type)
        if stored == "JSON" and normalise(duck_type) != "JSON":
            return f"to_json({value})"  # CAST(JSON[] AS JSON) writes a NULL element as NULL, which is no JSON
        return super().store(value, duck_type)

    def refused(self, stored_type: str) -> list[tuple[str, str]]:
        text, depth = normalise(stored_type), 0
        while text.endswith("[]"):
            text, depth = text[:-2], depth + 1
        if text != "VARCHAR":
            return []
        if depth == 0:
            return [("contains({c}, chr(0))", f"text with a NUL byte (character 0), {_NO_NUL}")]
        elements = "{c}"
        for _ in range(depth - 1):
            elements = f"flatten({elements})"
        return [
            (f"len(list_filter({elements}, x -> lower(x) = 'null')) > 0", _SPELLED_NULL),
            (f"len(list_filter({elements}, x -> contains(x, chr(0)))) > 0", f"an array element with a NUL byte (character 0), {_NO_NUL}"),
        ]

    def load_full(self, con: duckdb.DuckDBPyConnection, schema: str, table: str, rows: str, reader: Reader) -> int:
        """DuckDB's extension reads every postgres scan feeding an insert into PostgreSQL in full,
        into memory, first. A PostgreSQL source is read on a second connection in the table's
        snapshot while raw is written (warehouse/postgres/load.py). Other sources' scans are no
        postgres scans: they stream straight into the COPY (a 200 MB MariaDB table: 125 MB peak,
        against 191 MB staged in a DuckDB temporary table first)."""
        with reader() as other:
            if other is not None:
                # One DuckDB thread: the COPY into PostgreSQL is one stream whatever DuckDB's threads,
                # and the reader need only keep pace with it; a second thread only took a core from
                # the two PostgreSQL backends doing the work (5M rows: 0.92x psql's COPY | COPY on
                # one thread, 0.77x on two; docs/benchmarks.md). Put back after, or after a rollback.
                self._threads = int(one_value(con.execute("SELECT current_setting('threads')")))
                con.execute("SET threads = 1")
                written = load.load_full_from(con, other, schema, table, rows)
                self._restore_threads(con)
                return written
        return super().load_full(con, schema, table, rows, reader)

    def _restore_threads(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._threads is not None:
            con.execute(f"SET threads = {self._threads}")
            self._threads = None

    def alter_type(self, con: duckdb.DuckDBPyConnection, target: str, column: str, duck_type: str) -> None:
        """DuckDB's postgres extension alters only names and columns' presence: the type changes in
        PostgreSQL itself, on the table's own transaction (postgres_execute shares it)."""
        self.execute(con, f"ALTER TABLE {target} ALTER COLUMN {ident(column)} TYPE {pg_type(duck_type)}")
        con.execute("CALL pg_clear_cache()")  # DuckDB's copy of the catalog still has the old type

    def failure(self, exc: duckdb.Error, schema: str) -> HeadwaterError | None:
        """Rows copied in (COPY ... FROM STDIN: the source is only read, TO STDOUT) or a statement on
        raw's or the state's tables: the warehouse failed, whatever the source's driver would say."""
        text = str(exc)
        ours = ("FROM STDIN", "Failed to copy data", f"{ident(schema)}.", f"{ident(STATE_SCHEMA)}.")
        if self.errors is None or not any(mark in text for mark in ours):
            return None
        return self.errors(exc)

    def rolled_back(self, con: duckdb.DuckDBPyConnection) -> None:
        """DuckDB's copy of the warehouse's catalog keeps what the rolled-back transaction created
        (a first load's raw table): without this, the next query of it fails on a missing relation."""
        con.execute("CALL pg_clear_cache()")
        self._restore_threads(con)  # a failed full load's (an aborted transaction refuses SET)

    def delete_matching(self, con: duckdb.DuckDBPyConnection, target: str, rows: str, key: list[str]) -> None:
        """PostgreSQL deletes them itself, joining raw with the keys of ``rows`` copied into a table of
        the same transaction. DuckDB's DELETE of an attached table reads every raw row's key and ctid
        over the wire first, then deletes by ctid (0.45 s a million rows, whatever few rows changed).
        Keys of other types, or with NULLs (PostgreSQL's ``=`` is no match for them, and its ``IS NOT
        DISTINCT FROM`` cannot join by hash), are deleted DuckDB's way."""
        kinds = {str(name): str(kind) for name, kind, *_ in con.execute(f"DESCRIBE {rows}").fetchall()}
        nulls = " OR ".join(f"{ident(k)} IS NULL" for k in key)
        if not all(_SAME_EQUALITY.fullmatch(kinds[k].upper()) for k in key) or one_value(con.execute(f"SELECT count(*) FROM {rows} WHERE {nulls}")):
            super().delete_matching(con, target, rows, key)
            return
        keys = f"{STATE_SCHEMA}.{KEYS_TABLE}"
        # A failure anywhere fails the table's transaction, which takes this table away with it.
        con.execute(f"CREATE TABLE {ident(self.catalog)}.{keys} AS SELECT DISTINCT {', '.join(ident(k) for k in key)} FROM {rows}")
        match = " AND ".join(f"r.{ident(k)} = k.{ident(k)}" for k in key)
        self.execute(con, f"ANALYZE {keys}")
        self.execute(con, f"DELETE FROM {target} AS r USING {keys} AS k WHERE {match}")
        con.execute(f"DROP TABLE {ident(self.catalog)}.{keys}")

    def count(self, con: duckdb.DuckDBPyConnection, target: str, where: str = "") -> int:
        """Counted by PostgreSQL, on the table's own transaction (postgres_query shares it, so the
        rows this sync wrote are counted). DuckDB's own count(*) of an attached table sends every
        row over (a NULL each): 0.2 s a million rows, a few times a sync (docs/benchmarks.md)."""
        sql = f"SELECT count(*) FROM {target}" + (f" WHERE {where}" if where else "")
        return int(one_value(con.execute(f"SELECT * FROM postgres_query({literal(self.catalog)}, {literal(sql)})")))


def pg_type(duck_type: str) -> str:
    """PostgreSQL's name for a DuckDB type that reads back from PostgreSQL as itself."""
    text = duck_type.strip().upper()
    if text.endswith("[]"):
        return pg_type(text[:-2]) + "[]"
    if match := re.fullmatch(r"(?:DECIMAL|NUMERIC)\((\d+),\s*(\d+)\)", text):
        return f"numeric({match.group(1)},{match.group(2)})"
    if text in _PG:
        return _PG[text]
    raise HeadwaterError(f"Cannot change a raw column to {duck_type} in the PostgreSQL warehouse", why="Headwater knows no PostgreSQL type for it", fix="Reload the table with `--full-refresh`.")
