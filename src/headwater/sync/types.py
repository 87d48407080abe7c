"""Which DuckDB column type can hold which: how schema drift is judged.

A raw column keeps its type while the source's new type fits in it (the source narrowed, e.g.
BIGINT → INTEGER); it is widened when the new type holds every old value (INTEGER → BIGINT,
DECIMAL(10,2) → DECIMAL(12,2), anything but a list → VARCHAR); any other change is incompatible and
stops the sync of that table with an error, keeping its rows.
"""

from __future__ import annotations

import re

_INTS = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"]
_INT_DIGITS = {"TINYINT": 3, "SMALLINT": 5, "INTEGER": 10, "BIGINT": 19, "HUGEINT": 39}
_UINTS = {"UTINYINT": "SMALLINT", "USMALLINT": "INTEGER", "UINTEGER": "BIGINT", "UBIGINT": "HUGEINT"}
_FLOATS = ["FLOAT", "DOUBLE"]
_TEXT = {"VARCHAR", "JSON"}
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
_ALIASES = {
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "INT8": "BIGINT",
    "INT2": "SMALLINT",
    "REAL": "FLOAT",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
    "TIME WITH TIME ZONE": "TIMETZ",
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
    "BOOL": "BOOLEAN",
}


def normalise(duck_type: str) -> str:
    t = duck_type.strip().upper()
    if t.endswith("[]"):
        return normalise(t[:-2]) + "[]"
    return _ALIASES.get(t, t)


def holds(outer: str, inner: str) -> bool:
    """Can a column of type ``outer`` hold every value of type ``inner`` without loss?"""
    outer, inner = normalise(outer), normalise(inner)
    if outer == inner or (outer in _TEXT and not inner.endswith("[]")):
        return True  # a list is not text: DuckDB's cast writes [1, 2] where the source reads {1,2}
    if outer.endswith("[]") or inner.endswith("[]"):
        return outer.endswith("[]") and inner.endswith("[]") and holds(outer[:-2], inner[:-2])
    inner = _UINTS.get(inner, inner)
    if outer in _INTS and inner in _INTS:
        return _INTS.index(outer) >= _INTS.index(inner)
    if outer in _FLOATS and inner in _FLOATS:
        return _FLOATS.index(outer) >= _FLOATS.index(inner)
    if outer == "DOUBLE" and inner in ("TINYINT", "SMALLINT", "INTEGER"):
        return True
    if outer == "FLOAT" and inner in ("TINYINT", "SMALLINT"):
        return True
    outer_dec, inner_dec = _DECIMAL.match(outer), _DECIMAL.match(inner)
    if outer_dec:
        p, s = int(outer_dec.group(1)), int(outer_dec.group(2))
        if inner_dec:
            ip, is_ = int(inner_dec.group(1)), int(inner_dec.group(2))
            return s >= is_ and p - s >= ip - is_
        if inner in _INT_DIGITS:
            return p - s >= _INT_DIGITS[inner]
    return outer in ("TIMESTAMP", "TIMESTAMP_NS") and inner == "DATE"


def reconcile(raw_type: str, source_type: str) -> str | None:
    """The type raw should have now: ``raw_type`` (keep), ``source_type`` (widen), or None (incompatible)."""
    if holds(raw_type, source_type):
        return raw_type
    if holds(source_type, raw_type):
        return source_type
    return None
