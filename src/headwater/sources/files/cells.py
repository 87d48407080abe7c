"""Spreadsheet cell values as the text the cleaning rules read.

Readers hand cells over as text so that one set of rules (and one quarantine) serves CSV, Excel and
Google Sheets alike. Numbers keep every digit a spreadsheet stored (2025550143, not 2.03E+09, and
12 rather than 12.0); text keeps its leading zeros; dates are ISO.
"""

from __future__ import annotations

import datetime as dt


def cell_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)
