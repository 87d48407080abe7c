from headwater.sync.context import SyncContext
from headwater.sync.engine import SYNCED_AT, Syncable, raw_schema, sync_source
from headwater.sync.stats import TableStats

__all__ = ["SYNCED_AT", "SyncContext", "Syncable", "TableStats", "raw_schema", "sync_source"]
