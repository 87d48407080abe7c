"""What one sync did to one table: kept with the run, printed by `headwater sync`, shown on the sources page."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TableStats:
    table: str
    rows: int  # rows in the raw table after the sync
    seconds: float
    mode: str = "full"  # full | incremental | append | skipped (nothing changed)
    rows_read: int = 0  # rows read from the source
    upserted: int = 0  # rows inserted or replaced in raw
    deleted: int = 0  # rows removed (or tombstoned) because they are gone from the source
    quarantined: int = 0  # rows set aside by cleaning rules (files, spreadsheets)
    quarantine_by_rule: dict[str, int] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)  # e.g. "added column phone VARCHAR"
    notes: list[str] = field(default_factory=list)  # anything the user should read
    warnings: list[str] = field(default_factory=list)  # what may be wrong in what loaded (logged as warnings, once)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
