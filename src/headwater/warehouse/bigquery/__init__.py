"""The BigQuery warehouse: raw, dbt's models and the published versions in BigQuery datasets; DuckDB
keeps the sync's local mirror of raw and the dashboards' copy (warehouse.py, ship.py)."""

from __future__ import annotations

from headwater.warehouse.bigquery.warehouse import Warehouse

__all__ = ["Warehouse"]
