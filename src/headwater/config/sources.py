"""Database sources: SQLite files, PostgreSQL and MySQL/MariaDB servers.

All three share how tables are chosen (``tables``) and how each is synced (``overrides``); what
the modes mean and how exactness is kept is in docs/sync.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from headwater.config.base import Duration, Strict, TimeZone
from headwater.config.filetypes import readable_by

# A source's own names, as its database allows them (dots, quotes, spaces, dashes, unicode, reserved
# words): every query quotes them. Only NUL, which no database allows in a name, is refused.
TableName = Annotated[str, Field(pattern=r"^[^\x00]+$", max_length=128)]
SchemaName = Annotated[str, Field(pattern=r"^[^\x00]+$", max_length=128)]


class TablePatterns(Strict):
    include: list[str] = Field(["*"], description="Glob patterns of table names to sync, e.g. ['msg_*'].")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns of table names to leave out, e.g. ['tmp_*'].")


class TableSettings(Strict):
    """How one table is synced; every key is optional (found from the catalog or a sensible default)."""

    mode: Literal["auto", "full", "incremental", "append"] = Field(
        "auto",
        description="auto: incremental when the table has a primary key (PostgreSQL: by transaction ids; MySQL/SQLite: by a cursor "
        "column, else by comparing row hashes), else full. full: reload every sync. incremental: only changed rows, merged on the key. "
        "append: only rows past the cursor, never updated (event logs).",
    )
    primary_key: list[str] | None = Field(None, description="Key columns (default: the table's primary key in the catalog).")
    cursor: list[str] | None = Field(
        None, description="Columns that grow when a row changes, e.g. [updated_at] (default on MySQL/SQLite: found from the catalog; PostgreSQL needs none)."
    )
    lookback: Duration | None = Field(
        None, description="Re-read this far behind the cursor's last value to catch late commits (default 1h for timestamps, 0 for numbers)."
    )
    deletes: Literal["remove", "tombstone", "ignore"] | None = Field(None, description="What a row gone from the source does to raw (default: the source's).")
    check_deletes_every: Duration | None = Field(None, description="How often a sync makes a full pass over the table (default: the source's).")


class DatabaseSource(Strict):
    tables: Literal["*"] | list[TableName] | TablePatterns = Field("*", description="'*' for every table, a list of names, or include/exclude patterns.")
    overrides: dict[TableName, TableSettings] = Field(default_factory=dict, description="Per-table settings, by source table name.")
    deletes: Literal["remove", "tombstone", "ignore"] = Field(
        "remove", description="Rows deleted in the source: remove them from raw, keep them with _headwater_deleted_at set, or ignore deletes."
    )
    check_deletes_every: Duration | None = Field(
        None,
        description="How often a sync makes a full pass over a table: it finds hard deletes (a count first, then keys only) and, on PostgreSQL "
        "tables read through their updated_at index, any row changed without a newer updated_at. 0 = every sync. "
        "Default: every sync for tables under a million rows, hourly above.",
    )
    on_refused: Literal["quarantine", "fail"] = Field(
        "quarantine",
        description="A row holding a value the warehouse cannot hold (PostgreSQL: text with a NUL byte; BigQuery: a date before year 1, "
        "nanoseconds): quarantine it (raw_<source>.<table>__quarantine, with the column, the value and why; the other rows sync, and the row "
        "syncs once fixed in the source), or fail the table's sync. Never loaded as another value. The DuckDB warehouse holds every value.",
    )
    prune: bool = Field(
        False,
        description="Drop raw tables whose source table is gone (dropped, renamed, attached as a partition) or no longer selected by tables:, "
        "with their sync state. Default: keep them and say so in every sync's report (`headwater sync --prune` drops them once).",
    )
    timezone: TimeZone | None = Field(
        None, description="Time zone that 'timestamp without time zone' columns are written in (e.g. Europe/Berlin): they become UTC instants. Default: kept as they are."
    )

    def settings_for(self, table: str) -> TableSettings:
        return self.overrides.get(table) or TableSettings()


class SSHTunnel(Strict):
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str
    private_key: str | None = Field(None, description="Path to a private key file, or the key itself (write ${secret:NAME}).")
    password: str | None = Field(None, description="Write ${secret:NAME}: never the password itself.")


class SQLiteSettings(DatabaseSource):
    type: Literal["sqlite"]
    path: str = Field(description="Path to the SQLite file, relative to the project folder.")
    on_type_mismatch: Literal["quarantine", "text"] = Field(
        "quarantine",
        description="A value that is not of its column's declared type (SQLite allows 'five' in an INTEGER column): quarantine its row "
        "(raw_<source>.<table>__quarantine, with the reason), or sync the whole column as text. Never loaded as another value.",
    )

    @field_validator("path")
    @classmethod
    def _readable(cls, value: str) -> str:
        return readable_by("sqlite", value)


class PostgresSettings(DatabaseSource):
    type: Literal["postgres"]
    url: str = Field(description="postgresql://user:password@host:port/database — write ${CHAT_DB_URL} or ${secret:NAME}, never the password itself.")
    schema_: SchemaName = Field("public", alias="schema", description="The schema whose tables are synced (any name PostgreSQL allows, e.g. sales-eu).")
    ssh_tunnel: SSHTunnel | None = None

    model_config = Strict.model_config | {"populate_by_name": True}


class MySQLSettings(DatabaseSource):
    type: Literal["mysql"]
    url: str = Field(description="mysql://user:password@host:port/database — write ${APP_DB_URL} or ${secret:NAME}, never the password itself.")
    ssh_tunnel: SSHTunnel | None = None
