from headwater.warehouse.base import Capabilities, WarehouseEngine
from headwater.warehouse.duckdb import Warehouse, connect, extension_directory, lock_down, require_extension
from headwater.warehouse.registry import ENGINES, capabilities, dbt_adapter, open_warehouse

__all__ = ["ENGINES", "Capabilities", "Warehouse", "WarehouseEngine", "capabilities", "connect", "dbt_adapter", "extension_directory", "lock_down", "open_warehouse", "require_extension"]
