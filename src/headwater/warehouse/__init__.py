from headwater.warehouse.duckdb import Warehouse, connect, extension_directory, lock_down, require_extension

__all__ = ["Warehouse", "connect", "extension_directory", "lock_down", "require_extension"]
