"""Plain-Python reference for the weekly flake-rate mart, to check the dbt models against.

It reads the demo's source SQLite database with nothing but ``SELECT * FROM <table>`` and does all
joining, time-zone conversion and counting in Python, so it shares no logic with the SQL models.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

FLAKES = ("No Show", "Cancelled")
STILL_SCHEDULED = ("Scheduled", "Confirmed")


def week_start(day: date) -> date:
    """The Saturday on or before `day` (weeks run Saturday..Friday)."""
    return day - timedelta(days=(day.weekday() - 5) % 7)


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def read_table(con: sqlite3.Connection, table: str, *columns: str) -> Iterator[tuple]:
    """Stream the named columns of every row of `table`."""
    cursor = con.execute(f"SELECT * FROM {table}")
    names = [d[0] for d in cursor.description]
    picks = [names.index(c) for c in columns]
    for row in cursor:
        yield tuple(row[i] for i in picks)


def event_keys(con: sqlite3.Connection, zone: ZoneInfo) -> dict[int, tuple[date, str, str]]:
    """event_id -> (week_start of the event's local date, region name, organizer name)."""
    regions = dict(read_table(con, "regions", "region_id", "name"))
    location_region = dict(read_table(con, "locations", "location_id", "region_id"))
    organizers = dict(read_table(con, "organizers", "organizer_id", "name"))
    keys = {}
    for event_id, location_id, organizer_id, starts_at in read_table(
            con, "events", "event_id", "location_id", "organizer_id", "starts_at"):
        local_day = parse_utc(starts_at).astimezone(zone).date()
        keys[event_id] = (week_start(local_day), regions[location_region[location_id]],
                          organizers[organizer_id])
    return keys


def latest_statuses(con: sqlite3.Connection) -> dict[int, str]:
    """signup_id -> status of the row with the greatest (created_at, signup_status_id)."""
    best: dict[int, tuple[datetime, int, str]] = {}
    for status_id, signup_id, status, created_at in read_table(
            con, "signup_statuses", "signup_status_id", "signup_id", "status", "created_at"):
        candidate = (parse_utc(created_at), status_id, status)
        current = best.get(signup_id)
        if current is None or candidate[:2] > current[:2]:
            best[signup_id] = candidate
    return {signup_id: entry[2] for signup_id, entry in best.items()}


def flake_rate_weekly(db_path: str | Path, *, timezone: str,
                      today: date) -> dict[tuple[date, str, str], dict]:
    """(week_start, region_name, organizer_name) -> the mart's measures for that week."""
    zone = ZoneInfo(timezone)
    con = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        keys = event_keys(con, zone)
        latest = latest_statuses(con)
        rows: dict[tuple[date, str, str], dict] = {}
        for signup_id, event_id in read_table(con, "signups", "signup_id", "event_id"):
            key = keys.get(event_id)
            if key is None:  # a sign-up for an unknown event has no region or week
                continue
            row = rows.setdefault(key, {"completed": 0, "no_show": 0, "cancelled": 0,
                                        "total_signups": 0, "scheduled": 0})
            status = latest.get(signup_id)
            row["total_signups"] += 1
            row["completed"] += status == "Completed"
            row["no_show"] += status == "No Show"
            row["cancelled"] += status == "Cancelled"
            row["scheduled"] += status in STILL_SCHEDULED
    finally:
        con.close()
    current_week = week_start(today)
    for (week, _, _), row in rows.items():
        row["total_flakes"] = row["no_show"] + row["cancelled"]
        total = row["total_signups"]
        row["flake_rate"] = row["total_flakes"] / total if total else None
        row["is_current_week"] = week == current_week
    return rows
