"""What the sync engine needs from a kind of source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import duckdb


@dataclass(frozen=True)
class SourceTable:
    name: str
    relation: str  # a relation the build connection can SELECT from once the source is attached


class Source(Protocol):
    name: str

    def attach(self, con: duckdb.DuckDBPyConnection) -> list[SourceTable]:
        """Make the source readable from ``con`` and list the tables to sync."""
        ...

    def detach(self, con: duckdb.DuckDBPyConnection) -> None: ...
