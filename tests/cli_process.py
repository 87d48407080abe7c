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
