"""Where alerts write what they did: the run's log (a `Log` callable, like RunRecorder.log), and
Python logging when that fails."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger("headwater.alerts")

Log = Callable[[str, str], None]  # (level, message), like RunRecorder.log


def default_log(level: str, message: str) -> None:
    logger.log(logging.getLevelNamesMapping().get(level.upper(), logging.INFO), "%s", message)


def safe_log(log: Log, level: str, message: str) -> None:
    try:
        log(level, message)
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk under the system database: say it here instead
        logger.log(logging.WARNING if level == "info" else logging.ERROR, "%s (not written to the run's log: %s)", message, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
