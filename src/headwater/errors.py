"""Errors a user can cause carry what happened, why, and what to do.

Front ends (CLI, web) funnel every `HeadwaterError` into one clean message and an exit code or
HTTP status; anything else is a bug and is shown as such.
"""

from __future__ import annotations

from enum import IntEnum

from headwater.redact import redact


class ExitCode(IntEnum):
    OK = 0
    RUN_FAILED = 1  # the pipeline ran and a step failed (sync, dbt model or test, publish)
    USER_ERROR = 2  # bad project file, bad arguments, missing project or table
    BUSY = 3  # another run holds the project's lock
    TRANSIENT = 75  # failed for a reason that may pass (connection reset, lock timeout): retry (EX_TEMPFAIL)
    INTERNAL = 70  # a bug in Headwater (EX_SOFTWARE)


class HeadwaterError(Exception):
    """An error the user can act on."""

    exit_code: ExitCode = ExitCode.USER_ERROR
    transient: bool = False  # a retry may succeed (used by the scheduler's retry policy)

    def __init__(self, what: str, *, why: str | None = None, fix: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.why = why
        self.fix = fix

    def render(self) -> str:
        lines = [self.what]
        if self.why:
            lines.append(f"Why: {self.why}")
        if self.fix:
            lines.append(f"Fix: {self.fix}")
        return redact("\n".join(lines))  # a driver's message may quote a connection string


class ConfigError(HeadwaterError):
    """The project file (or a file it points to) is invalid."""


class NotFound(HeadwaterError):
    """A project, table, run or dashboard that was asked for does not exist."""


class RunFailed(HeadwaterError):
    exit_code = ExitCode.RUN_FAILED


class TransientFailure(RunFailed):
    """A run failed for a reason that may pass by itself; the scheduler retries it with backoff."""

    exit_code = ExitCode.TRANSIENT
    transient = True


class DiskFull(RunFailed):
    """A disk Headwater writes to (warehouse, system database, snapshots) has no space left."""


class ProjectBusy(HeadwaterError):
    exit_code = ExitCode.BUSY
    transient = True
