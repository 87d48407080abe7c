"""Run a pipeline the way an unattended system must: each attempt in its own process, stopped at the
pipeline's timeout, retried with backoff only when the failure is transient, alerts after the last.

A child process per attempt keeps dbt's process-wide state out of the web server and the scheduler,
and is the only way to stop a run that overstays its timeout (dbt cannot be interrupted in-process).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential

from headwater.config import LoadedProject
from headwater.config.loader import DEFAULT_ORG
from headwater.errors import ExitCode
from headwater.orchestrate.alerts import notify
from headwater.orchestrate.pipelines import choose_pipeline, open_system_db
from headwater.redact import redact
from headwater.system import Run, RunLog, SystemDB, audit

TRANSIENT = {ExitCode.BUSY, ExitCode.TRANSIENT}
GRACE_SECONDS = 10  # between SIGTERM and SIGKILL when a run overstays its timeout
QUEUE_SECONDS = 3600  # how long a run waits behind another run of the project (when it has no timeout)


@dataclass(frozen=True)
class Attempt:
    number: int
    exit_code: int
    run_id: int | None
    timed_out: bool = False
    stderr_tail: str = ""

    @property
    def transient(self) -> bool:
        return self.exit_code in TRANSIENT and not self.timed_out


@dataclass(frozen=True)
class Outcome:
    pipeline: str
    status: str  # success | failed
    exit_code: int
    run_id: int | None
    attempts: int
    stderr: str = ""  # what the last attempt's process printed, when its log was not shown live


def execute(
    project: LoadedProject,
    pipeline: str | None,
    trigger: str,
    *,
    show_log: bool = False,
    sleep: Callable[[float], None] | None = None,
    actor: str | None = None,
) -> Outcome:
    """Run ``pipeline`` to its final outcome (retries included) and send alerts. Never raises for a
    failed run: the outcome says how it ended, the system database says why. ``actor``: who asked,
    for the audit log (callers that audit the request themselves, like the web app, leave it out)."""
    name, settings = choose_pipeline(project, pipeline)
    db = open_system_db(project)
    try:
        if actor is not None:
            audit.record(db, org=DEFAULT_ORG, actor=actor, action="run_triggered", target=name, detail={"trigger": trigger})
        retrying = Retrying(
            stop=stop_after_attempt(settings.retries.attempts),
            wait=wait_exponential(multiplier=settings.retries.backoff.total_seconds(), max=settings.retries.max_backoff.total_seconds()),
            retry=retry_if_result(lambda a: a.transient),
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
            before_sleep=lambda state: _log_retry(db, state),
            sleep=sleep or _sleep,
        )
        counter = iter(range(1, settings.retries.attempts + 1))
        last: Attempt = retrying(lambda: _attempt(project, db, name, trigger, next(counter), settings.timeout, show_log))
        if last.run_id is not None:
            notify(project, db, last.run_id, log=_run_logger(db, last.run_id))
        status = "success" if last.exit_code == ExitCode.OK else "failed"
        return Outcome(name, status, last.exit_code, last.run_id, last.number, last.stderr_tail)
    finally:
        db.close()


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def _attempt(project: LoadedProject, db: SystemDB, pipeline: str, trigger: str, number: int, timeout: dt.timedelta | None, show_log: bool) -> Attempt:
    # A run queues behind another run of the project; the wait counts towards its timeout.
    wait = timeout.total_seconds() if timeout else QUEUE_SECONDS
    command = [sys.executable, "-m", "headwater.orchestrate.child", str(project.root), pipeline, trigger, str(number), str(wait)]
    if show_log:
        command.append("--show-log")
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=None if show_log else stderr, start_new_session=True)
        timed_out = False
        try:
            code = process.wait(timeout=timeout.total_seconds() if timeout else None)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = _stop(process)
        except BaseException:  # Ctrl+C in the supervisor stops the run too
            _stop(process)
            raise
        stderr.seek(0)
        tail = stderr.read()[-4000:].decode(errors="replace")
    run_id = _run_of(db, project.config.name, pipeline, process.pid)
    if timed_out and run_id is not None:
        _mark_timed_out(db, run_id, timeout)  # type: ignore[arg-type]
    return Attempt(number, ExitCode.RUN_FAILED if timed_out else code, run_id, timed_out, tail)


def _stop(process: subprocess.Popen[bytes]) -> int:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _run_of(db: SystemDB, project: str, pipeline: str, pid: int) -> int | None:
    with db.session() as session:
        query = select(Run.id).where(Run.project == project, Run.pipeline == pipeline, Run.pid == pid).order_by(Run.id.desc()).limit(1)
        return session.scalars(query).first()


def _mark_timed_out(db: SystemDB, run_id: int, timeout: dt.timedelta) -> None:
    with db.session() as session:
        run = session.get(Run, run_id)
        if run is not None and run.status in ("running", "abandoned"):
            run.status, run.finished_at = "failed", dt.datetime.now(dt.UTC)
            run.error = (
                f"The run took longer than the pipeline's timeout ({timeout}) and was stopped.\n"
                "Why: a step ran longer than allowed; published data was left as it was.\n"
                "Fix: find the slow step with `headwater logs`, or raise the pipeline's timeout in headwater.yml."
            )
            session.commit()


def _run_logger(db: SystemDB, run_id: int) -> Callable[[str, str], None]:
    """Log lines written after the run's own process ended (retries, alerts) go to the same run log."""

    def log(level: str, message: str) -> None:
        with db.session() as session:
            session.add(RunLog(run_id=run_id, at=dt.datetime.now(dt.UTC), level=level, message=redact(message)))
            session.commit()

    return log


def _log_retry(db: SystemDB, state: RetryCallState) -> None:
    attempt: Attempt = state.outcome.result()  # type: ignore[union-attr]
    wait = state.next_action.sleep if state.next_action else 0
    if attempt.run_id is not None:
        _run_logger(db, attempt.run_id)("warn", f"attempt {attempt.number} failed with a transient error; retrying in {wait:.0f}s")

