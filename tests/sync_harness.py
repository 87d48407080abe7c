"""Exactly-once tests for any source: `headwater sync` in a child process, SIGKILLed at random moments
while a writer thread keeps changing the source.

    seed = random_seed(default=7)    # HEADWATER_TEST_SEED=N replays a failure
    with telling_the_seed(seed):     # every assertion's message ends with the seed
        with Writer(step, seed=seed):    # step(rng) makes one change in the source database
            outcomes = kill_at_random_moments(project_dir, "app", rounds=6, rng=thread_rng(seed, "kills"), max_delay=4.0)
        run_sync(project_dir, "app")     # the final, uninterrupted sync
        # ...then raw must equal the source row for row.

A kill can land anywhere: while the CLI starts, between tables, inside a table's transaction,
during COMMIT. Nothing here knows about a particular database.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest
from cli_process import HEADWATER, cli_env

SEED_VARIABLE = "HEADWATER_TEST_SEED"


def random_seed(default: int) -> int:
    """The seed of a randomised test: ``HEADWATER_TEST_SEED`` when set (to replay a failure), else ``default``."""
    value = os.environ.get(SEED_VARIABLE, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{SEED_VARIABLE}={value!r} is not a whole number; set it to the seed a failure printed") from None


def thread_rng(seed: int, name: str) -> random.Random:
    """A generator of its own for each thread (``name``): threads sharing one would draw in whatever
    order they were scheduled, and the same seed would not replay the same run."""
    return random.Random(f"{seed}:{name}")  # a str seed is hashed with SHA-512: the same in every process


@contextmanager
def telling_the_seed(seed: int) -> Iterator[None]:
    """Append the seed, and how to replay it, to the message of an assertion failing inside (to any other error, as a note)."""
    replay = f"(random seed {seed}: replay with {SEED_VARIABLE}={seed})"
    try:
        yield
    except AssertionError as exc:
        exc.args = (f"{exc.args[0] if exc.args else ''}\n{replay}", *exc.args[1:])
        raise
    except pytest.fail.Exception as exc:
        pytest.fail(f"{exc.msg}\n{replay}", pytrace=exc.pytrace)
    except Exception as exc:  # a KeyError, a sync's error: pytest prints the note under it
        exc.add_note(replay)
        raise


@dataclass
class Outcome:
    delay: float  # seconds after the start at which the kill was sent
    killed: bool  # False: the sync had already finished by then
    returncode: int | None
    output: str


def headwater_command(project: Path, *args: str) -> list[str]:
    return [*HEADWATER, *args, "--project", str(project)]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    return cli_env(None, **(env or {}), PYTHONUNBUFFERED="1")


def run_sync(project: Path, source: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """One `headwater sync SOURCE` to the end; its exit code and output are the caller's to check."""
    return subprocess.run(headwater_command(project, "sync", source, *args), env=_environment(env), capture_output=True, text=True, timeout=timeout, check=False)


def sync_and_kill(project: Path, source: str, delay: float, *args: str, env: dict[str, str] | None = None) -> Outcome:
    """Start `headwater sync SOURCE` and SIGKILL it after ``delay`` seconds, unless it ended before."""
    child = subprocess.Popen(headwater_command(project, "sync", source, *args), env=_environment(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = child.communicate(timeout=delay)
        return Outcome(delay, False, child.returncode, output)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        output, _ = child.communicate()
        return Outcome(delay, True, child.returncode, output)


def kill_at_random_moments(project: Path, source: str, *, rounds: int, rng: random.Random, max_delay: float, min_delay: float = 0.0, env: dict[str, str] | None = None) -> list[Outcome]:
    """``rounds`` syncs, each killed after a uniformly random delay in [min_delay, max_delay]."""
    return [sync_and_kill(project, source, rng.uniform(min_delay, max_delay), env=env) for _ in range(rounds)]


class Writer:
    """Calls ``step(rng)`` over and over in a thread until the ``with`` block ends; re-raises the
    first error it met there, so a broken writer cannot pass for a quiet source."""

    def __init__(self, step: Callable[[random.Random], None], *, seed: int = 0, pause: float = 0.002) -> None:
        self.step, self.rng, self.pause = step, thread_rng(seed, "writer"), pause
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.steps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step(self.rng)
                self.steps += 1
                time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread in __exit__
            self.error = exc

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)
        if self.error is not None:
            raise self.error
