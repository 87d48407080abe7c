"""Raw tables in BigQuery: each table's change, sent while its local transaction is still open.

The sync engine runs unchanged against a local DuckDB mirror of raw (the DuckDB warehouse's build
file): it finds what changed there — deletes by comparing keys, MySQL's row hashes, counts — without
a single BigQuery query, so those comparisons cost nothing. Just before a table's local transaction
commits, `BigQueryRaw.before_commit` sends BigQuery what it changed:

- **A change** (rows written by this transaction carry its ``now()`` in ``_headwater_synced_at`` or
  ``_headwater_deleted_at``; hard-deleted keys are kept aside as they are deleted): the rows and the
  keys go to Parquet, **load jobs** put them in staging tables (free, and never the streaming buffer,
  whose rows DML cannot touch for up to 90 minutes), and one multi-statement transaction deletes the
  gone keys, MERGEs the rows by key (columns listed) and moves the table's token in
  ``_headwater.sync_state``: https://cloud.google.com/bigquery/docs/transactions
- **The whole table** (a full load, a file's table and its quarantine, a schema change, or BigQuery not
  holding exactly the state this sync began from): the table's token in BigQuery is cleared before
  the local commit, then the table is replaced by one load job (WRITE_TRUNCATE: atomic, and free where
  INSERT ... SELECT would bill the table's bytes) and the new token written — after the local commit
  (`after_commit`: DuckDB writes a committed table to Parquet ~1.5x faster than one its transaction
  has just made), except for a file's tables, which are sent before it (a file unchanged since its
  last sync is skipped, so its local state must never be ahead of BigQuery).

Each state carries a token: the local state keeps the token BigQuery had (or is about to have) when
the two last agreed. A sync sends only a change when BigQuery's token equals the local one; anything
else — a kill between BigQuery's commit and the local one, a whole table not yet sent after the local
commit, a failed send, a table dropped by hand — makes the next sync send the whole table. So a kill
at any moment converges: a change commits locally only after BigQuery took it, a whole table's token
is cleared in BigQuery before the local commit, and a BigQuery that is ahead or behind is noticed by
its token.

A SQL source's quarantine (SQLite's ``on_type_mismatch: quarantine``) is replaced in the table's
transaction without being named in ``also``: it is sent whole when its rows are not the ones last
sent (a checksum in the local state), and dropped from BigQuery when the mirror no longer has it.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from headwater.errors import ConfigError, HeadwaterError
from headwater.sqltext import ident, one_value
from headwater.sync.context import DELETED_AT, Change, RawTarget, gone_condition
from headwater.sync.engine import SYNCED_AT, quarantine_table
from headwater.sync.state import STATE_SCHEMA
from headwater.warehouse.bigquery import types
from headwater.warehouse.bigquery.client import Layout

if TYPE_CHECKING:
    from headwater.warehouse.bigquery.client import BigQuery

STATE_DATASET = STATE_SCHEMA  # BigQuery's dataset of Headwater's own tables, named as the mirror's schema
STATE_TABLE = "sync_state"
TOKEN = "warehouse_token"  # noqa: S105 - in the local state: the token BigQuery's state had when the two last agreed
GONE = "_hw_bq_gone"  # a temp table of the keys this transaction deleted (hard deletes)
STAGING_HOURS = 24.0  # a staging table a kill left behind expires by itself
QUARANTINE_SENT = "warehouse_quarantine"  # in the local state: the checksum of the quarantine rows BigQuery was last sent


class BigQueryRaw(RawTarget):
    """The local mirror is DuckDB (types held as they are); BigQuery gets each change before the commit."""

    max_identifier = 300  # BigQuery's longest column name: https://cloud.google.com/bigquery/quotas#table_limits

    def __init__(self, bq: BigQuery, work: Path) -> None:
        self.bq = bq
        self.work = work
        self._tokens: dict[str, dict[str, str | None]] = {}  # source -> table -> BigQuery's token
        self._pending: dict[tuple[str, str], tuple[Any, ...]] = {}  # whole tables to send once committed

    def refused(self, stored_type: str) -> list[tuple[str, str]]:
        return types.refused(stored_type)

    # -- recording what a transaction deletes ------------------------------------------------------

    def delete_gone(self, con: duckdb.DuckDBPyConnection, target: str, keys_table: str, key: list[str], *, tombstone: bool) -> int:
        if not tombstone:  # a tombstone is an update: its row is sent with the others
            keys = ", ".join(ident(k) for k in key)
            con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {GONE} AS SELECT {keys} FROM {target} LIMIT 0")
            con.execute(f"INSERT INTO {GONE} SELECT {keys} FROM {target} WHERE {gone_condition(target, keys_table, key)}")
        return super().delete_gone(con, target, keys_table, key, tombstone=tombstone)

    def rolled_back(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"DROP TABLE IF EXISTS temp.{GONE}")
        self._pending.clear()

    # -- sending ----------------------------------------------------------------------------------

    def before_commit(self, con: duckdb.DuckDBPyConnection, change: Change) -> None:
        try:
            self._before_commit(con, change)
        except HeadwaterError as exc:
            raise _naming(exc, change, "BigQuery was not changed; the table's local transaction was rolled back, so the next sync reads the same changes again.") from exc

    def _before_commit(self, con: duckdb.DuckDBPyConnection, change: Change) -> None:
        started, processed = time.perf_counter(), self.bq.bytes_processed
        columns = _columns(con, change.schema, change.table)
        fields = [types.field(name, kind) for name, kind in columns]
        table_id = self.bq.table_id(change.schema, change.table)
        tokens = self.tokens(change.source)
        previous = (change.previous or {}).get(TOKEN)
        layout = self.layout(change.source, change.table, change.key, columns)
        existing = self.bq.table(table_id)
        same_schema = existing is not None and _shape(existing.schema) == _shape(fields) and Layout.of(existing) == layout
        companion = quarantine_table(change.table, self.max_identifier)
        if companion not in change.also:  # a SQL source's quarantine (SQLite's type mismatches), sent before the commit
            self._send_quarantine(con, change, companion)
        sent: tuple[int, int, str] | None
        if change.full or change.also or previous is None or tokens.get(change.table) != previous or not same_schema:
            self._invalidate(change.source, change.table)  # first: BigQuery's raw no longer agrees with any local state
            token = uuid.uuid4().hex
            change.state[TOKEN] = token
            if not change.also:  # sent once committed (`after_commit`): DuckDB reads a committed table faster
                con.execute(f"DROP TABLE IF EXISTS temp.{GONE}")
                self._pending[(change.source, change.table)] = (columns, fields, table_id, same_schema, layout, token, started, processed)
                return
            # A file's table and its quarantine: sent now. A file unchanged since its last sync is skipped,
            # so its local state must never be ahead of BigQuery.
            sent = self._send_whole(con, change, columns, fields, table_id, same_schema, layout, token)
            how = "replaced"
        else:
            sent = self._send_change(con, change, columns, fields, table_id, str(previous))
            how = "merged"
        con.execute(f"DROP TABLE IF EXISTS temp.{GONE}")
        if sent is None:  # nothing changed: BigQuery is not written, its token stays the one the state keeps
            change.state[TOKEN] = previous
            return
        change.state[TOKEN] = sent[2]
        self._sent(change, how, sent, started, processed)

    def after_commit(self, con: duckdb.DuckDBPyConnection, change: Change) -> None:
        """A whole table, sent after the local commit. Its state already holds the new token and
        BigQuery's was cleared: until the token is written below — a kill, an error — the two differ,
        and the next sync sends the table whole again."""
        pending = self._pending.pop((change.source, change.table), None)
        if pending is None:
            return
        columns, fields, table_id, same_schema, layout, token, started, processed = pending
        try:
            sent = self._send_whole(con, change, columns, fields, table_id, same_schema, layout, token)
        except HeadwaterError as exc:
            raise _naming(exc, change, "Raw was synced here, but BigQuery's copy of it was not replaced: the next sync sends the whole table again.") from exc
        self._sent(change, "replaced", sent, started, processed)

    def _sent(self, change: Change, how: str, sent: tuple[int, int, str], started: float, processed: int) -> None:
        rows, size, token = sent
        self.tokens(change.source)[change.table] = token
        change.log(
            f"source {change.source}: table {change.table}: BigQuery {how} {self.bq.settings.dataset(change.schema)}.{change.table}: "
            f"{rows:,} rows sent, {size:,} bytes of Parquet, {self.bq.bytes_processed - processed:,} bytes processed by queries ({time.perf_counter() - started:.1f} s)"
        )

    def _invalidate(self, source: str, table: str) -> None:
        tokens = self.tokens(source)
        if tokens.get(table) is not None:
            self._set_token(source, table, None, None)
            tokens[table] = None

    def dropped(self, con: duckdb.DuckDBPyConnection, source: str, schema: str, table: str) -> None:
        self._ensure_state_table()
        self.bq.query(
            f"DELETE FROM {self._state()} WHERE source = @source AND table_name = @table",
            _params(source=source, table=table),
            purpose="sync-prune",
        )
        self.bq.drop_table(self.bq.table_id(schema, table))
        self.tokens(source).pop(table, None)

    def layout(self, source: str, table: str, key: list[str], columns: list[tuple[str, str]]) -> Layout:
        """The raw table's partitioning and clustering: as `warehouse.raw_tables` says, else clustered
        by its key (what MERGE matches on) where BigQuery can cluster those columns, and not partitioned."""
        kinds = dict(columns)
        settings = self.bq.settings.raw_tables.get(source, {}).get(table)
        where = f"warehouse.raw_tables.{source}.{table}"
        if settings is not None:
            for column in [settings.partition_by, *(settings.cluster_by or [])]:
                if column is not None and column not in kinds:
                    raise ConfigError(f"{where}: {column} is not a column of raw_{source}.{table}", why=f"its columns: {', '.join(kinds)}", fix=f"Name one of them in {where}.")
            if settings.partition_by and types.field(settings.partition_by, kinds[settings.partition_by]).field_type not in ("DATE", "DATETIME", "TIMESTAMP"):
                raise ConfigError(f"{where}: partition_by {settings.partition_by} is not a date or time column", fix="Partition by a DATE, DATETIME or TIMESTAMP column (e.g. _headwater_synced_at).")
        cluster = settings.cluster_by if settings is not None and settings.cluster_by is not None else key
        clusterable = [c for c in cluster if types.field(c, kinds[c]).field_type in _CLUSTERABLE]
        if settings is not None and settings.cluster_by and clusterable != settings.cluster_by:
            raise ConfigError(
                f"{where}: cannot cluster by {', '.join(c for c in settings.cluster_by if c not in clusterable)}",
                why="BigQuery clusters by columns of top-level orderable types (not FLOAT64, BYTES, JSON, RECORD)",
                fix="Choose other columns.",
            )
        partition = settings.partition_by if settings is not None else None
        return Layout(partition, settings.granularity if settings is not None and partition else "DAY", tuple(clusterable[:4]) if len(clusterable) == len(cluster) else ())

    def tokens(self, source: str) -> dict[str, str | None]:
        """BigQuery's token of each of the source's tables (read once per sync)."""
        if source not in self._tokens:
            self._ensure_state_table()
            rows = self.bq.query(f"SELECT table_name, token FROM {self._state()} WHERE source = @source", _params(source=source), purpose="sync-state")
            self._tokens[source] = {r["table_name"]: r["token"] for r in rows}
        return self._tokens[source]

    def _send_whole(
        self, con: duckdb.DuckDBPyConnection, change: Change, columns: list[tuple[str, str]], fields: list[Any], table_id: str, same_schema: bool, layout: Layout, token: str
    ) -> tuple[int, int, str]:
        """The table (and ``change.also``) replaced by load jobs, then BigQuery's token set (`_invalidate` cleared it)."""
        rows, size = self._replace(con, change.schema, change.table, columns, fields, table_id, same_schema, layout)
        for table in change.also:
            also_columns = _columns(con, change.schema, table)
            n, bytes_ = self._replace(con, change.schema, table, also_columns, [types.field(c, k) for c, k in also_columns], self.bq.table_id(change.schema, table))
            rows, size = rows + n, size + bytes_
        self._set_token(change.source, change.table, token, change.state)
        return rows, size, token

    def _replace(
        self, con: duckdb.DuckDBPyConnection, schema: str, table: str, columns: list[tuple[str, str]], fields: list[Any], table_id: str, same_schema: bool | None = None, layout: Layout | None = None
    ) -> tuple[int, int]:
        """BigQuery's ``table_id`` made to hold exactly the mirror's ``schema.table`` (re-created when
        its schema or layout differs; ``same_schema`` None: asked of BigQuery), by one WRITE_TRUNCATE
        load job; returns the rows and the Parquet bytes sent."""
        if same_schema is None:
            existing = self.bq.table(table_id)
            same_schema = existing is not None and _shape(existing.schema) == _shape(fields)
        self.bq.ensure_dataset(schema)
        if not same_schema:
            self.bq.create_table(table_id, fields, layout=layout)
        rows, path = self._parquet(con, f"SELECT {_select(columns)} FROM {ident(schema)}.{ident(table)}")
        try:
            self.bq.load_parquet(path, table_id, truncate=True, purpose="sync-load")
            return rows, path.stat().st_size
        finally:
            path.unlink(missing_ok=True)

    def _send_quarantine(self, con: duckdb.DuckDBPyConnection, change: Change, companion: str) -> None:
        """The table's quarantine as the mirror holds it in this transaction (a SQL source writes it
        in `begin`): sent whole when its rows changed since last sent, dropped when it is gone."""
        previous = (change.previous or {}).get(QUARANTINE_SENT)
        table_id = self.bq.table_id(change.schema, companion)
        local = one_value(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? AND table_name = ?", [change.schema, companion]))
        if not local:
            if previous is not None or change.full:
                self.bq.drop_table(table_id)
            change.state.pop(QUARANTINE_SENT, None)
            return
        relation = f"{ident(change.schema)}.{ident(companion)}"
        checksum = str(one_value(con.execute(f"SELECT count(*) || ':' || coalesce(sum(hash(q::VARCHAR)::HUGEINT), 0) FROM {relation} q")))
        if checksum != previous or change.full:
            columns = _columns(con, change.schema, companion)
            self._replace(con, change.schema, companion, columns, [types.field(n, k) for n, k in columns], table_id)
        change.state[QUARANTINE_SENT] = checksum

    def _send_change(self, con: duckdb.DuckDBPyConnection, change: Change, columns: list[tuple[str, str]], fields: list[Any], table_id: str, previous: str) -> tuple[int, int, str] | None:
        names = [name for name, _ in columns]
        target = f"{ident(change.schema)}.{ident(change.table)}"
        written = f"{ident(SYNCED_AT)} = now()" + (f" OR {ident(DELETED_AT)} = now()" if DELETED_AT in names else "")
        has_gone = bool(one_value(con.execute(f"SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = '{GONE}'")))
        gone_rows = int(one_value(con.execute(f"SELECT count(*) FROM temp.{GONE}"))) if has_gone else 0
        changed_rows = int(one_value(con.execute(f"SELECT count(*) FROM {target} WHERE {written}")))
        if not changed_rows and not gone_rows:
            return None
        token = uuid.uuid4().hex
        stage = self.bq.table_id(STATE_DATASET, f"stage__{change.source}__{change.table}__{token[:12]}")
        gone_stage = stage + "__gone"
        staged: list[str] = []
        size = 0
        try:
            statements = ["BEGIN TRANSACTION;"]
            raw = self.bq.quoted(table_id)
            # NULL keys match NULL keys: IS NOT DISTINCT FROM (https://cloud.google.com/bigquery/docs/reference/standard-sql/operators#is_distinct),
            # an equality join. Spelt "r.k = s.k OR (r.k IS NULL AND s.k IS NULL)" it is a nested-loop join in the
            # emulator: 14-16 s for 20,000 staged rows into 1M (0.07 s this way; bench/warehouse_bigquery.py).
            match = " AND ".join(f"r.{_q(k)} IS NOT DISTINCT FROM s.{_q(k)}" for k in change.key)
            if gone_rows:
                key_types = dict(columns)
                gone_fields = [types.field(k, key_types[k]) for k in change.key]
                size += self._stage(con, f"SELECT {_select([(k, key_types[k]) for k in change.key])} FROM temp.{GONE}", gone_stage, gone_fields, staged)
                statements.append(f"DELETE FROM {raw} r WHERE EXISTS (SELECT 1 FROM {self.bq.quoted(gone_stage)} s WHERE {match});")
            if changed_rows:
                size += self._stage(con, f"SELECT {_select(columns)} FROM {target} WHERE {written}", stage, fields, staged)
                listed = ", ".join(_q(n) for n in names)
                values = ", ".join(f"s.{_q(n)}" for n in names)
                if change.key:
                    updates = ", ".join(f"{_q(n)} = s.{_q(n)}" for n in names if n not in change.key)
                    matched = f" WHEN MATCHED THEN UPDATE SET {updates}" if updates else ""
                    statements.append(f"MERGE {raw} r USING {self.bq.quoted(stage)} s ON {match}{matched} WHEN NOT MATCHED THEN INSERT ({listed}) VALUES ({values});")
                else:  # no key: rows are only ever appended
                    statements.append(f"INSERT INTO {raw} ({listed}) SELECT {listed} FROM {self.bq.quoted(stage)} s;")
            # Literals, not parameters, in the script: the emulator binds no parameters in a multi-statement
            # script (BigQuery does: https://cloud.google.com/bigquery/docs/parameterized-queries).
            literals = {"source": change.source, "table": change.table, "token": token, "state": _state_text(change.state, token)}
            statements.append(_merge_state(self._state(), {k: _string(v) for k, v in literals.items()}) + ";")
            statements.append("COMMIT TRANSACTION;")
            self.bq.query("\n".join(statements), purpose="sync-merge")
        finally:
            for table in staged:
                try:
                    self.bq.drop_table(table)
                except HeadwaterError as exc:  # it expires by itself (STAGING_HOURS)
                    change.log(f"source {change.source}: table {change.table}: staging table {table} left to expire: {exc.what}")
        return changed_rows + gone_rows, size, token

    def _stage(self, con: duckdb.DuckDBPyConnection, select: str, table_id: str, fields: list[Any], staged: list[str]) -> int:
        self.bq.create_table(table_id, fields, expires_in_hours=STAGING_HOURS, replace=False)  # a new name: nothing to replace
        staged.append(table_id)
        _, path = self._parquet(con, select)
        try:
            self.bq.load_parquet(path, table_id, truncate=False, purpose="sync-stage")
            return path.stat().st_size
        finally:
            path.unlink(missing_ok=True)

    def _parquet(self, con: duckdb.DuckDBPyConnection, select: str) -> tuple[int, Path]:
        """Write ``select`` (in this transaction: its own uncommitted rows included) to a Parquet file."""
        self.work.mkdir(parents=True, exist_ok=True)
        path = self.work / f"bq-{uuid.uuid4().hex}.parquet"
        # zstd at level 1: DuckDB writes it ~25% faster than its default level, 15% larger, and a reader
        # decompresses any level alike (docs/benchmarks.md, "BigQuery warehouse").
        rows = con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)").fetchone()
        return (int(rows[0]) if rows else 0), path

    # -- BigQuery's sync state ----------------------------------------------------------------------

    def _state(self) -> str:
        return self.bq.quoted(self.bq.table_id(STATE_DATASET, STATE_TABLE))

    def _ensure_state_table(self) -> None:
        if getattr(self, "_state_ready", False):
            return
        from google.cloud.bigquery import SchemaField

        self.bq.ensure_dataset(STATE_DATASET)
        table_id = self.bq.table_id(STATE_DATASET, STATE_TABLE)
        if self.bq.table(table_id) is None:
            schema = [
                SchemaField("source", "STRING", mode="REQUIRED"),
                SchemaField("table_name", "STRING", mode="REQUIRED"),
                SchemaField("token", "STRING"),
                SchemaField("state", "STRING"),
                SchemaField("updated_at", "TIMESTAMP"),
            ]
            self.bq.create_table(table_id, schema)
        self._state_ready = True

    def _set_token(self, source: str, table: str, token: str | None, state: dict[str, Any] | None) -> None:
        self._ensure_state_table()
        self.bq.query(_merge_state(self._state()), _params(source=source, table=table, token=token, state=None if state is None else _state_text(state, token)), purpose="sync-state")


def _naming(exc: HeadwaterError, change: Change, what_now: str) -> HeadwaterError:
    """``exc`` naming the source and table it was met syncing, and what was left where."""
    error = type(exc)(f"source {change.source}, table {change.table}: {exc.what}", why=exc.why, fix=f"{what_now} {exc.fix or ''}".strip())
    error.published = exc.published
    return error


def _merge_state(state_table: str, values: dict[str, str] | None = None) -> str:
    """The MERGE of one table's state row; ``values``: SQL literals for @source, @table, @token, @state (else parameters)."""
    v = values or {name: f"@{name}" for name in ("source", "table", "token", "state")}
    return (
        f"MERGE {state_table} t USING (SELECT {v['source']} AS source, {v['table']} AS table_name) s ON t.source = s.source AND t.table_name = s.table_name "
        f"WHEN MATCHED THEN UPDATE SET token = {v['token']}, state = {v['state']}, updated_at = CURRENT_TIMESTAMP() "
        f"WHEN NOT MATCHED THEN INSERT (source, table_name, token, state, updated_at) VALUES ({v['source']}, {v['table']}, {v['token']}, {v['state']}, CURRENT_TIMESTAMP())"
    )


def _string(value: str) -> str:
    """A GoogleSQL string literal: https://cloud.google.com/bigquery/docs/reference/standard-sql/lexical#string_and_bytes_literals"""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


def _state_text(state: dict[str, Any], token: str | None) -> str:
    import json

    return json.dumps({**state, TOKEN: token}, default=str, sort_keys=True)


def _params(**values: str | None) -> list[Any]:
    from google.cloud.bigquery import ScalarQueryParameter

    return [ScalarQueryParameter(name, "STRING", value) for name, value in values.items()]


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, table],
    ).fetchall()
    return [(str(name), str(kind)) for name, kind in rows]


def _select(columns: list[tuple[str, str]]) -> str:
    return ", ".join(f"{types.parquet_column(name, kind)} AS {ident(name)}" for name, kind in columns)


def _q(name: str) -> str:
    """A column name quoted for GoogleSQL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# Column types BigQuery clusters by: https://cloud.google.com/bigquery/docs/clustered-tables#cluster_column_types
_CLUSTERABLE = {"BIGNUMERIC", "BOOL", "DATE", "DATETIME", "GEOGRAPHY", "INT64", "NUMERIC", "RANGE", "STRING", "TIMESTAMP"}

# BigQuery answers with legacy type names (INTEGER, FLOAT, BOOLEAN, RECORD) for the GoogleSQL ones.
_LEGACY = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "STRUCT": "RECORD", "BIGDECIMAL": "BIGNUMERIC"}


def _shape(schema: list[Any]) -> list[tuple[Any, ...]]:
    """A schema as comparable tuples: names, types (legacy names), modes and nested fields."""
    return [(f.name, _LEGACY.get(f.field_type, f.field_type), f.mode or "NULLABLE", tuple(_shape(list(f.fields or [])))) for f in schema]
