"""Record a run, its steps and its log lines in the system database as they happen."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from headwater.redact import redact, redact_values
from headwater.system import CheckResult, Run, RunLog, RunStep, SystemDB

if TYPE_CHECKING:
    from headwater.checks import CheckOutcome

logger = logging.getLogger("headwater.run")
Listener = Callable[[str, str], None]  # (level, message)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RunRecorder:
    def __init__(self, db: SystemDB, project: str, pipeline: str, trigger: str, listener: Listener | None = None, *, attempt: int = 1) -> None:
        self.db = db
        self.listener = listener
        self.session = db.session()
        self.run = Run(project=project, pipeline=pipeline, status="running", trigger=trigger, started_at=now(), pid=os.getpid(), attempt=attempt)
        self.session.add(self.run)
        self.session.commit()
        self._position = 0
        self.current_step: str | None = None
        self._log_lock = threading.Lock()

    @property
    def id(self) -> int:
        return self.run.id

    def log(self, level: str, message: str) -> None:
        """Thread-safe: dbt calls this from its worker threads. It never raises, because an exception
        in a dbt event callback kills the worker and dbt then waits forever for its result."""
        try:
            message = redact(message)
            logger.log(logging.getLevelNamesMapping().get(level.upper(), logging.INFO), "run %s (%s): %s", self.run.id, self.run.pipeline, message)
            with self._log_lock, self.db.engine.begin() as connection:
                connection.execute(insert(RunLog), {"run_id": self.run.id, "at": now(), "level": level, "message": message})
            if self.listener:
                self.listener(level, message)
        except Exception:  # noqa: BLE001 - see docstring; the failure itself is logged
            logger.exception("run %s: could not record a log line", self.run.id)

    @contextmanager
    def step(self, name: str) -> Iterator[RunStep]:
        self._position += 1
        self.current_step = name
        step = RunStep(run_id=self.run.id, position=self._position, name=name, status="running", started_at=now())
        self.session.add(step)
        self.session.commit()
        try:
            yield step
        except BaseException as exc:
            step.status, step.finished_at, step.error = "failed", now(), _error_text(exc)
            self.session.commit()
            raise
        step.status, step.finished_at = "success", now()
        self.session.commit()

    def set_detail(self, step: RunStep, detail: Any, rows: int | None = None) -> None:
        step.detail = redact(json.dumps(detail, default=str))
        step.rows = rows
        self.session.commit()

    def record_checks(self, outcomes: Iterable[CheckOutcome]) -> None:
        self.session.add_all(CheckResult(run_id=self.run.id, **redact_values(o.as_record())) for o in outcomes)
        self.session.commit()

    def finish(self, status: str, *, rows: int | None = None, snapshot: str | None = None, error: BaseException | None = None) -> Run:
        self.run.status, self.run.finished_at = status, now()
        self.run.rows_synced, self.run.snapshot = rows, snapshot
        self.run.error = _error_text(error) if error else None
        self.session.commit()
        self.session.close()
        return self.run


def _error_text(exc: BaseException) -> str:
    render = getattr(exc, "render", None)
    return redact(render() if callable(render) else f"{type(exc).__name__}: {exc}")
