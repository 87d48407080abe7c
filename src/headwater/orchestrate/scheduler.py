"""The scheduler: pipelines on cron schedules, catch-up after downtime, one run per pipeline at a
time, and pipelines that run when the pipelines they come ``after`` have succeeded.

Timing is APScheduler 3's (`BackgroundScheduler`, `CronTrigger.from_crontab`); this module adds what
cron users expect and APScheduler 3 does not do on its own (each point is tested):

* **Cron's weekday numbers.** APScheduler 3's ``from_crontab`` reads day-of-week 0 as *Monday*;
  cron reads it as Sunday (and 7 too), so ``1-5`` would mean Tuesday to Saturday. The day-of-week
  field is rewritten to day names before APScheduler sees it.
* **Day of month OR day of week.** When both are restricted (``0 7 1 * 1``) cron fires when
  *either* matches; APScheduler requires both. Such a schedule becomes two triggers.
* **The repeated hour when clocks go back.** APScheduler 3.11 fires ``30 1 * * *`` twice on the
  fall-back night (01:30 summer time, then 01:30 winter time). A schedule with a fixed hour fires
  once per wall-clock time: the second occurrence is skipped. A schedule whose hour field is ``*``
  keeps running on elapsed time (``30 * * * *`` fires in both 01:xx hours), as cron does.
* **The skipped hour when clocks go forward.** APScheduler fires a time that does not exist
  (02:30 on the spring-forward night in New York) once, reading it with the offset from before the
  change: 02:30 EST = 07:30 UTC = 03:30 EDT. That is kept. But APScheduler finds that fire only
  when it searches from before the gap; started inside the hour after it (03:00-03:30 EDT) it
  skips to the next day. Within three hours after a clock change the next fire time is therefore
  searched from before the change, so the schedule is the same whenever the scheduler starts (and
  ``fire_times`` over split ranges adds up to the whole range).

Runs are executed by the ``execute(pipeline, trigger) -> "success" | "failed"`` function given to
the scheduler (a child process per run, with timeout, retries and alerts) on a small thread pool;
APScheduler's own job only queues a run, so its ``max_instances=1`` never has to drop anything and
every decision is logged here, naming the pipeline, on ``headwater.scheduler``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor as APSThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from headwater.config.cron import crontab_parts
from headwater.config.model import LoadedProject, Schedule
from headwater.system import Run, ScheduleState, SystemDB, audit, claims
from headwater.system.orgs import org_of

log = logging.getLogger("headwater.scheduler")

UTC = dt.UTC
Execute = Callable[[str, str], str]

# Longer than any daylight-saving shift (2 h at most, at Troll station), see the module docstring.
_LOOKBACK = dt.timedelta(hours=3)
_MAX_STEPS = 100_000  # a guard against a trigger that stops moving forward (never reached in tests)
_HOUR = CronTrigger.FIELD_NAMES.index("hour")

DEFAULT_WORKERS = 2
DEFAULT_MISFIRE_GRACE = dt.timedelta(minutes=5)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def _aware_utc(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


# --- cron expressions ---------------------------------------------------------------------------


def _second_occurrence(moment: dt.datetime, zone: ZoneInfo) -> bool:
    """Whether this instant shows a wall-clock time that already happened an hour (or so) earlier."""
    local = moment.astimezone(UTC).astimezone(zone)
    return local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()


class CrontabTrigger(BaseTrigger):  # type: ignore[misc]  # apscheduler has no types here (ignore_missing_imports): BaseTrigger is Any
    """A five-field cron expression in an IANA time zone, with cron's meaning (see the module
    docstring). Built from `CronTrigger.from_crontab`; used by the running scheduler and by
    `fire_times`, so tests of one are tests of the other."""

    __slots__ = ("_parts", "_skip_repeats", "cron", "timezone")

    def __init__(self, cron: str, timezone: str = "UTC") -> None:
        self.cron = cron
        self.timezone = ZoneInfo(timezone)
        self._parts = [CronTrigger.from_crontab(expr, timezone=self.timezone) for expr in crontab_parts(cron)]
        self._skip_repeats = str(self._parts[0].fields[_HOUR]) != "*"

    @classmethod
    def for_schedule(cls, schedule: Schedule) -> CrontabTrigger:
        return cls(schedule.cron, schedule.timezone)

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
        # APScheduler's contract: the first fire time after the previous one, or, with none, at or after now.
        if previous_fire_time is not None:
            return self.next_after(previous_fire_time)
        return self.next_after(now, inclusive=True)

    def next_after(self, moment: dt.datetime, *, inclusive: bool = False) -> dt.datetime | None:
        """The first fire time after ``moment`` (or at it, if ``inclusive``), in the trigger's zone."""
        moment = _aware_utc(moment, "moment")
        best: dt.datetime | None = None
        for part in self._parts:
            found = self._next_of(part, moment, inclusive)
            if found is not None and (best is None or found < best):
                best = found
        return None if best is None else best.astimezone(UTC).astimezone(self.timezone)

    def _next_of(self, part: CronTrigger, moment: dt.datetime, inclusive: bool) -> dt.datetime | None:
        begin = moment
        if (moment - _LOOKBACK).astimezone(self.timezone).utcoffset() != moment.astimezone(self.timezone).utcoffset():
            begin = moment - _LOOKBACK  # just after a clock change: search from before it
        fire: dt.datetime | None = part.get_next_fire_time(None, begin.astimezone(self.timezone))
        for _ in range(_MAX_STEPS):
            if fire is None:
                return None
            at = fire.astimezone(UTC)
            late_enough = at >= moment if inclusive else at > moment
            if late_enough and not (self._skip_repeats and _second_occurrence(fire, self.timezone)):
                return fire
            following = part.get_next_fire_time(fire, fire)
            if following is not None and following.astimezone(UTC) <= at:
                # APScheduler 3 bug guard (agronholm/apscheduler#1021): never step backwards
                following = part.get_next_fire_time(None, (at + dt.timedelta(seconds=1)).astimezone(self.timezone))
            fire = following
        raise RuntimeError(f"cron '{self.cron}' ({self.timezone.key}): no fire time found after {moment.isoformat()}")

    def __str__(self) -> str:
        return f"cron[{self.cron!r}, {self.timezone.key}]"

    def __repr__(self) -> str:
        return f"<CrontabTrigger ({self.cron!r}, timezone={self.timezone.key!r})>"


def fire_times(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Aware UTC datetimes of the schedule's intended fires in (start, end]: exactly the times the
    running scheduler fires at (it uses the same trigger)."""
    start, end = _aware_utc(start, "start"), _aware_utc(end, "end")
    trigger = CrontabTrigger.for_schedule(schedule)
    times: list[dt.datetime] = []
    fire = trigger.next_after(start)
    while fire is not None and fire.astimezone(UTC) <= end:
        times.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, end)
    return times


def due_catch_up(schedule: Schedule, last_fire: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """The one missed fire time to run now (the latest in (last_fire, now]), or None: nothing was
    missed, ``catch_up`` is off, or the pipeline never fired (no state to compare with)."""
    if not schedule.catch_up or last_fire is None:
        return None
    return latest_fire(schedule, last_fire, now)


def latest_fire(schedule: Schedule, after: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The schedule's latest fire time in (after, now], or None."""
    last_fire, now = _aware_utc(after, "after"), _aware_utc(now, "now")
    if last_fire >= now:
        return None
    # Only the latest is wanted: look back over growing windows instead of walking every missed
    # time (a minutely schedule down for a year would be half a million of them).
    window = dt.timedelta(hours=1)
    while True:
        start = max(last_fire, now - window)
        missed = fire_times(schedule, start, now)
        if missed:
            return missed[-1]
        if start == last_fire:
            return None
        window *= 8


# --- the scheduler ------------------------------------------------------------------------------


class Scheduler:
    """Fires the project's scheduled pipelines and runs them, one run per pipeline at a time.

    Runs are executed by ``execute(pipeline, trigger)`` on a pool of ``workers`` threads; triggers
    are ``schedule``, ``catch_up``, ``manual`` (or what `trigger` is given) and ``after:<pipeline>``.
    ``clock`` (aware UTC) is read for catch-up decisions, the recorded fire times and `next_runs`;
    APScheduler's own timing uses the real clock.
    """

    def __init__(
        self,
        project: LoadedProject,
        db: SystemDB,
        execute: Execute,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
        workers: int = DEFAULT_WORKERS,
        misfire_grace: dt.timedelta = DEFAULT_MISFIRE_GRACE,
    ) -> None:
        self.project = project
        self.db = db
        self._execute = execute
        self._clock = clock
        self._name = project.config.name
        self.org = org_of(project, db)  # whose audit log its runs go in: resolved once
        self._pipelines = dict(project.config.pipelines)
        self._schedules: dict[str, Schedule] = {name: p.schedule for name, p in self._pipelines.items() if p.schedule is not None}
        self._triggers = {name: CrontabTrigger.for_schedule(s) for name, s in self._schedules.items()}
        self._dependents: dict[str, list[str]] = {name: [] for name in self._pipelines}
        for name, pipeline in self._pipelines.items():
            for upstream in pipeline.after:
                self._dependents.setdefault(upstream, []).append(name)

        self._cond = threading.Condition()
        self._state: dict[str, str] = {}  # pipeline -> "queued" | "running"
        self._deferred: dict[str, str] = {}  # running pipeline -> upstream that succeeded meanwhile
        self._inflight = 0  # runs queued or running, including their dependency handling
        self._stopping = False
        self._started = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"headwater-run-{self._name}")

        self._aps = BackgroundScheduler(
            timezone=UTC,
            executors={"default": APSThreadPoolExecutor(max_workers=2)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": max(1, int(misfire_grace.total_seconds()))},
        )
        for name, trigger in self._triggers.items():
            self._aps.add_job(self._fire, trigger, args=[name], id=self._job_id(name), name=f"{self._name}.{name}", replace_existing=True)
        self._aps.add_listener(self._on_job_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)

    # --- public ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Catch up what was missed while down, then fire on schedule from background threads."""
        if self._started:
            raise RuntimeError("the scheduler was already started")
        self._started = True
        now = _aware_utc(self._clock(), "clock()")
        for name, schedule in self._schedules.items():
            self._catch_up(name, schedule, now)
        self._aps.start()
        for name, at in self.next_runs().items():
            log.info("pipeline %s: scheduled %s, next run %s", name, self._triggers[name], at.isoformat() if at else "never")

    def shutdown(self, wait: bool = True) -> None:
        """Stop firing; runs not started yet are dropped; with ``wait``, running ones finish first."""
        with self._cond:
            again = self._stopping
            self._stopping = True
            running = sorted(p for p, s in self._state.items() if s == "running")
        if again:  # stopped before, perhaps without waiting: wait now if asked
            self._pool.shutdown(wait=wait)
            return
        if self._aps.running:
            self._aps.shutdown(wait=False)  # its job only queues runs: nothing there to wait for
        if running:
            log.info("scheduler stopping: %s for %s to finish", "waiting" if wait else "not waiting", ", ".join(running))
        self._pool.shutdown(wait=wait)
        log.info("scheduler stopped")

    def next_runs(self) -> dict[str, dt.datetime | None]:
        """The next scheduled fire time of each scheduled pipeline, aware UTC."""
        now = _aware_utc(self._clock(), "clock()")
        result: dict[str, dt.datetime | None] = {}
        for name, trigger in self._triggers.items():
            at = trigger.next_after(now)
            result[name] = at.astimezone(UTC) if at else None
        return result

    def trigger(self, pipeline: str, trigger: str = "manual") -> bool:
        """Queue a run of ``pipeline`` now. False, and no second run, if it is running or queued."""
        if pipeline not in self._pipelines:
            raise KeyError(f"no pipeline named '{pipeline}' in project {self._name}")
        return self._submit(pipeline, trigger, "requested")

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is queued or running (dependents included); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout)

    def status(self) -> dict[str, str]:
        """Pipelines queued or running right now."""
        with self._cond:
            return dict(self._state)

    # --- firing ---------------------------------------------------------------------------------

    def _fire(self, pipeline: str) -> None:
        """APScheduler's job: a schedule fired. Only queues the run, naming the fire time it is for
        (the latest one up to now: APScheduler fires at it, or within the misfire grace after it)."""
        now = _aware_utc(self._clock(), "clock()")
        tick = latest_fire(self._schedules[pipeline], now - dt.timedelta(days=1), now)
        self._submit(pipeline, "schedule", f"fired by schedule {self._triggers[pipeline]}", tick=tick)

    def _catch_up(self, pipeline: str, schedule: Schedule, now: dt.datetime) -> None:
        with self.db.session() as session:
            state = session.get(ScheduleState, (self._name, pipeline))
            last_fire = state.last_fire_time if state else None
            if last_fire is None:
                # First start: nothing to compare with, so nothing is "missed". Record from now on.
                session.add(ScheduleState(project=self._name, pipeline=pipeline, last_fire_time=now))
                try:
                    session.commit()
                except IntegrityError:  # another worker sharing the database recorded it first: its time stands
                    session.rollback()
                    log.info("pipeline %s: first start of its schedule, recorded by another worker; no catch-up", pipeline)
                    return
                log.info("pipeline %s: first start of its schedule, no catch-up; recorded %s", pipeline, now.isoformat())
                return
        if schedule.catch_up:
            due = due_catch_up(schedule, last_fire, now)
            if due is None:
                log.info("pipeline %s: no fire time missed since %s", pipeline, last_fire.isoformat())
            else:
                self._submit(pipeline, "catch_up", f"missed fire times up to {due.isoformat()} since {last_fire.isoformat()}: catching up once", tick=due)
            return
        first_missed = self._triggers[pipeline].next_after(last_fire)
        if first_missed is not None and first_missed <= now:
            log.info(
                "pipeline %s: missed fire times from %s (last fired %s); catch_up is off, skipping them",
                pipeline, first_missed.astimezone(UTC).isoformat(), last_fire.isoformat(),
            )

    def _on_job_event(self, event: JobEvent) -> None:
        pipeline = self._pipeline_of(event.job_id)
        if pipeline is None:
            return
        if event.code == EVENT_JOB_MISSED:
            late = _aware_utc(event.scheduled_run_time, "scheduled_run_time")
            if self._schedules[pipeline].catch_up:
                self._submit(pipeline, "catch_up", f"fire at {late.isoformat()} was missed (scheduler late): catching up once", tick=late)
            else:
                log.warning("pipeline %s: fire at %s was missed (scheduler late); catch_up is off, skipping", pipeline, late.isoformat())
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("pipeline %s: fire skipped: the previous fire is still being handled", pipeline)
        elif event.code == EVENT_JOB_ERROR:
            log.error("pipeline %s: firing failed: %r", pipeline, getattr(event, "exception", None))

    # --- running --------------------------------------------------------------------------------

    def _submit(self, pipeline: str, trigger: str, reason: str, *, tick: dt.datetime | None = None) -> bool:
        """Queue a run; ``tick``: the scheduled fire time it is for (schedule and catch-up runs)."""
        with self._cond:
            if self._stopping:
                log.info("pipeline %s: %s run not queued (%s): the scheduler is stopping", pipeline, trigger, reason)
                return False
            busy = self._state.get(pipeline)
            if busy:
                log.info("pipeline %s: %s run dropped (%s): already %s", pipeline, trigger, reason, busy)
                return False
            self._state[pipeline] = "queued"
            self._inflight += 1
            self._pool.submit(self._run, pipeline, trigger, tick)
            log.info("pipeline %s: %s run queued (%s)", pipeline, trigger, reason)
            return True

    def _run(self, pipeline: str, trigger: str, tick: dt.datetime | None = None) -> None:
        released = False  # whether this run's "queued"/"running" mark is gone

        def release() -> str | None:
            nonlocal released
            with self._cond:
                self._state.pop(pipeline, None)
                released = True
                return self._deferred.pop(pipeline, None)

        try:
            with self._cond:
                if self._stopping:
                    log.info("pipeline %s: %s run not started: the scheduler is stopping", pipeline, trigger)
                    return
                self._state[pipeline] = "running"
            status: str | None = "failed"
            try:
                status = self._claim_and_execute(pipeline, trigger, tick)
            except Exception:
                log.exception("pipeline %s: %s run raised", pipeline, trigger)
            if status is None:  # another worker has it, or had it: nothing was run or recorded here
                return
            log.log(logging.INFO if status == "success" else logging.WARNING, "pipeline %s: %s run finished: %s", pipeline, trigger, status)
            if status == "success":
                self._trigger_dependents(pipeline)
            upstream = release()
            if upstream is not None and self._ready(pipeline):
                self._submit(pipeline, f"after:{upstream}", f"{upstream} succeeded while it was running")
        except Exception:
            log.exception("pipeline %s: scheduler error around a %s run", pipeline, trigger)
        finally:
            if not released:
                release()
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _claim_and_execute(self, pipeline: str, trigger: str, tick: dt.datetime | None) -> str | None:
        """Run ``pipeline`` under its claim in the system database; None, and nothing recorded, when
        another worker sharing the database runs it or already ran this fire (``tick``).

        Only schedule and catch-up runs claim here, without waiting: every worker sees the same
        fire, and exactly one may run it. Other runs (``after:``, "run now") were asked of this
        worker alone; the supervised run claims them itself, waiting like a run typed at the CLI.
        The claim is this thread's, so the supervised run inside it does not wait for it."""
        scheduled = trigger in ("schedule", "catch_up")
        with claims.claimed(self.db, self._name, pipeline, wait=0) if scheduled else contextlib.nullcontext(True) as ours:
            if not ours:
                log.info("pipeline %s: %s run skipped: another worker is running it (%s)", pipeline, trigger, claims.holder(self.db, self._name, pipeline))
                return None
            if scheduled and tick is not None and self._fired_elsewhere(pipeline, tick):
                return None
            if scheduled:
                self._record_fire(pipeline)
            if scheduled or trigger.startswith("after:"):  # "web", "manual": audited by whoever asked
                audit.record(self.db, org=self.org, actor=audit.SCHEDULER, action="run_triggered", target=pipeline, detail={"trigger": trigger})
            log.info("pipeline %s: %s run started", pipeline, trigger)
            return self._execute(pipeline, trigger)

    def _fired_elsewhere(self, pipeline: str, tick: dt.datetime) -> bool:
        """With workers sharing the system database: whether one of them already ran the fire at
        ``tick`` (its recorded fire time is that late), its run over before this worker got to it.
        Alone (SQLite) there is nobody else, and the recorded time says nothing new."""
        if not claims.shared(self.db):
            return False
        with self.db.session() as session:
            state = session.get(ScheduleState, (self._name, pipeline))
            last = state.last_fire_time if state else None
        if last is None or last < tick:
            return False
        log.info("pipeline %s: run for the fire at %s skipped: another worker ran it (fire recorded at %s)", pipeline, tick.isoformat(), last.isoformat())
        return True

    def _record_fire(self, pipeline: str) -> None:
        now = _aware_utc(self._clock(), "clock()")
        try:
            with self.db.session() as session:
                session.merge(ScheduleState(project=self._name, pipeline=pipeline, last_fire_time=now))
                session.commit()
        except Exception:
            log.exception("pipeline %s: could not record the fire time %s", pipeline, now.isoformat())

    # --- dependencies ---------------------------------------------------------------------------

    def _trigger_dependents(self, upstream: str) -> None:
        for dependent in self._dependents.get(upstream, []):
            waiting = self._waiting_for(dependent, just_succeeded=upstream)
            if waiting:
                log.info("pipeline %s: not triggered after %s: waiting for a newer success of %s", dependent, upstream, ", ".join(waiting))
                continue
            with self._cond:
                if self._state.get(dependent) == "running":
                    self._deferred[dependent] = upstream
                    log.info("pipeline %s: %s succeeded while it is running: it runs again when it finishes", dependent, upstream)
                    continue
            self._submit(dependent, f"after:{upstream}", f"all of {', '.join(self._pipelines[dependent].after)} succeeded")

    def _ready(self, pipeline: str) -> bool:
        waiting = self._waiting_for(pipeline)
        if waiting:
            log.info("pipeline %s: not re-run: waiting for a newer success of %s", pipeline, ", ".join(waiting))
        return not waiting

    def _waiting_for(self, pipeline: str, just_succeeded: str | None = None) -> list[str]:
        """The ``after`` pipelines of ``pipeline`` without a success more recent than its last run."""
        with self.db.session() as session:
            own = session.scalars(select(Run).where(Run.project == self._name, Run.pipeline == pipeline).order_by(Run.id.desc()).limit(1)).first()
            waiting = []
            for upstream in self._pipelines[pipeline].after:
                if upstream == just_succeeded:
                    continue  # its run just returned success: more recent than anything started before
                success = session.scalars(
                    select(Run).where(Run.project == self._name, Run.pipeline == upstream, Run.status == "success").order_by(Run.id.desc()).limit(1)
                ).first()
                if success is None or (own is not None and (success.finished_at or success.started_at) <= own.started_at):
                    waiting.append(upstream)
            return waiting

    # --- helpers --------------------------------------------------------------------------------

    def _job_id(self, pipeline: str) -> str:
        return f"schedule:{pipeline}"

    def _pipeline_of(self, job_id: str) -> str | None:
        prefix = "schedule:"
        name = job_id[len(prefix):] if job_id.startswith(prefix) else None
        return name if name in self._schedules else None


def run_worker(project: LoadedProject, db: SystemDB, execute: Execute, *, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Run the scheduler until SIGINT or SIGTERM, then stop it, letting running pipelines finish.
    Call from the main thread (signal handlers can only be installed there)."""
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("received %s again: still waiting for running pipelines (SIGKILL stops at once)", name)
        else:
            log.info("received %s: stopping the scheduler", name)
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in signals}
    scheduler = Scheduler(project, db, execute)
    try:
        scheduler.start()
        log.info("scheduler running for project %s; stop with Ctrl-C or SIGTERM", project.config.name)
        while not stop.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
