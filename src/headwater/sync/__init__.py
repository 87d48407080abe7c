from headwater.sync.engine import SYNCED_AT, TableStats, raw_schema, sync_source

__all__ = ["SYNCED_AT", "TableStats", "raw_schema", "sync_source"]
