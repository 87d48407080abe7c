"""Building blocks shared by the project file's models (kept apart so source models can live in their own modules)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, Field(pattern=IDENT, max_length=63)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- durations ----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


MAX_DURATION = dt.timedelta(days=3650)  # longer is a typo, and past it dates overflow (a timeout of 1e20 days)


def parse_duration(value: str | float) -> dt.timedelta:
    """'90s', '30m', '26h', '2d' or a number of seconds, from 0 to ten years; ValueError otherwise."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a duration: write e.g. 90s, 30m, 26h or 2d")
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    else:
        seconds = float(value)
    if not 0 <= seconds <= MAX_DURATION.total_seconds():  # also NaN
        raise ValueError(f"'{value}' is not a duration from 0 to {MAX_DURATION.days}d (ten years)")
    return dt.timedelta(seconds=seconds)


def _parse_duration(value: object) -> object:
    """`Duration`'s validator: a text or a number (not a bool) by `parse_duration`; anything else is
    left to pydantic's own timedelta check."""
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return parse_duration(value)
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(_parse_duration)]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' is not an IANA time zone (e.g. UTC, America/New_York, Asia/Kolkata)") from None
    return value


TimeZone = Annotated[str, AfterValidator(_zone)]
