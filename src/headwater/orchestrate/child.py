"""The process one run attempt lives in:
``python -m headwater.orchestrate.child ROOT PIPELINE TRIGGER ATTEMPT WAIT_SECONDS [--show-log] [--install DIR] [--supervisor PID] [--select SELECTION] [--full-refresh]``,
or the same forked from the supervisor's warm server (`forked`).

Its exit code is the run's: 0 success, 1 failed, 2 user error, 3 busy, 75 transient failure.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from headwater.errors import ExitCode, HeadwaterError


def main(argv: list[str]) -> int:
    root, pipeline, trigger, attempt, wait = Path(argv[0]), argv[1], argv[2], int(argv[3]), float(argv[4])
    flags = argv[5:]  # after the positional ones: a flag's value (a selection) is never read as a flag
    select = flags[flags.index("--select") + 1] if "--select" in flags else None
    flags = [f for i, f in enumerate(flags) if not (i > 0 and flags[i - 1] == "--select")]
    argv = argv[:5] + flags
    show = "--show-log" in argv
    if "--supervisor" in argv and not die_with_supervisor(int(argv[argv.index("--supervisor") + 1])):
        return int(ExitCode.RUN_FAILED)  # it died before we could start: nobody is waiting for this run
    console = Console(stderr=True, soft_wrap=True, highlight=False)

    error_shown = False  # whether a line of level error was shown

    bars = _Bars(console) if show and console.is_terminal else None  # never a progress bar into a pipe or file

    def listener(level: str, message: str) -> None:
        nonlocal error_shown
        error_shown = error_shown or level == "error"
        style = {"error": "red", "warn": "yellow"}.get(level, "dim")
        console.print(f"[{style}]{level:>5}[/] {escape(message)}")  # dbt's and the user's text is never markup
        if bars is not None:
            bars.line(message)

    from headwater.orchestrate.run import run_pipeline
    from headwater.redact import install_logging
    from headwater.system.orgs import open_project

    install_logging()
    install = Path(argv[argv.index("--install") + 1]) if "--install" in argv else None
    print_logging(listener, run_lines=not show)

    try:
        project = open_project(root, install)  # an organisation's project is confined again here, from the install's records
        with bars or nullcontext():
            run_pipeline(
                project, pipeline, trigger=trigger, attempt=attempt, listener=listener if show else None, wait_for_lock=wait, select=select, full_refresh="--full-refresh" in argv, progress=bars
            )
    except HeadwaterError as exc:
        # The run's log printed it already (live, or through Python's logging when not shown live) —
        # unless it stopped the run before its log began (no lock on the warehouse folder, say).
        if not error_shown:
            console.print(escape(exc.render()))
        return int(exc.exit_code)
    return int(ExitCode.OK)


class _Bars:
    """A run's progress on a terminal, under its log lines: the step running, with a synced table's
    rows so far or dbt's nodes done of all. Off a terminal the log lines alone say the same."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=console, transient=True)
        self.task: TaskID | None = None
        self.name = ""
        self.nodes = 0

    def __enter__(self) -> _Bars:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def step(self, name: str) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.name, self.nodes = name, 0
        self.task = self.bar.add_task(name, total=None, count="")

    def rows(self, table: str, done: int, expected: int | None) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=f"{self.name}: {table}", completed=done, total=expected, count=f"{done:,} rows")

    def line(self, message: str) -> None:
        """dbt's result lines (`12 of 39 OK created ...`) count its nodes done."""
        found = _NODE_DONE.match(message)
        if found and self.task is not None:
            self.nodes += 1
            total = int(found.group(1))
            self.bar.update(self.task, completed=self.nodes, total=total, count=f"{self.nodes}/{total} nodes")


_NODE_DONE = re.compile(r"^\d+ of (\d+) (?!START\b)")


class _Printed(logging.Handler):
    """Python logging's warnings and errors, printed as the run's own lines."""

    def __init__(self, show: Callable[[str, str], None]) -> None:
        super().__init__(logging.WARNING)
        self.show = show

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.show("error" if record.levelno >= logging.ERROR else "warn", record.getMessage())
        except Exception:  # noqa: BLE001 - logging's own contract: a handler never raises
            self.handleError(record)


def print_logging(show: Callable[[str, str], None], *, run_lines: bool) -> None:
    """Print Python logging's warnings and errors once, as ``show`` prints the run's lines. A handler
    on the root makes the `logging.basicConfig()` dbt's tracking library calls at import a no-op
    (it printed `ERROR:headwater.run:...` next to the same line). ``run_lines``: whether the run's
    own lines (logger `headwater.run`) are printed this way too; not when ``show`` is the run's
    listener, which prints them already."""
    root = logging.getLogger()
    drop_basic_config(root)
    if not root.handlers:
        root.addHandler(_Printed(show))
    if not run_lines:
        quiet = logging.getLogger("headwater.run")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False


def drop_basic_config(root: logging.Logger) -> None:
    """Remove the handler a library's bare `logging.basicConfig()` put on the root logger before we
    could (a process forked from one that imported dbt has it): it prints `LEVEL:logger:message`."""
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler.formatter is not None and handler.formatter._fmt == logging.BASIC_FORMAT:
            root.removeHandler(handler)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_supervisor(supervisor: int) -> bool:
    """Have the kernel SIGKILL this attempt when its parent dies; False if the supervisor is gone already.

    Killed alone (SIGKILL, the OOM killer), a supervisor leaves its attempt running on, publishing
    and holding the project's lock, with nobody to enforce its timeout. Fresh, the parent is the
    supervisor itself. Warm, it is the warm server, which exits when the supervisor does (its
    connection to the supervisor closes), so this attempt follows. The signal is armed only now,
    after the process started: if the supervisor died in between, the parent is already someone
    else (fresh) or the supervisor no longer exists (warm), which the checks below see. The
    run it would have recorded does not exist yet; a run killed later is marked abandoned by the
    next run of the project."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            logging.getLogger("headwater.run").warning("could not ask to die with the supervisor: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() == supervisor:
        return True
    try:
        os.kill(supervisor, 0)  # warm: the parent is the warm server; the supervisor must still be alive
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, as another user
        pass
    return os.getppid() != 1


def forked(argv: list[str], stderr: str | None) -> None:
    """An attempt forked from the warm server (`supervise.start_warm_attempts`): made into what
    `python -m headwater.orchestrate.child` would be — its own session, stdout discarded, stderr to
    the supervisor's file (``None``: left to the terminal) — then the same `main`."""
    os.setsid()
    _release_warm_server()
    targets: list[tuple[str, int, tuple[int, ...]]] = [(os.devnull, os.O_RDWR, (0, 1))]
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


def _release_warm_server() -> None:
    """Close this attempt's copy of the supervisor's end of the pipe that keeps the warm server alive.

    multiprocessing hands every process the forkserver starts that end, so the process could start
    more; an attempt never does. Left open, it kept the warm server waiting for an end-of-file that
    never came after the supervisor died, and so kept this attempt's parent (and its kill on the
    parent's death, `die_with_supervisor`) alive with it."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        os.close(fd)
        server._forkserver_alive_fd = None  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
