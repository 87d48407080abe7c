"""The DuckDB warehouse (``warehouse: {type: duckdb}``, the default): one build file, snapshots, a pointer.

    warehouse.py   the file layout, connections (offline extensions), the writer lock, load raw,
                   snapshots and the CURRENT pointer: `Warehouse`, the `base.WarehouseEngine`
    dbt.py         the dbt-duckdb profile and what each dbt command needs around it
    lockdown.py    dbt-duckdb held to an organisation's folder (a dbt-duckdb plugin)
"""

from headwater.warehouse.duckdb.warehouse import Warehouse, connect, extension_directory, lock_down, require_extension

__all__ = ["Warehouse", "connect", "extension_directory", "lock_down", "require_extension"]
