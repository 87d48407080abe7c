"""The web app's "Run now": one queued or running run per pipeline, never a second one.

When the app shares its process with the scheduler (`headwater serve` with schedules), runs go
through the scheduler (`Scheduler.trigger`): one place decides what runs, so a click and a cron
fire of the same pipeline never run side by side, and `after:` dependents follow as they do for
scheduled runs. Otherwise (no schedules, `--no-scheduler`, tests) the launcher runs
`supervise.execute` on a small thread pool of its own, with the same one-per-pipeline rule. Either
way a run is a child process (see `orchestrate/supervise.py`): the web server never hosts dbt.

Runs started elsewhere (`headwater run`, a separate `headwater worker`) are not known here; the
project's writer lock still makes a run started here wait for them rather than run alongside.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from headwater.config.model import LoadedProject
from headwater.errors import NotFound

if TYPE_CHECKING:
    from headwater.orchestrate.scheduler import Scheduler

log = logging.getLogger("headwater.web.launcher")

TRIGGER = "web"
WORKERS = 2
Execute = Callable[[LoadedProject, str, str], object]  # supervise.execute's shape: (project, pipeline, trigger)


def _supervised(project: LoadedProject, pipeline: str, trigger: str) -> object:
    from headwater.orchestrate.supervise import execute

    return execute(project, pipeline, trigger)


class Launcher:
    """Starts runs for the web app. ``execute`` is there for tests (default: `supervise.execute`)."""

    def __init__(self, project: LoadedProject, scheduler: Scheduler | None = None, *, execute: Execute | None = None, workers: int = WORKERS) -> None:
        self.project = project
        self.scheduler = scheduler
        self._execute = execute or _supervised
        self._workers = workers
        self._lock = threading.Lock()
        self._state: dict[str, str] = {}  # pipeline -> "queued" | "running" (own pool only)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def via_scheduler(self) -> bool:
        return self.scheduler is not None

    def start(self, pipeline: str) -> bool:
        """Queue a run of ``pipeline`` now. False, and no second run, if one is queued or running."""
        if pipeline not in self.project.config.pipelines:
            raise NotFound(f"No pipeline named '{pipeline}'", fix=f"Pipelines of this project: {', '.join(self.project.config.pipelines) or 'none yet'}.")
        if self.scheduler is not None:
            return self.scheduler.trigger(pipeline, TRIGGER)
        with self._lock:
            if self._state.get(pipeline):
                log.info("pipeline %s: web run not started: already %s", pipeline, self._state[pipeline])
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="headwater-web-run")
            self._state[pipeline] = "queued"
            self._pool.submit(self._run, pipeline)
        log.info("pipeline %s: web run queued", pipeline)
        return True

    def states(self) -> dict[str, str]:
        """Pipelines queued or running right now (through this launcher or its scheduler)."""
        if self.scheduler is not None:
            return self.scheduler.status()
        with self._lock:
            return dict(self._state)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing started here is queued or running; False on timeout (for tests)."""
        if self.scheduler is not None:
            return self.scheduler.wait_idle(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._state:
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the own pool (a scheduler belongs to whoever created it): runs not started yet are
        dropped; with ``wait``, runs in progress finish first. The launcher can start runs again
        afterwards, on a new pool (an app's lifespan may start and stop more than once)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=wait, cancel_futures=True)
        with self._lock:
            for pipeline in [p for p, s in self._state.items() if s == "queued"]:
                del self._state[pipeline]  # cancelled before it started

    def _run(self, pipeline: str) -> None:
        try:
            with self._lock:
                self._state[pipeline] = "running"
            log.info("pipeline %s: web run started", pipeline)
            outcome = self._execute(self.project, pipeline, TRIGGER)
            log.info("pipeline %s: web run finished: %s", pipeline, getattr(outcome, "status", outcome))
        except Exception:
            log.exception("pipeline %s: web run raised", pipeline)
        finally:
            with self._lock:
                self._state.pop(pipeline, None)
