"""The project file, ``headwater.yml``, as typed models.

Every model forbids unknown keys, so a typo is an error with a did-you-mean rather than a setting
that silently does nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


# --- dbt, pipelines ------------------------------------------------------------------------------


class DbtSettings(Strict):
    project_dir: str = Field(".", description="Folder holding dbt_project.yml, relative to the project.")
    threads: int = Field(2, ge=1)
    vars: dict[str, str | int | float | bool | None] = Field(default_factory=dict, description="Passed to dbt as --vars.")


class Pipeline(Strict):
    sources: list[Name] | None = Field(None, description="Sources to sync first (default: all).")
    select: str | None = Field(None, description="dbt selection to build (default: the whole project).")
    publish: list[str] = Field(["marts"], description="What readers may see: model folders under models/ or model names.")


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


class LoadedProject(BaseModel):
    """A validated project and the folder it lives in."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: Path
    file: Path
    config: Project

    def path(self, relative: str | Path) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p
