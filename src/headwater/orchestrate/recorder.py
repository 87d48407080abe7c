"""Record a run, its steps and its log lines in the system database as they happen."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from headwater.diskfull import disk_full
from headwater.errors import HeadwaterError
from headwater.redact import redact, redact_values
from headwater.system import CheckResult, Run, RunLog, RunStep, SystemDB, claims

if TYPE_CHECKING:
    from headwater.checks import CheckOutcome

logger = logging.getLogger("headwater.run")  # the run's own lines (a child showing its log live silences this one)
trouble = logging.getLogger("headwater.recorder")  # problems recording them
Listener = Callable[[str, str], None]  # (level, message)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RunRecorder:
    def __init__(self, db: SystemDB, project: str, pipeline: str, trigger: str, listener: Listener | None = None, *, attempt: int = 1, on_step: Callable[[str], None] | None = None) -> None:
        self.db = db
        self.listener = listener
        self.on_step = on_step  # told each step's name as it starts (a terminal's progress display)
        self.session = db.session()
        self.unrecorded: SQLAlchemyError | None = None  # the first write to the system database that failed
        self.recorded = False  # whether how the run ended is in the system database
        self.run = Run(project=project, pipeline=pipeline, status="running", trigger=trigger, started_at=now(), pid=os.getpid(), attempt=attempt)
        self.session.add(self.run)
        self._commit()
        self._position = 0
        self.current_step: str | None = None
        self._log_lock = threading.Lock()
        self._said: list[str] = []  # the warning and error lines logged so far, whitespace collapsed

    @property
    def id(self) -> int:
        return self.run.id

    def log(self, level: str, message: str) -> None:
        """Thread-safe: dbt calls this from its worker threads. It never raises, because an exception
        in a dbt event callback kills the worker and dbt then waits forever for its result. A line
        that cannot be recorded (a full disk) is still shown; the first such failure is said once,
        in one line, not once per log line with a traceback."""
        try:
            message = redact(message)
            if level in ("warn", "error"):
                self._said.append(" ".join(message.split()))
            logger.log(logging.getLevelNamesMapping().get(level.upper(), logging.INFO), "run %s (%s): %s", self.run.id, self.run.pipeline, message)
            self._record_line(level, message)
            if self.listener:
                self.listener(level, message)
        except Exception:  # noqa: BLE001 - see docstring; the failure itself is logged
            trouble.exception("run %s: could not show a log line", self.run.id)

    def _record_line(self, level: str, message: str) -> None:
        try:
            with self._log_lock, self.db.engine.begin() as connection:
                connection.execute(insert(RunLog), {"run_id": self.run.id, "at": now(), "level": level, "message": message})
        except SQLAlchemyError as exc:
            if self.unrecorded is None:
                self.unrecorded = exc
                trouble.warning("run %s: log lines can no longer be written to the system database: %s", self.run.id, _reason(exc))

    @contextmanager
    def step(self, name: str) -> Iterator[RunStep]:
        self._position += 1
        self.current_step = name
        if self.on_step is not None:
            self.on_step(name)
        step = RunStep(run_id=self.run.id, position=self._position, name=name, status="running", started_at=now())
        self.session.add(step)
        self._commit()
        try:
            yield step
        except BaseException as exc:
            step.status, step.finished_at, step.error = "failed", now(), _error_text(exc)
            self._commit_or_keep(exc)  # the step's own error is the one to report, not this one's
            raise
        step.status, step.finished_at = "success", now()
        self._commit()

    def set_detail(self, step: RunStep, detail: Any, rows: int | None = None) -> None:
        step.detail = redact(json.dumps(detail, default=str))
        step.rows = rows
        self._commit()

    def record_checks(self, outcomes: Iterable[CheckOutcome]) -> None:
        self.session.add_all(CheckResult(run_id=self.run.id, **redact_values(o.as_record())) for o in outcomes)
        self._commit()

    def finish(self, status: str, *, rows: int | None = None, snapshot: str | None = None, error: BaseException | None = None) -> Run:
        """Record how the run ended. A success that cannot be recorded raises (the run did not
        succeed as far as anyone can tell); a failure that cannot be recorded is kept in
        `unrecorded` for the caller to report, and the record stays 'running' until the next run
        marks it abandoned."""
        self.run.status, self.run.finished_at = status, now()
        self.run.rows_synced, self.run.snapshot = rows, snapshot
        self.run.error = _error_text(error) if error else None
        try:
            if error is None:
                self._commit()
                self.recorded = True
            else:
                self.recorded = self._commit_or_keep(error)
        finally:
            self.session.close()
        return self.run

    def fail(self, exc: BaseException, folder: Path, explain: Callable[[BaseException], BaseException] = lambda e: e) -> BaseException:
        """Log and record why the run failed, and return the error to raise: a `DiskFull` naming the
        folder when the disk is full (whatever step or library found out), else ``explain(exc)``.
        ``folder``: what to name when a full disk's error does not say which file it could not write.

        When the system database cannot take the record either (most often: the same full disk), a
        last log line (shown live, if nowhere else) says so: `headwater runs` will show the run as
        running until the next run marks it abandoned."""
        failure = disk_full(exc, folder, self.db.engine.url.database) or explain(exc)
        self.log("error", self._unrepeated(failure))
        self.finish("failed", error=failure)
        if not self.recorded and self.unrecorded is not None:
            self.log("error", f"run {self.id} could not be recorded as failed in the system database ({_reason(self.unrecorded)}); `headwater runs` shows it as running until the next run marks it abandoned")
        return failure

    def _unrepeated(self, failure: BaseException) -> str:
        """The run's error as its last log line: without its Why when the log said all of it already
        (the failed dbt nodes' messages, the failed checks'), so that each is printed once. The run's
        record (`run.error`: the run page, alerts) keeps the whole error."""
        if isinstance(failure, HeadwaterError) and failure.why and self._said and said_before(failure.why, " ".join(self._said)):
            return _error_text(HeadwaterError(failure.what, fix=failure.fix))
        return _error_text(failure)

    def _commit_or_keep(self, error: BaseException) -> bool:
        """Commit while a run is failing: if the system database cannot take it (often for the same
        reason the run failed, a full disk), roll back and keep the reason instead of raising a second
        error over the first. Whether it was committed."""
        try:
            self._commit()
        except SQLAlchemyError as exc:
            self.unrecorded = self.unrecorded or exc
            trouble.debug("run %s: could not record %s while failing with %s", self.run.id, _reason(exc), type(error).__name__)
            return False
        return True

    def _commit(self) -> None:
        """Commit, or roll back and raise: a session left in a failed transaction refuses all later
        work, and the run's failure is still to be recorded."""
        try:
            self.session.commit()
        except SQLAlchemyError:
            self.session.rollback()
            raise


_PARTS = re.compile(r";\s|\n|\s—\s")  # a Why listing several failures: "a: …; b: …", "- a\n- b", "… — in FILE"
_LABEL = re.compile(r"^(?:- )?[^:]{1,200}?: ")  # "model stg_x: ", "check_name: ", "- "


def said_before(why: str, log: str) -> bool:
    """Whether every part of ``why`` (a failure per part, each after its label: the node's or
    check's name) appears in ``log``, whitespace collapsed."""
    parts = [re.sub(r"\s*\(and \d+ more\)$", "", " ".join(part.split())) for part in _PARTS.split(why)]
    parts = [part for part in parts if part]

    def said(part: str) -> bool:
        unlabelled = _LABEL.sub("", part, count=1)
        return part in log or (len(unlabelled) >= 12 and unlabelled in log)  # not a bare "fail" found anywhere

    return bool(parts) and all(said(part) for part in parts)


def _reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _error_text(exc: BaseException) -> str:
    render = getattr(exc, "render", None)
    return redact(render() if callable(render) else f"{type(exc).__name__}: {exc}")


ABANDONED = "The process running it stopped before the run finished (killed, crashed or timed out). Published data was left as it was."


def abandon_stale_runs(db: SystemDB, project: str, *, current: str | None = None) -> int:
    """Mark runs still 'running' as abandoned. Only call this while holding the project's writer lock:
    then no process on this folder can still be running them (the OS released the lock of any that died).

    Workers on other hosts share a PostgreSQL system database but not the folder: a run of a pipeline
    whose claim is held (`system.claims`) is alive elsewhere and is left alone. ``current``, the
    pipeline about to run, is claimed by its own supervisor: its runs still 'running' are stale."""
    with db.session() as session:
        alive: set[str] = set()
        if claims.shared(db):
            running = set(session.scalars(select(Run.pipeline).where(Run.project == project, Run.status == "running").distinct()))
            alive = claims.held(db, project, running - {current})
        result = session.execute(
            update(Run)
            .where(Run.project == project, Run.status == "running", Run.pipeline.not_in(alive))
            .values(status="abandoned", finished_at=dt.datetime.now(dt.UTC), error=ABANDONED)
            .execution_options(synchronize_session=False)  # no run objects in this session to refresh
        )
        session.commit()
        return cast("CursorResult[Any]", result).rowcount or 0  # an UPDATE's result is a cursor's
