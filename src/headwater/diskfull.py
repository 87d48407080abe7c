"""Recognise a full disk in whatever raised it, and say where and how much room is left.

DuckDB, SQLite, dbt and the OS each word it differently ("No space left on device", "database or
disk is full") and often bury it under a second error raised while handling the first, so the whole
chain of causes is searched. A full disk is the machine's problem, not the model's or Headwater's:
the user needs one message naming the folder and its free space, not a traceback per log line.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from headwater.errors import DiskFull

_SQLITE_FULL = "database or disk is full"
_WORDS = ("no space left on device", _SQLITE_FULL)
_QUOTED_PATH = re.compile(r"""["'](/[^"']+)["']""")


def disk_full(exc: BaseException, where: Path, database: str | None = None) -> DiskFull | None:
    """A `DiskFull` if ``exc`` (or anything in its chain of causes) says the disk is full, else None.
    ``where``: the file or folder to name when the error does not say which one it could not write;
    ``database``: the SQLite system database's file, named when SQLite is the one that says so. A
    `DiskFull` already said (by the code that knew what the full disk stopped) is returned as it is."""
    for cause in _chain(exc):
        if isinstance(cause, DiskFull):
            return cause
        path = _full_path(cause)
        if path is not None:
            if not path and database and _SQLITE_FULL in str(cause).lower():
                path = database
            return describe(Path(path) if path else where, cause)
    return None


def describe(path: Path, cause: BaseException) -> DiskFull:
    folder = _existing(path)
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    first = next((line for line in lines if any(words in line.lower() for words in _WORDS)), lines[0])
    return DiskFull(
        f"No space left on device at {folder}, {_megabytes(free_mb(folder))} MB free",
        why=f"{type(cause).__name__}: {first}",
        fix="Free space on that disk (or move the folder to a larger one), then run again; published data was left as it was.",
    )


def free_mb(path: Path) -> float:
    stats = os.statvfs(_existing(path))
    return stats.f_bavail * stats.f_frsize / 1e6


def _megabytes(mb: float) -> str:
    return f"{mb:.1f}" if mb < 10 else f"{mb:,.0f}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]  # orig: SQLAlchemy's driver error
    return seen


def _full_path(exc: BaseException) -> str | None:
    """The path the error could not write ("" when it says the disk is full without naming one);
    None when it is not about a full disk."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return str(exc.filename or "")
    text = " ".join(str(part) for part in (exc, getattr(exc, "why", None) or "")).lower()
    if not any(words in text for words in _WORDS):
        return None
    quoted = _QUOTED_PATH.search(str(exc)) or _QUOTED_PATH.search(str(getattr(exc, "why", None) or ""))
    return quoted.group(1) if quoted else ""


def _existing(path: Path) -> Path:
    """The nearest folder that exists: a file that could not be written may not exist at all."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
