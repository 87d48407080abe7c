"""The warehouse engines by ``warehouse.type``: the one place that maps a project's settings to an engine.

Adding an engine: its folder beside ``duckdb/`` implementing `base.WarehouseEngine`, its settings
class in config/model.py's `WarehouseSettings`, and a line in `ENGINES` (tests/test_warehouse_registry.py
checks the two agree)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from headwater.config.confine import Confinement
from headwater.errors import ConfigError
from headwater.warehouse.base import Capabilities, WarehouseEngine
from headwater.warehouse.bigquery import Warehouse as BigQuery
from headwater.warehouse.duckdb import Warehouse as DuckDB
from headwater.warehouse.postgres import Warehouse as Postgres

# type -> the engine's class, built as Engine(project root, its settings, confinement)
ENGINES: dict[str, type[WarehouseEngine]] = {
    "duckdb": DuckDB,
    "postgres": Postgres,
    "bigquery": BigQuery,
}


def engine_class(kind: str) -> type[WarehouseEngine]:
    try:
        return ENGINES[kind]
    except KeyError:
        raise ConfigError(
            f"No warehouse engine for warehouse.type '{kind}'",
            why=f"this Headwater knows {', '.join(sorted(ENGINES))}",
            fix="Set warehouse.type in headwater.yml to one of those, or upgrade Headwater.",
        ) from None


def capabilities(kind: str) -> Capabilities:
    """What the engine of ``warehouse.type`` can do."""
    return engine_class(kind).capabilities


def dbt_adapter(kind: str) -> str:
    """The dbt adapter package the engine of ``warehouse.type`` builds with (``dbt.adapters.<name>``)."""
    return engine_class(kind).dbt_adapter


def open_warehouse(root: Path, settings: Any, confinement: Confinement | None = None) -> WarehouseEngine:
    """The warehouse of a project: ``settings`` is its ``warehouse:`` (a member of `WarehouseSettings`)."""
    engine: Any = engine_class(settings.type)
    return engine(root, settings, confinement)  # type: ignore[no-any-return]
