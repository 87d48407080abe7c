"""Run a pipeline the way an unattended system must: each attempt in its own process, stopped at the
pipeline's timeout, retried with backoff only when the failure is transient, alerts after the last.

A child process per attempt keeps dbt's process-wide state out of the web server and the scheduler,
and is the only way to stop a run that overstays its timeout (dbt cannot be interrupted in-process).

A fresh Python spends ~2 s of each attempt loading what a run needs (DuckDB, SQLAlchemy and
Headwater before the run is recorded; dbt and its class schemas at the run's first dbt command). Long-lived processes (the worker, the web server) call
`start_warm_attempts()` once: attempts are then forked from a single-threaded server that imported
all of it at start-up (the standard library's forkserver), ~10 ms instead of ~2 s each. The forked
child is still its own process and session: stopped, timed out and reaped exactly like a fresh one.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from typing import IO, Protocol

from sqlalchemy import select
from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential

from headwater.config import LoadedProject
from headwater.errors import ExitCode, ProjectBusy
from headwater.orchestrate.alerts import notify
from headwater.orchestrate.pipelines import choose_pipeline
from headwater.redact import redact
from headwater.system import Run, RunLog, SystemDB, audit, claims, open_system_db
from headwater.system.orgs import org_of

log = logging.getLogger("headwater.supervise")

TRANSIENT = {ExitCode.BUSY, ExitCode.TRANSIENT}
GRACE_SECONDS = 10  # between SIGTERM and SIGKILL when a run overstays its timeout
QUEUE_SECONDS = 3600  # how long a run waits behind another run of the project (when it has no timeout)

# What the warm server imports once, then the dbt adapters of the projects' warehouses, then
# orchestrate/warm.py (dbt and its schemas); a module that fails to import is left to each attempt, as before.
WARM_MODULES = ("headwater.orchestrate.child", "headwater.orchestrate.run", "headwater.cli.main")
WARM_LAST = "headwater.orchestrate.warm"


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
    timed_out: bool = False  # the last attempt was stopped by its timeout (its error was recorded, not printed)


def execute(
    project: LoadedProject,
    pipeline: str | None,
    trigger: str,
    *,
    show_log: bool = False,
    sleep: Callable[[float], None] | None = None,
    actor: str | None = None,
    select: str | None = None,
    full_refresh: bool = False,
) -> Outcome:
    """Run ``pipeline`` to its final outcome (retries included) and send alerts. Never raises for a
    failed run: the outcome says how it ended, the system database says why. ``actor``: who asked,
    for the audit log (callers that audit the request themselves, like the web app, leave it out).
    ``select``, ``full_refresh``: passed to every attempt (`run.run_pipeline`)."""
    name, settings = choose_pipeline(project, pipeline)
    db = open_system_db(project)
    try:
        if actor is not None:
            audit.record(db, org=org_of(project, db), actor=actor, action="run_triggered", target=name, detail={"trigger": trigger})
        retrying = Retrying(
            stop=stop_after_attempt(settings.retries.attempts),
            wait=wait_exponential(multiplier=settings.retries.backoff.total_seconds(), max=settings.retries.max_backoff.total_seconds()),
            retry=retry_if_result(lambda a: a.transient),
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
            before_sleep=lambda state: _log_retry(db, state),
            sleep=sleep or _sleep,
        )
        counter = iter(range(1, settings.retries.attempts + 1))
        # Workers sharing a PostgreSQL system database: one run of a pipeline at a time across all of
        # them, queued as behind the writer lock (which only sees runs of this folder).
        wait = settings.timeout.total_seconds() if settings.timeout else QUEUE_SECONDS
        with claims.claimed(db, project.config.name, name, wait=wait, on_wait=lambda who: _say_waiting(name, who, show_log)) as ours:
            if not ours:
                return _busy(name, wait, claims.holder(db, project.config.name, name))
            extra = [*(["--select", select] if select is not None else []), *(["--full-refresh"] if full_refresh else [])]
            last: Attempt = retrying(lambda: _attempt(project, db, name, trigger, next(counter), settings.timeout, show_log, extra))
        if last.run_id is not None:
            notify(project, db, last.run_id, log=_run_logger(db, last.run_id))
        status = "success" if last.exit_code == ExitCode.OK else "failed"
        return Outcome(name, status, last.exit_code, last.run_id, last.number, last.stderr_tail, last.timed_out)
    finally:
        db.close()


def _say_waiting(pipeline: str, holder: str, show_log: bool) -> None:
    message = f"pipeline {pipeline} is being run by {holder}; waiting for it to finish"
    log.info(message)
    if show_log:  # as the attempt says it when it waits for the writer lock
        print(f" info {message}", file=sys.stderr, flush=True)


def _busy(pipeline: str, waited: float, holder: str) -> Outcome:
    """Another worker kept the pipeline's claim for as long as this run may wait: as busy as a run
    that waited for the writer lock that long (exit code 3), with nothing recorded."""
    error = ProjectBusy(
        f"Another worker is running pipeline {pipeline}",
        why=f"waited {waited:.0f}s for {holder} to finish (the run's claim in the system database)",
        fix="Wait for it to finish (`headwater runs` shows it), then run again.",
    )
    return Outcome(pipeline, "failed", int(ExitCode.BUSY), None, 0, error.render())


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


# --- the attempt's process --------------------------------------------------------------------


class _Process(Protocol):
    pid: int

    def wait(self, timeout: float | None = None) -> int: ...


_warm: ForkServerContext | None = None
_warm_lock = threading.Lock()  # multiprocessing polls every child when one starts: never alongside our own poll


def start_warm_attempts(warehouses: Iterable[str] = (), modules: tuple[str, ...] = WARM_MODULES) -> bool:
    """From now on, fork this process's attempts from a server that has imported ``modules`` and the
    dbt adapter of each of ``warehouses`` (``warehouse.type`` of the projects it will run; none
    given: DuckDB's), as the engines name them. Starts the server (it imports in the background; the
    first attempt waits for it); a process has one, started by its first call. Returns False where
    the platform has no forkserver (attempts then start a fresh Python, as before)."""
    global _warm  # noqa: PLW0603 - multiprocessing's forkserver is one per process: so is the context that uses it
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    with _warm_lock:
        if _warm is None:
            from multiprocessing import forkserver

            from headwater.warehouse import dbt_adapter

            context = multiprocessing.get_context("forkserver")
            adapters = sorted({dbt_adapter(kind) for kind in warehouses or ["duckdb"]})
            context.set_forkserver_preload([*modules, *adapters, WARM_LAST])
            forkserver.ensure_running()
            _warm = context
    return True


def stop_warm_attempts() -> None:
    """Fresh processes again (the server itself exits with this process)."""
    global _warm  # noqa: PLW0603 - see start_warm_attempts: one forkserver per process
    with _warm_lock:
        _warm = None


class _Forked:
    """An attempt forked from the warm server, with the part of `subprocess.Popen` the supervisor uses."""

    def __init__(self, context: ForkServerContext, args: list[str], stderr: str | None) -> None:
        from headwater.orchestrate.child import forked

        self._process = context.Process(target=forked, args=(args, stderr), name="headwater-attempt", daemon=False)
        with _warm_lock:
            self._process.start()
        self.pid: int = self._process.pid  # type: ignore[assignment]
        self._code: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        from multiprocessing.connection import wait

        if self._code is not None:  # as Popen.wait: again and again once it has ended
            return self._code
        if not wait([self._process.sentinel], timeout):
            raise subprocess.TimeoutExpired("headwater attempt", timeout or 0)
        with _warm_lock:
            self._process.join()
            code = self._process.exitcode
        if code is None:  # join() returned, so the process has ended: multiprocessing always sets its code then
            raise RuntimeError(f"headwater attempt {self.pid}: ended without an exit code")
        self._process.close()  # its status pipe: a worker runs for months
        self._code = code
        return code


def _start(args: list[str], show_log: bool, stderr: IO[bytes]) -> _Process:
    """A process of its own (and its own session, so a stop reaches whatever it started)."""
    if _warm is not None:
        try:
            return _Forked(_warm, args, None if show_log else stderr.name)
        except (OSError, EOFError, RuntimeError) as exc:  # the server is gone and could not be restarted
            log.warning("could not fork the attempt from the warm server (%s); starting a fresh process", exc)
    command = [sys.executable, "-m", "headwater.orchestrate.child", *args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=None if show_log else stderr, start_new_session=True)


def _attempt(
    project: LoadedProject, db: SystemDB, pipeline: str, trigger: str, number: int, timeout: dt.timedelta | None, show_log: bool, extra: list[str] | None = None
) -> Attempt:
    # A run queues behind another run of the project; the wait counts towards its timeout.
    wait = timeout.total_seconds() if timeout else QUEUE_SECONDS
    args = [str(project.root), pipeline, trigger, str(number), str(wait), "--supervisor", str(os.getpid())]  # it dies with us
    if show_log:
        args.append("--show-log")
    if project.confinement is not None and project.confinement.install is not None:
        args += ["--install", str(project.confinement.install)]
    args += extra or []
    with tempfile.NamedTemporaryFile(prefix="headwater-attempt-", suffix=".stderr") as stderr:
        process = _start(args, show_log, stderr)
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


def _stop(process: _Process) -> int:
    _signal(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal(process.pid, signal.SIGKILL)
        return process.wait()


def _signal(pid: int, sig: int) -> None:
    """The attempt's whole session; the process alone if it has not made its session yet (a forked
    attempt calls setsid as its first act); nothing if it has already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


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

