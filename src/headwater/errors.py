"""Errors a user can cause carry what happened, why, and what to do.

Front ends (CLI, web) funnel every `HeadwaterError` into one clean message and an exit code or
HTTP status; anything else is a bug and is shown as such.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from headwater.redact import redact


class ExitCode(IntEnum):
    OK = 0
    RUN_FAILED = 1  # the pipeline ran and a step failed (sync, dbt model or test, publish)
    USER_ERROR = 2  # bad project file, bad arguments, missing project or table
    BUSY = 3  # another run holds the project's lock
    TRANSIENT = 75  # failed for a reason that may pass (connection reset, lock timeout): retry (EX_TEMPFAIL)
    INTERNAL = 70  # a bug in Headwater (EX_SOFTWARE)
    PIPE_CLOSED = 141  # the reader of standard output left (`| head`): 128 + SIGPIPE, as a shell reports a filter it stopped


class HeadwaterError(Exception):
    """An error the user can act on."""

    exit_code: ExitCode = ExitCode.USER_ERROR
    transient: bool = False  # a retry may succeed (used by the scheduler's retry policy)
    # A sync's error: what every table of the source did, the failed ones included (TableStats), so
    # the run records and prints the tables that synced next to the ones that failed.
    table_stats: list[Any] | None = None
    # Set by `headwater sync`'s run: (run id, {source: [TableStats]}) of every source synced so far.
    sync_report: tuple[int, dict[str, list[Any]]] | None = None
    # A publish that committed in the warehouse, then failed (the dashboards' copy could not switch):
    # the rows of each table readers of the warehouse now see. The run records them as published.
    published: dict[str, int] | None = None

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


# What resolvers and drivers say when a host name does not exist (glibc, musl, macOS; libpq and
# MySQL quote them). Retrying cannot help: the name is wrong, or this machine's DNS does not know it.
# A resolver that did not answer ("Temporary failure in name resolution", EAI_AGAIN: MySQL's -3) may.
_NO_SUCH_HOST = ("name or service not known", "name does not resolve", "nodename nor servname", "no address associated with hostname", "unknown mysql server host")
_RESOLVER_DOWN = ("temporary failure", "try again", "(-3)")


def unresolved_host(message: str) -> bool:
    """Whether a connection failed because its host name does not resolve (a configuration error)."""
    low = message.lower()
    return any(w in low for w in _NO_SUCH_HOST) and not any(w in low for w in _RESOLVER_DOWN)


def host_not_found(what: str, host: str, setting: str, why: str) -> ConfigError:
    """The error for a host name that does not resolve: not retried, exit 2."""
    return ConfigError(
        f"{what}: the host name '{host}' does not resolve",
        why=why,
        fix=f"Check the host name in {setting} (a typo, or a name only another network knows); retrying will not help.",
    )


class DiskFull(RunFailed):
    """A disk Headwater writes to (warehouse, system database, snapshots) has no space left."""


class ProjectBusy(HeadwaterError):
    exit_code = ExitCode.BUSY
    transient = True


def first_line(text: str, limit: int = 500) -> str:
    """The first non-blank line of a database's (multi-line) error text, stripped and cut at
    ``limit`` characters: what a one-line message shows of it."""
    return next((line.strip() for line in text.splitlines() if line.strip()), text)[:limit]
