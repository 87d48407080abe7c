"""The process one run attempt lives in:
``python -m headwater.orchestrate.child ROOT PIPELINE TRIGGER ATTEMPT WAIT_SECONDS [--show-log]``,
or the same forked from the supervisor's warm server (`forked`).

Its exit code is the run's: 0 success, 1 failed, 2 user error, 3 busy, 75 transient failure.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from rich.console import Console

from headwater.errors import ExitCode, HeadwaterError


def main(argv: list[str]) -> int:
    root, pipeline, trigger, attempt, wait = Path(argv[0]), argv[1], argv[2], int(argv[3]), float(argv[4])
    show = "--show-log" in argv
    console = Console(stderr=True, soft_wrap=True, highlight=False)

    def listener(level: str, message: str) -> None:
        style = {"error": "red", "warn": "yellow"}.get(level, "dim")
        console.print(f"[{style}]{level:>5}[/] {message}")

    from headwater.config import load_project
    from headwater.orchestrate.run import run_pipeline
    from headwater.redact import install_logging

    install_logging()
    if show:  # the listener prints every line of the run: Python's logging printing its warnings again would say each twice
        quiet = logging.getLogger("headwater.run")
        quiet.addHandler(logging.NullHandler())  # else logging's last resort prints them anyway
        quiet.propagate = False

    try:
        run_pipeline(load_project(root), pipeline, trigger=trigger, attempt=attempt, listener=listener if show else None, wait_for_lock=wait)
    except HeadwaterError as exc:
        if not show:  # the run's log already holds it; print it for whoever reads this process's stderr
            console.print(exc.render())
        return int(exc.exit_code)
    return int(ExitCode.OK)


def forked(argv: list[str], stderr: str | None) -> None:
    """An attempt forked from the warm server (`supervise.start_warm_attempts`): made into what
    `python -m headwater.orchestrate.child` would be — its own session, stdout discarded, stderr to
    the supervisor's file (``None``: left to the terminal) — then the same `main`."""
    os.setsid()
    targets = [(os.devnull, os.O_RDWR, (0, 1))]
    if stderr is not None:
        targets.append((stderr, os.O_WRONLY | os.O_APPEND, (2,)))
    for path, flags, fds in targets:
        opened = os.open(path, flags)
        for fd in fds:
            os.dup2(opened, fd)
        os.close(opened)
    try:
        code = main(argv)
    finally:
        logging.shutdown()  # a forked child leaves by os._exit: no atexit, so flush what logging holds
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
