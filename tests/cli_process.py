"""`headwater` as a process of its own, running the same code as the tests that start it.

A child Python finds `headwater` on its own sys.path: with an environment built from scratch (no
PYTHONPATH) that is the installed package, which for a worktree or an editable install is another
checkout's code — the test would then pass or fail on code it never saw. Every environment handed to
a CLI child goes through ``cli_env``, which puts the directory this process imported `headwater`
from first on the child's PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import headwater

HEADWATER = [sys.executable, "-m", "headwater.cli.main"]
SCRIPT = Path(sys.executable).with_name("headwater")  # the console script (the warm CLI server's client)


def code_path() -> str:
    """A PYTHONPATH under which a child imports the `headwater` this process imported."""
    here = str(Path(headwater.__file__).resolve().parents[1])
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *inherited])


def cli_env(base: Mapping[str, str] | None = None, /, **extra: str) -> dict[str, str]:
    """``base`` (this process's environment when None) with ``extra``, and PYTHONPATH set to ``code_path()``."""
    environment = {**(os.environ if base is None else base), **extra}
    environment["PYTHONPATH"] = code_path()
    return environment


def run_cli(*args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`headwater ARGS` to the end; ``env`` is the whole environment (None: this process's), PYTHONPATH added."""
    return subprocess.run([*HEADWATER, *map(str, args)], cwd=cwd, input=stdin, env=cli_env(env), capture_output=True, text=True, timeout=timeout, check=False)


class OutputLines:
    """A process's output lines, read in a thread, so a test can wait for one with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process, self.lines = process, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None or self.thread.is_alive(), f"the process exited ({self.process.returncode}) before printing {text!r}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {text!r} within {seconds:.0f}s; output so far:\n{self.text()}"
            time.sleep(0.05)

    def text(self) -> str:
        return "".join(self.lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)
