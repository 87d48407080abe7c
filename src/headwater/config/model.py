"""The project file, ``headwater.yml``, as typed models.

Every model forbids unknown keys, so a typo is an error with a did-you-mean rather than a setting
that silently does nothing.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from headwater.config.base import (  # noqa: F401 - re-exported
    IDENT,
    Duration,
    Name,
    Strict,
    TimeZone,
    _parse_duration,
)
from headwater.config.charts import CHART_KINDS, ChartKind
from headwater.config.confine import Confinement
from headwater.config.cron import validate as validate_cron
from headwater.config.files import CsvSource, ExcelSource, GoogleSheetsSource
from headwater.config.sources import MySQLSettings, PostgresSettings, SQLiteSettings
from headwater.config.sqlparser import ParseError, is_select, memory_limit_error, sql_parser

# --- warehouse and system database -------------------------------------------------------------

MAX_THREADS = 1024  # DuckDB's and dbt's worker threads: more is a typo (and DuckDB refuses 1e20)


def _memory_limit(value: str | None) -> str | None:
    """Checked by DuckDB itself when the file loads, not first in the middle of a run."""
    if value is not None and (why := memory_limit_error(value)) is not None:
        raise ValueError(f"'{value}' is not a DuckDB memory limit (e.g. 512MB, 4GB): {why}")
    return value


class DuckDBWarehouse(Strict):
    type: Literal["duckdb"] = "duckdb"
    path: str = Field(".headwater/warehouse", description="Folder holding the build database and published snapshots.")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="DuckDB worker threads (default: all cores).")
    memory_limit: str | None = Field(None, description="DuckDB memory limit, e.g. '4GB'.")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        return _memory_limit(value)
    keep_snapshots: int = Field(3, ge=1, description="Published snapshots kept on disk (the current one included).")


# DuckDB's own names for its catalogs: a warehouse database attached under one of them would clash.
RESERVED_CATALOGS = frozenset({"memory", "main", "temp", "system"})


class PostgresWarehouse(Strict):
    """A PostgreSQL database as the warehouse: raw, dbt's models and the published schema live there;
    DuckDB stays the local engine that reads sources and keeps the dashboards' read-only copy."""

    type: Literal["postgres"]
    url: str = Field(
        description="postgresql://user:password@host:5432/database — write ${secret:WAREHOUSE_URL}. One database per project "
        "(per organisation on an install with many): raw_<source>, dbt's schemas and `published` live in it."
    )
    path: str = Field(".headwater/warehouse", description="Local folder: the writer lock, work files and the dashboards' read-only copy of what was published.")
    published_schema: str = Field("published", pattern=r"^[a-z_][a-z0-9_]{0,40}$", description="The schema readers and BI tools see; switched in one transaction at publish.")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="Local DuckDB worker threads (default: all cores).")
    memory_limit: str | None = Field(None, description="Local DuckDB memory limit, e.g. '4GB'.")
    keep_snapshots: int = Field(3, ge=1, description="Local copies of the published tables kept on disk (the current one included).")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        return _memory_limit(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
            raise ValueError(f"warehouse.url must be a PostgreSQL URL (postgresql://user:password@host:5432/database), not '{parts.scheme}://...'")
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ValueError("warehouse.url names no database: end it with /DATABASE (one database per project)")
        if database.lower() in RESERVED_CATALOGS:
            raise ValueError(f"the warehouse database may not be called '{database}': DuckDB, which reads it, names its own catalogs so; use another name")
        return value

    @property
    def database(self) -> str:
        return unquote(urlsplit(self.url).path.lstrip("/"))


class BigQueryTableLayout(Strict):
    """How one raw table is laid out in BigQuery: https://cloud.google.com/bigquery/docs/partitioned-tables,
    https://cloud.google.com/bigquery/docs/clustered-tables"""

    partition_by: str | None = Field(None, description="A DATE, DATETIME or TIMESTAMP column to partition by (e.g. _headwater_synced_at); none by default.")
    granularity: Literal["HOUR", "DAY", "MONTH", "YEAR"] = Field("DAY", description="The partitions' span.")
    cluster_by: list[str] | None = Field(None, max_length=4, description="Up to 4 columns to cluster by; default: the table's key (what MERGE matches on); [] for none.")


class BigQueryWarehouse(Strict):
    """A BigQuery project as the warehouse: raw datasets, dbt's datasets and the published dataset live
    there. DuckDB stays the local engine: it reads the sources, keeps the sync's local mirror of raw
    (where changes are found without BigQuery queries) and the dashboards' read-only copy."""

    type: Literal["bigquery"]
    project: str = Field(pattern=r"^[a-z][a-z0-9.:-]{3,62}$", description="The Google Cloud project that holds the datasets and runs the jobs.")
    location: str | None = Field(None, description="Where datasets are created, e.g. 'EU' or 'asia-south1' (default: BigQuery's, US).")
    dataset_prefix: str = Field(
        "", pattern=r"^[a-zA-Z0-9_]{0,40}$",
        description="Put before every dataset name (raw_<source>, dbt's, published, _headwater): one set of datasets per organisation in one project. "
        "dbt sees it as the var headwater_dataset_prefix.",
    )
    credentials: str | None = Field(
        None, description="A service account key (its JSON) — write ${secret:BQ_SA_KEY}. Omitted: application-default credentials (gcloud auth, the VM's service account).",
    )
    api_endpoint: str | None = Field(None, pattern=r"^https?://", description="Another BigQuery REST endpoint (an emulator, for tests); then anonymous credentials are allowed.")
    maximum_bytes_billed: int | None = Field(None, ge=1, description="Refuse any query of Headwater's or dbt's that would bill more bytes than this.")
    published_dataset: str = Field("published", pattern=r"^[a-z_][a-z0-9_]{0,40}$", description="The dataset BI tools read: views onto the current published version.")
    path: str = Field(".headwater/warehouse", description="Local folder: the writer lock, the sync's mirror of raw, work files and the dashboards' copy.")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description="Local DuckDB worker threads (default: all cores).")
    memory_limit: str | None = Field(None, description="Local DuckDB memory limit, e.g. '4GB'.")
    keep_snapshots: int = Field(3, ge=1, description="Published versions kept (in BigQuery and as local copies), the current one included.")
    raw_tables: dict[str, dict[str, BigQueryTableLayout]] = Field(
        default_factory=dict, description="Per source, per table: partitioning and clustering of the raw table in BigQuery (changing it re-creates the table at the next sync)."
    )

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        return _memory_limit(value)

    def dataset(self, name: str) -> str:
        """A dataset's name in BigQuery: the prefix and Headwater's name for it."""
        return f"{self.dataset_prefix}{name}"


# One member per warehouse engine, told apart by ``type`` (``duckdb`` when a file names none, as every
# file did before there was a choice). Adding an engine is one settings class added here plus its
# folder under warehouse/, registered in `headwater.warehouse.registry.ENGINES`
# (tests/test_warehouse_registry.py checks the two agree).
WarehouseSettings = Annotated[DuckDBWarehouse | PostgresWarehouse | BigQueryWarehouse, Field(discriminator="type")]


class SystemDatabase(Strict):
    url: str = Field("sqlite:///.headwater/system.db", description="SQLAlchemy URL; relative SQLite paths are relative to the project.")


# --- sources -----------------------------------------------------------------------------------


Source = Annotated[SQLiteSettings | PostgresSettings | MySQLSettings | CsvSource | ExcelSource | GoogleSheetsSource, Field(discriminator="type")]


# --- checks --------------------------------------------------------------------------------------


class Query(Strict):
    sql: str = Field(description="One number, or rows of (key columns..., number) compared key by key.")
    source: Name | None = Field(None, description="Run on this source, in its own SQL dialect; default: the warehouse.")


class ReconcileCheck(Strict):
    type: Literal["reconcile"]
    name: Name
    left: Query
    right: Query
    tolerance: float = Field(0, ge=0, description="Largest allowed absolute difference.")
    tolerance_percent: float = Field(0, ge=0, description="Largest allowed difference, in percent of the left value.")
    severity: Literal["error", "warn"] = Field("error", description="error: a failure stops publishing; warn: recorded and alerted only.")


class FreshnessCheck(Strict):
    type: Literal["freshness"]
    name: Name
    source: Name
    table: Name
    column: Name = Field("updated_at", description="A timestamp column (UTC) of the synced table.")
    max_age: Duration
    severity: Literal["error", "warn"] = "error"


Check = Annotated[ReconcileCheck | FreshnessCheck, Field(discriminator="type")]


# --- dbt, pipelines ------------------------------------------------------------------------------


class DbtSettings(Strict):
    project_dir: str = Field(".", description="Folder holding dbt_project.yml, relative to the project.")
    threads: int = Field(2, ge=1, le=MAX_THREADS)
    vars: dict[str, str | int | float | bool | None] = Field(default_factory=dict, description="Passed to dbt as --vars.")
    seed_first: bool = Field(
        False,
        description="Run `dbt seed` before `dbt build`: dbt orders a seed before a model only through ref(), "
        "so a model reading a seed through source() or a var can otherwise run before the seed is loaded.",
    )


class Schedule(Strict):
    cron: str = Field(description="Five-field cron expression, e.g. '0 7 * * *' for 07:00 every day; day of week 0 or 7 = Sunday.")
    timezone: TimeZone = Field("UTC", description="IANA time zone the cron expression is read in, e.g. Asia/Kolkata.")
    catch_up: bool = Field(True, description="After downtime, run once for the missed times (never once per missed time).")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            validate_cron(value)
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a cron expression: {exc}") from None
        return value


class Retries(Strict):
    attempts: int = Field(3, ge=1, le=20, description="Attempts in all, the first included. Only transient errors are retried.")
    backoff: Duration = Field(dt.timedelta(seconds=30), description="Wait before the second attempt; doubles each time.")
    max_backoff: Duration = Field(dt.timedelta(minutes=10))


class Pipeline(Strict):
    sources: list[Name] | None = Field(None, description="Sources to sync first (default: all).")
    select: str | None = Field(None, description="dbt selection to build (default: the whole project).")
    publish: list[str] = Field(["marts"], description="What readers may see: model folders under models/ or model names.")
    checks: list[Check] = Field(default_factory=list, description="Run after dbt build, before publishing.")
    schedule: Schedule | None = None
    timeout: Duration | None = Field(None, description="A run taking longer is stopped and fails.")
    retries: Retries = Field(default_factory=Retries)
    after: list[Name] = Field(default_factory=list, description="Run when all of these pipelines have succeeded.")

    @model_validator(mode="after")
    def _unique_checks(self) -> Pipeline:
        names = [c.name for c in self.checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"check names must be unique: {', '.join(duplicates)}")
        return self


# --- alerts --------------------------------------------------------------------------------------


class SMTP(Strict):
    host: str
    port: int = Field(587, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(None, description="Write ${SMTP_PASSWORD}: never the password itself.")
    security: Literal["starttls", "ssl", "none"] = "starttls"
    sender: str = Field(alias="from", description="The From: address.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EmailAlert(Strict):
    type: Literal["email"]
    to: list[str] = Field(min_length=1)
    smtp: SMTP


class WebhookAlert(Strict):
    type: Literal["webhook"]
    url: str = Field(description="Write ${SLACK_WEBHOOK_URL}: the URL is a secret.")
    format: Literal["slack", "discord", "json"] = "slack"


AlertChannel = Annotated[EmailAlert | WebhookAlert, Field(discriminator="type")]


class Web(Strict):
    base_url: str | None = Field(None, description="Where people open the web app, for links in alerts, e.g. https://data.example.org.")


# --- dashboards ---------------------------------------------------------------------------------

RESERVED_PREFIX = "hw_"  # SQL parameter names Headwater binds itself (row-level scope): no filter may take one
WIDTHS = {"third": 4, "half": 6, "full": 12}  # of a 12-column grid; one column at phone width


class Filter(Strict):
    type: Literal["multi", "week", "date_range"] = Field(
        "multi", description="multi: pick any values of the column; week: pick one week_start; date_range: from/to dates, both inclusive."
    )
    column: Name = Field(description="The column filtered: text for multi (any type, compared as text); a date or timestamp for week and date_range.")
    name: Name | None = Field(None, description="Name in URLs and in SQL charts' :parameters (default: the column). A date_range NAME gives NAME_from and NAME_to.")
    label: str | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str | None) -> str | None:
        if value is not None and value.lower().startswith(RESERVED_PREFIX):
            raise ValueError(f"filter names starting with '{RESERVED_PREFIX}' are Headwater's own (row-level rules bind them)")
        return value

    @property
    def key(self) -> str:
        return self.name or self.column

    @property
    def parameters(self) -> list[str]:
        """The URL keys and SQL parameter names this filter provides."""
        return [f"{self.key}_from", f"{self.key}_to"] if self.type == "date_range" else [self.key]


class RowFilter(Strict):
    """A row-level rule: a member with ``attribute`` sees only rows whose ``column`` holds one of its values."""

    column: Name = Field(description="The column compared (as text) with the member's attribute, e.g. region.")
    attribute: Name = Field(description="The membership attribute holding the allowed values, e.g. region (set with --attr region=North).")


class Compare(Strict):
    label: str = Field(description="What the KPI is compared with, e.g. 'all weeks shown'.")
    where: Name | None = Field(None, description="A boolean column: compare with the rows where it is true (default: all rows the filters select).")


class Chart(Strict):
    title: str
    type: Literal["kpi", "line", "bar", "stacked_bar", "table", "pivot"]
    table: Name | None = Field(None, description="The published table the chart reads (default: the dashboard's table).")
    sql: str | None = Field(
        None,
        description="Instead of table and measures: one SELECT over published tables, with filters as :name parameters "
        "(a multi filter is a list or NULL: `where (:region is null or region in :region)`).",
    )
    x: Name | None = Field(None, description="Column on the x axis (line/bar charts).")
    series: Name | None = Field(None, description="Column whose values become separate lines or bars.")
    group_by: list[Name] = Field(default_factory=list, description="Table charts: columns to group by.")
    rows: list[Name] = Field(default_factory=list, description="Pivot charts: the columns whose values make the rows.")
    columns: Name | None = Field(None, description="Pivot charts: the column whose values become columns.")
    measures: dict[Name, str] = Field(default_factory=dict, description="Name -> aggregate SQL over the table's columns, e.g. sum(completed).")
    where: Name | None = Field(None, description="A boolean column of the table: the chart counts only rows where it is true (e.g. is_current_week).")
    compare: Compare | None = Field(None, description="KPI charts: a second number shown next to the first.")
    format: Literal["number", "percent"] = Field("number", description="KPI charts: how the number is shown.")
    order_by: list[str] = Field(default_factory=list, description="Column names, each optionally followed by ' desc'.")
    width: Literal["third", "half", "full"] | None = Field(
        None, description="Share of the page's width: third, half (default for charts) or full (default for tables and pivots). KPIs form the row of headline numbers at the top."
    )

    @field_validator("order_by")
    @classmethod
    def _order(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*( (asc|desc))?", item.strip(), re.IGNORECASE):
                raise ValueError(f"'{item}' is not 'column' or 'column desc'")
        return value

    @field_validator("measures")
    @classmethod
    def _measures(cls, value: dict[str, str]) -> dict[str, str]:
        for name, sql in value.items():
            check_expression(sql, f"measure '{name}'")
        return value

    @field_validator("sql")
    @classmethod
    def _sql(cls, value: str | None) -> str | None:
        if value is not None:
            sql_parameters(value)  # one SELECT that parses, with named parameters only
        return value

    @property
    def kind(self) -> ChartKind:
        """Its kind's rules, query shape and layout (config/charts.py)."""
        return CHART_KINDS[self.type]

    @model_validator(mode="after")
    def _consistent(self) -> Chart:
        kind = self.kind.label
        self.kind.check(self)
        if self.sql is not None:
            self._consistent_sql(kind)
        else:
            self._consistent_table(kind)
        return self

    def _consistent_sql(self, kind: str) -> None:
        misplaced = [name for name, value in (("table", self.table), ("measures", self.measures), ("where", self.where)) if value]
        if misplaced:
            raise ValueError(f"a chart with sql computes its own columns: remove {', '.join(misplaced)} (the SQL's columns are the chart's data)")
        if self.compare is not None and self.compare.where is not None:
            raise ValueError("compare.where needs a table: with sql, return the comparison as the query's second column")

    def _consistent_table(self, kind: str) -> None:
        if not self.measures:
            raise ValueError(f"a {kind} chart needs measures: (name: aggregate SQL), or sql: a query")
        if self.kind.one_measure and len(self.measures) != 1:
            raise ValueError(f"a {kind} chart shows one measure; it has {len(self.measures)}: {', '.join(self.measures)}")
        self.kind.check_table_order(self)

    @property
    def grid_width(self) -> int:
        """Columns of the page's 12-column grid the chart spans (KPIs have their own row)."""
        return WIDTHS[self.width or self.kind.default_width]


class Dashboard(Strict):
    title: str
    table: Name = Field(description="The published table the filters' options come from, and charts read unless they name another table or SQL.")
    description: str | None = None
    filters: list[Filter] = Field(default_factory=list)
    charts: list[Chart] = Field(min_length=1)
    row_filters: list[RowFilter] = Field(
        default_factory=list,
        description="Row-level rules, e.g. [{column: region, attribute: region}]. Enforced for every table with the column, wherever it is read "
        "(every dashboard, chart, download); a member with the attribute cannot read a table without the column. Members without the attribute see every row.",
    )

    @model_validator(mode="after")
    def _parameters(self) -> Dashboard:
        seen: dict[str, str] = {}
        for position, spec in enumerate(self.filters):
            for parameter in spec.parameters:
                if parameter in seen:
                    _invalid(
                        ("filters", position),
                        f"the name '{parameter}' is already used by filter '{seen[parameter]}': give one of them another name: (what URLs and SQL parameters call it)",
                    )
                seen[parameter] = spec.key
        for position, chart in enumerate(self.charts):
            for parameter in sql_parameters(chart.sql)[1] if chart.sql else ():
                if parameter not in seen:
                    hint = difflib.get_close_matches(parameter, list(seen), n=1)
                    offered = f"did you mean ':{hint[0]}'?" if hint else (f"the filters give {', '.join(':' + p for p in seen)}" if seen else "this dashboard has no filters")
                    _invalid(("charts", position, "sql"), f"the sql uses :{parameter}, which no filter gives — {offered}")
        return self


def _invalid(location: tuple[str | int, ...], message: str) -> NoReturn:
    """A validation error at ``location`` (so the error names that line of the file), from a check
    that needs the whole dashboard."""
    error = PydanticCustomError("dashboard", "{message}", {"message": message})
    raise ValidationError.from_exception_data("Dashboard", [InitErrorDetails(type=error, loc=location, input={})])


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def duckdb_sql(sql: str) -> str:
    """The author's SQL with each ``:name`` parameter written as DuckDB's ``$name``.

    Only text outside string literals ('...', E'...', $tag$...$tag$), quoted identifiers and comments
    (nested /* */ too) changes, so a ``:name`` inside a string stays text; ``::`` casts, ``:=``
    named arguments and slices after a word, number or bracket (``list[1:n]``) stay as they are. The
    values are never part of the SQL: they are bound by name."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        start = i
        if ch in "'\"" or (ch in "Ee" and sql[i + 1 : i + 2] == "'" and not _ident_before(sql, i)):
            escapes = ch in "Ee"
            quote = "'" if escapes else ch
            i += 2 if escapes else 1
            while i < n:
                if escapes and sql[i] == "\\":
                    i += 2
                elif sql[i] == quote:
                    i += 1
                    if sql[i : i + 1] != quote:  # a doubled quote is one quote inside
                        break
                    i += 1
                else:
                    i += 1
        elif sql.startswith("--", i):
            i = sql.find("\n", i)
            i = n if i < 0 else i
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ch == "$" and (tag := _DOLLAR_TAG.match(sql, i)) and not _ident_before(sql, i):
            close = sql.find(tag.group(0), tag.end())
            i = n if close < 0 else close + len(tag.group(0))
        elif ch == ":" and (word := _WORD.match(sql, i + 1)) and not (_ident_before(sql, i) or sql[i - 1 : i] in (":", ")", "]", "'", "\"")):
            out.append("$" + word.group(0))
            i = word.end()
            continue
        elif ch == ":" and sql[i + 1 : i + 2] in (":", "="):
            i += 2
        elif _WORD.match(sql, i):  # a whole word at once: E'...' needs to know a word ended before it
            i = _WORD.match(sql, i).end()  # type: ignore[union-attr]
        else:
            i += 1
        out.append(sql[start:i])
    return "".join(out)


def _ident_before(sql: str, i: int) -> bool:
    return i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")


def _statements(sql: str) -> list[Any]:
    return sql_parser().statements(sql)


def sql_parameters(sql: str) -> tuple[str, list[str]]:
    """Check that ``sql`` is one SELECT with named parameters only; returns the DuckDB form of it and
    the parameters' names, as DuckDB's own parser reads them."""
    text = duckdb_sql(sql)
    try:
        statements = _statements(text)
    except ParseError as exc:
        raise ValueError("sql does not parse: " + " ".join(str(exc).split())) from None
    if len(statements) != 1 or not is_select(statements[0]):
        raise ValueError("sql must be one SELECT statement (no ';', no PIVOT statement, nothing that writes)")
    names = sorted(statements[0].named_parameters)
    positional = [n for n in names if n.isdigit()]
    if positional:
        raise ValueError("sql must use named parameters (:region), not ? or $1: filter values are passed by name")
    return text, names


def check_expression(sql: str, what: str) -> None:
    """A measure is one SQL expression over the table's columns: it must parse as one, on its own."""
    if ";" in sql or not sql.strip():
        raise ValueError(f"{what} must be one SQL expression, got {sql!r}")
    try:
        statements = _statements(f"SELECT ({sql}) FROM hw_table")
    except ParseError as exc:
        raise ValueError(f"{what} does not parse: " + " ".join(str(exc).split())) from None
    if len(statements) != 1 or statements[0].named_parameters:
        raise ValueError(f"{what} must be one SQL expression without parameters, got {sql!r}")


# --- the project ---------------------------------------------------------------------------------


class Project(Strict):
    name: Name
    warehouse: WarehouseSettings = Field(default_factory=DuckDBWarehouse)
    system: SystemDatabase = Field(default_factory=SystemDatabase)
    dbt: DbtSettings = Field(default_factory=DbtSettings)
    sources: dict[Name, Source] = Field(default_factory=dict)
    pipelines: dict[Name, Pipeline] = Field(default_factory=dict)
    dashboards: dict[Name, Dashboard] = Field(default_factory=dict)
    alerts: list[AlertChannel] = Field(default_factory=list, description="Where failures and recoveries are announced.")
    web: Web = Field(default_factory=Web)

    @field_validator("warehouse", mode="before")
    @classmethod
    def _default_warehouse_type(cls, value: Any) -> Any:
        """``type:`` may be left out and means ``duckdb``, the embedded default."""
        if isinstance(value, dict) and "type" not in value:
            return {"type": "duckdb", **value}
        return value

    @model_validator(mode="after")
    def _references(self) -> Project:
        for name, pipeline in self.pipelines.items():
            for other in pipeline.after:
                if other not in self.pipelines or other == name:
                    raise ValueError(f"pipelines.{name}.after: '{other}' is not another pipeline of this project")
            for source in pipeline.sources or []:
                if source not in self.sources:
                    raise ValueError(f"pipelines.{name}.sources: '{source}' is not defined under sources:")
            for check in pipeline.checks:
                referenced = [check.source] if isinstance(check, FreshnessCheck) else [q.source for q in (check.left, check.right) if q.source]
                for source in referenced:
                    if source not in self.sources:
                        raise ValueError(f"pipelines.{name}.checks.{check.name}: source '{source}' is not defined under sources:")
        _no_cycles({name: p.after for name, p in self.pipelines.items()})
        return self


def _no_cycles(graph: dict[str, list[str]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            raise ValueError("pipelines depend on each other in a circle: " + " -> ".join([*path, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in graph.get(node, []):
            visit(dep, [*path, node])
        state[node] = 2

    for node in graph:
        visit(node, [])


@dataclass(frozen=True)
class BrokenDashboard:
    """A dashboard file that did not load (invalid YAML, an unknown key, a bad name): why, and what to do.
    A project loaded with ``dashboard_errors="keep"`` lists them instead of failing, so its
    pipelines run and `headwater check`, runs and the web app report the dashboard as broken."""

    file: Path
    what: str
    why: str | None = None
    fix: str | None = None


class LoadedProject(BaseModel):
    """A validated project and the folder it lives in."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: Path
    file: Path
    config: Project
    # Set when the project is an organisation's on an install with many: what its runs may reach
    # (config/confine.py). None: a one-project install, free as before.
    confinement: Confinement | None = None
    # The organisation the project belongs to, when known as it was loaded (an install's
    # organisation, or the one whose secrets the file read). None: the system database says,
    # by the project's folder (headwater.system.orgs.org_of).
    org: str | None = None
    # Dashboard files that did not load, by dashboard name (loaded with dashboard_errors="keep").
    broken_dashboards: dict[str, BrokenDashboard] = Field(default_factory=dict)

    def path(self, relative: str | Path) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p
