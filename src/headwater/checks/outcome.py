"""What one check found, in the shape the system database stores (`headwater.system.CheckResult`)."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

SAMPLE_ROWS = 20  # at most this many rows of offending data per check


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    kind: str  # "dbt_test" | "reconcile" | "freshness"
    status: str  # "pass" | "fail" | "warn" (failed, severity warn) | "error" (the check itself could not run)
    severity: str  # "error" blocks publishing | "warn"
    observed: str | None = None
    expected: str | None = None
    message: str | None = None  # for failures and errors: what happened, in a sentence a person can act on
    sample: dict[str, Any] | None = None  # {"columns": [...], "rows": [[...], ...]}, JSON-safe, <= SAMPLE_ROWS rows

    @property
    def blocks_publish(self) -> bool:
        return self.status in ("fail", "error") and self.severity == "error"

    def as_record(self) -> dict[str, str | None]:
        """Keyword arguments for `headwater.system.CheckResult` (the sample JSON-encoded)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "severity": self.severity,
            "observed": self.observed,
            "expected": self.expected,
            "message": self.message,
            "sample": None if self.sample is None else json.dumps(self.sample, ensure_ascii=False),
        }


def failed_status(severity: str) -> str:
    """A check that ran and failed: "fail", or "warn" when its severity is warn."""
    return "warn" if severity == "warn" else "fail"


def make_sample(columns: list[str], rows: list[Any]) -> dict[str, Any]:
    return {"columns": [str(c) for c in columns], "rows": [[json_safe(v) for v in row] for row in rows[:SAMPLE_ROWS]]}


def json_safe(value: Any) -> Any:
    """A value `json.dumps` accepts and a person can read: dates as ISO strings, exact decimals as
    numbers when a float holds them exactly (else as strings), NaN/infinity as strings."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    return str(value)
