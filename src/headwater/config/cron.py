"""Cron expressions with cron's meaning, for APScheduler.

APScheduler's ``from_crontab`` numbers weekdays from Monday = 0 and requires day-of-month AND
day-of-week to match; cron numbers from Sunday = 0 (7 too) and fires when EITHER matches. The
project file means cron, so every expression goes through `crontab_parts` first — both when the
project file is validated and when the scheduler builds its triggers.
"""

from __future__ import annotations

_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's numbering: 0 (and 7) = Sunday


def _weekday(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    if token[:3] in _WEEKDAYS and len(token) == 3:
        return _WEEKDAYS.index(token)
    raise ValueError(f"'{token}' is not a day of the week (0-7 or sun-sat)")


def cron_weekdays(field: str) -> str:
    """A cron day-of-week field (0 or 7 = Sunday) as the day names APScheduler reads unambiguously."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        step = int(step_text) if slash else 1
        if slash and (not step_text.isdigit() or step < 1):
            raise ValueError(f"'{part}': the step after '/' must be a positive number")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            low, high = base.split("-", 1)
            first, last = _weekday(low), _weekday(high)
            if first > last:
                raise ValueError(f"'{base}': a range of days must go from the earlier to the later (0 = Sunday)")
        else:
            first = _weekday(base)
            last = 6 if slash else first
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    # APScheduler's names, Monday first, in one comma list: "mon,tue,wed,thu,fri"
    return ",".join(_WEEKDAYS[d] for d in sorted(days, key=lambda d: (d + 6) % 7))


def crontab_parts(cron: str) -> list[str]:
    """The cron expression as one or two crontab expressions with APScheduler's meaning."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"'{cron}' is not a five-field cron expression (minute hour day-of-month month day-of-week)")
    minute, hour, day, month, weekday = fields
    weekdays = cron_weekdays(weekday)
    if not day.startswith("*") and not weekday.startswith("*"):
        # cron: either the day of the month or the day of the week matches
        return [f"{minute} {hour} {day} {month} *", f"{minute} {hour} * {month} {weekdays}"]
    return [f"{minute} {hour} {day} {month} {weekdays}"]


def validate(cron: str) -> None:
    """Raise ValueError unless ``cron`` is a five-field cron expression APScheduler can run."""
    from apscheduler.triggers.cron import CronTrigger

    for part in crontab_parts(cron):
        CronTrigger.from_crontab(part)
