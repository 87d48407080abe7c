"""Descriptions shared by pages and commands: schedules in words, durations as written in
headwater.yml, times until a next run, and sources (their settings with secrets hidden, what they
sync, what a file source set aside)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

from headwater.config.cron import cron_weekdays
from headwater.config.model import Schedule
from headwater.orchestrate.scheduler import CrontabTrigger
from headwater.redact import REDACTED, is_secret_name, redact
from headwater.sync.engine import quarantine_table, raw_schema

# --- secrets ------------------------------------------------------------------------------------

# Pages show text through `redact` (headwater.redact): registered secrets, passwords in URLs
# (``postgresql://ana:***@db/prod``) and ``password=`` pairs become ***; a setting whose name says
# it is a secret is never shown, whatever its value looks like.


def redacted_settings(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A source's settings as (name, shown value) pairs, nested ones as dotted names, secrets hidden."""
    shown: list[tuple[str, str]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            shown.extend(redacted_settings(value, f"{name}."))
        elif value is None:
            continue
        elif is_secret_name(str(key)):
            shown.append((name, REDACTED))
        elif isinstance(value, (list, tuple)):
            shown.append((name, ", ".join(redact(str(v)) for v in value)))
        else:
            shown.append((name, redact(str(value))))
    return shown


# --- schedules in words -------------------------------------------------------------------------

_DAY_NAMES = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}
_WEEK = list(_DAY_NAMES)


def describe_cron(cron: str) -> str | None:
    """Common cron expressions in words ("every day at 07:00"); None for the rest (shown as cron)."""
    fields = cron.split()
    if len(fields) != 5:
        return None
    minute, hour, day, month, weekday = fields
    if month != "*":
        return None
    try:
        days = _days(weekday)
    except ValueError:
        return None
    if days is None or (day != "*" and weekday != "*"):
        return None
    when = _day_words(day, days)
    if when is None:
        return None
    if minute == "*" and hour == "*":
        return _join("every minute", when)
    if (step := re.fullmatch(r"\*/(\d+)", minute)) and hour == "*":
        return _join(f"every {int(step[1])} minutes", when)
    if not minute.isdigit():
        return None
    if hour == "*":
        return _join(f"every hour at :{int(minute):02d}", when)
    if step := re.fullmatch(r"\*/(\d+)", hour):
        return _join(f"every {int(step[1])} hours at :{int(minute):02d}", when)
    hours = hour.split(",")
    if not all(h.isdigit() for h in hours):
        return None
    times = [f"{int(h):02d}:{int(minute):02d}" for h in hours]
    at = times[0] if len(times) == 1 else ", ".join(times[:-1]) + " and " + times[-1]
    return f"{when} at {at}"


def _days(weekday: str) -> list[str] | None:
    if weekday == "*":
        return []
    names = cron_weekdays(weekday)  # cron's meaning (0 and 7 = Sunday), as mon,tue,...
    return [] if names == "*" else names.split(",")


def _day_words(day: str, days: list[str]) -> str | None:
    if day != "*":
        return f"on day {int(day)} of every month" if day.isdigit() else None
    if not days:
        return "every day"
    if days == ["mon", "tue", "wed", "thu", "fri"]:
        return "Monday to Friday"
    if days == ["sat", "sun"]:
        return "on Saturdays and Sundays"
    positions = [_WEEK.index(d) for d in days]
    if len(days) > 2 and positions == list(range(positions[0], positions[0] + len(days))):
        return f"{_DAY_NAMES[days[0]]} to {_DAY_NAMES[days[-1]]}"
    names = [_DAY_NAMES[d] + "s" for d in days]
    return "on " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1])


def _join(frequency: str, when: str) -> str:
    return frequency if when == "every day" else f"{frequency}, {when.removeprefix('on ')}"


def age_words(value: dt.timedelta) -> str:
    """A configured duration as written in headwater.yml: 36h, 2d, 30m, 90s."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def next_run(schedule: Schedule, now: dt.datetime) -> dt.datetime | None:
    """When the schedule fires next after ``now`` (aware UTC): what the scheduler would fire at."""
    at = CrontabTrigger.for_schedule(schedule).next_after(now)
    return at.astimezone(dt.UTC) if at else None


def local_time(moment: dt.datetime, zone: str) -> str:
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"


def until(moment: dt.datetime, now: dt.datetime) -> str:
    seconds = (moment - now).total_seconds()
    if seconds < 60:
        return "in less than a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"in {hours} h {minutes:02d} min" if minutes else f"in {hours} h"
    return f"in {round(seconds / 86400)} days"


# --- sources --------------------------------------------------------------------------------------

FILE_SOURCE_TYPES = ("csv", "excel", "google_sheets")


def is_file_source(spec: Any) -> bool:
    return spec.type in FILE_SOURCE_TYPES


def source_settings(spec: Any) -> list[tuple[str, str]]:
    """A source's settings as shown, secrets hidden; of a file source only those written (its rules)."""
    return redacted_settings(spec.model_dump(exclude={"type", "tables"}, exclude_defaults=is_file_source(spec)))


def tables_setting(spec: Any, name: str) -> str:
    """What a source syncs, in words: all tables, the tables listed, or its one table."""
    return "all tables" if spec.tables == "*" else ", ".join(spec.tables) or getattr(spec, "table", None) or name


def quarantined(tables: list[dict[str, Any]]) -> int | None:
    """Rows a sync set aside over its tables; None when no table says."""
    counts = [t["quarantined"] for t in tables if isinstance(t.get("quarantined"), int) and not isinstance(t.get("quarantined"), bool)]
    return sum(counts) if counts else None


def quarantine_report(tables: list[dict[str, Any]], source: str, max_identifier: int | None = None) -> list[dict[str, Any]]:
    """Per table of the last sync of a file source: rows set aside, by rule, and the most frequent
    offending values (the rows themselves stay in the warehouse, which the web app never opens).
    ``max_identifier``: the warehouse's (`Capabilities.max_identifier_length`), which names companions."""
    report = []
    for stats in tables:
        by_rule = stats.get("quarantine_by_rule") if isinstance(stats.get("quarantine_by_rule"), dict) else {}
        notes = [str(n) for n in stats.get("notes", []) if isinstance(n, str)]
        report.append({"table": stats["table"], "relation": f"{raw_schema(source)}.{quarantine_table(stats['table'], max_identifier)}", "quarantined": stats.get("quarantined"), "by_rule": by_rule, "notes": notes})
    return report
