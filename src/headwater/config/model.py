"""The project file, ``headwater.yml``, as typed models.

Every model forbids unknown keys, so a typo is an error with a did-you-mean rather than a setting
that silently does nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from headwater.config.cron import validate as validate_cron

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, Field(pattern=IDENT, max_length=63)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- warehouse and system database -------------------------------------------------------------


class DuckDBWarehouse(Strict):
    type: Literal["duckdb"] = "duckdb"
    path: str = Field(".headwater/warehouse", description="Folder holding the build database and published snapshots.")
    threads: int | None = Field(None, ge=1, description="DuckDB worker threads (default: all cores).")
    memory_limit: str | None = Field(None, description="DuckDB memory limit, e.g. '4GB'.")
    keep_snapshots: int = Field(3, ge=1, description="Published snapshots kept on disk (the current one included).")


Warehouse = DuckDBWarehouse


class SystemDatabase(Strict):
    url: str = Field("sqlite:///.headwater/system.db", description="SQLAlchemy URL; relative SQLite paths are relative to the project.")


# --- sources -----------------------------------------------------------------------------------


class SQLiteSource(Strict):
    type: Literal["sqlite"]
    path: str = Field(description="Path to the SQLite file, relative to the project folder.")
    tables: Literal["*"] | list[Name] = Field("*", description="'*' for every table, or a list of table names.")


Source = Annotated[SQLiteSource, Field(discriminator="type")]


# --- durations ----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*$", re.I)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _parse_duration(value: object) -> object:
    """'90s', '30m', '26h', '2d' or a number of seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a duration: write e.g. 90s, 30m, 26h or 2d")
        return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(_parse_duration)]


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
    threads: int = Field(2, ge=1)
    vars: dict[str, str | int | float | bool | None] = Field(default_factory=dict, description="Passed to dbt as --vars.")


class Schedule(Strict):
    cron: str = Field(description="Five-field cron expression, e.g. '0 7 * * *' for 07:00 every day; day of week 0 or 7 = Sunday.")
    timezone: str = Field("UTC", description="IANA time zone the cron expression is read in, e.g. Asia/Kolkata.")
    catch_up: bool = Field(True, description="After downtime, run once for the missed times (never once per missed time).")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not an IANA time zone (e.g. UTC, America/New_York, Asia/Kolkata)") from None
        return value

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


class Filter(Strict):
    column: Name
    label: str | None = None


class Chart(Strict):
    title: str
    type: Literal["line", "bar", "stacked_bar", "table"]
    x: Name | None = Field(None, description="Column on the x axis (line/bar charts).")
    series: Name | None = Field(None, description="Column whose values become separate lines or bars.")
    group_by: list[Name] = Field(default_factory=list, description="Table charts: columns to group by.")
    measures: dict[Name, str] = Field(description="Name -> aggregate SQL over the table's columns, e.g. sum(completed).")
    order_by: list[str] = Field(default_factory=list, description="Column names, each optionally followed by ' desc'.")

    @field_validator("order_by")
    @classmethod
    def _order(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*( (asc|desc))?", item.strip(), re.I):
                raise ValueError(f"'{item}' is not 'column' or 'column desc'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Chart:
        if self.type != "table" and self.x is None:
            raise ValueError(f"a {self.type} chart needs x: the column on its x axis")
        if self.type == "table" and (self.x or self.series):
            raise ValueError("a table chart takes group_by, not x or series")
        known = {c for c in (self.x, self.series) if c} | set(self.group_by) | set(self.measures)
        for item in self.order_by:
            column = item.split()[0]
            if column not in known:
                raise ValueError(f"order_by '{column}' is not one of the chart's columns ({', '.join(sorted(known))})")
        return self


class Dashboard(Strict):
    title: str
    table: Name = Field(description="A published table.")
    description: str | None = None
    filters: list[Filter] = Field(default_factory=list)
    charts: list[Chart] = Field(min_length=1)


# --- the project ---------------------------------------------------------------------------------


class Project(Strict):
    name: Name
    warehouse: Warehouse = Field(default_factory=DuckDBWarehouse)
    system: SystemDatabase = Field(default_factory=SystemDatabase)
    dbt: DbtSettings = Field(default_factory=DbtSettings)
    sources: dict[Name, Source] = Field(default_factory=dict)
    pipelines: dict[Name, Pipeline] = Field(default_factory=dict)
    dashboards: dict[Name, Dashboard] = Field(default_factory=dict)
    alerts: list[AlertChannel] = Field(default_factory=list, description="Where failures and recoveries are announced.")
    web: Web = Field(default_factory=Web)

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


class LoadedProject(BaseModel):
    """A validated project and the folder it lives in."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: Path
    file: Path
    config: Project

    def path(self, relative: str | Path) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p
