"""Cleaning rules for files and spreadsheets, compiled to DuckDB SQL, and the quarantine of rows that
break them (see docs/files.md)."""

from headwater.clean.load import (
    Fixups,
    Rejected,
    Staged,
    Target,
    load_table,
)
from headwater.sync.engine import QUARANTINE_SUFFIX

__all__ = ["QUARANTINE_SUFFIX", "Fixups", "Rejected", "Staged", "Target", "load_table"]
