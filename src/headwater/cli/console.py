"""The command line's two consoles: `out` (standard output: results, tables, JSON) and `err`
(standard error: progress, warnings, errors), shared by every command."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from rich.console import Console

from headwater.errors import ExitCode


class _Console(Console):
    def on_broken_pipe(self) -> NoReturn:
        """Standard output's reader left (`headwater runs | head -1`): stop like a Unix filter stopped
        by its reader — quietly, exit 141 (128 + SIGPIPE) — rather than Rich's exit 1, our code for a
        failed run. Standard output is pointed at /dev/null so that the final flush stays quiet."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(int(ExitCode.PIPE_CLOSED))


out = _Console()
err = _Console(stderr=True, soft_wrap=True)  # never break a FILE:LINE across lines
