"""The command line's two consoles: `out` (standard output: results, tables, JSON) and `err`
(standard error: progress, warnings, errors), shared by every command.

On a terminal they are as wide as the terminal. Into a pipe or a file they are as wide as what they
print (Rich's default would be 80 columns: tables cut to `writt…`, sentences broken mid-line), unless
COLUMNS says otherwise."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from headwater.errors import ExitCode

UNBOUNDED = 100_000  # "as wide as the line": a width no table or sentence reaches


class _Console(Console):
    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size; not a terminal and no COLUMNS (or width) given: unbounded width."""
        found = super().size
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(UNBOUNDED, found.height)
        return found

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    def on_broken_pipe(self) -> NoReturn:
        """Standard output's reader left (`headwater runs | head -1`): stop like a Unix filter stopped
        by its reader — quietly, exit 141 (128 + SIGPIPE) — rather than Rich's exit 1, our code for a
        failed run. Standard output is pointed at /dev/null so that the final flush stays quiet."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(int(ExitCode.PIPE_CLOSED))


out = _Console()
err = _Console(stderr=True, soft_wrap=True)  # never break a FILE:LINE across lines


class _Printed(logging.Handler):
    """Python logging's warnings and errors, each printed once, as the command prints its own."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            label = "[bold red]Error:[/]" if record.levelno >= logging.ERROR else "[yellow]Warning:[/]"
            err.print(f"{label} {escape(record.getMessage())}", highlight=False)
        except Exception:  # noqa: BLE001 - logging's own contract: a handler never raises
            self.handleError(record)


def install_logging() -> None:
    """Print Python logging's warnings and errors once, in the CLI's own format.

    Before, three printers competed: Python's last-resort handler (the bare message), the root
    handler `logging.basicConfig()` leaves when a library calls it at import (dbt's tracking
    library does: `ERROR:headwater.run:...`), and the CLI's own `Error:`. A handler on the root
    makes any later `basicConfig()` a no-op. A run's own lines (logger `headwater.run`) reach the
    screen through the run's listener and the run's error through the CLI's funnel: that logger
    prints nothing here. Idempotent."""
    from headwater.orchestrate.child import drop_basic_config

    root = logging.getLogger()
    drop_basic_config(root)
    if not root.handlers:  # a program that configured logging itself (a test's worker) keeps its own
        root.addHandler(_Printed(logging.WARNING))
    run_log = logging.getLogger("headwater.run")
    run_log.propagate = False
    if not run_log.handlers:
        run_log.addHandler(logging.NullHandler())
