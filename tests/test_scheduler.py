"""The scheduler: cron in time zones across DST, catch-up, one run per pipeline, dependencies.

No dbt and no sleeps waiting for a cron minute: schedules are tested through `fire_times` (the
trigger the running scheduler uses) over fixed dates, and the scheduler through `trigger()`, its job
function `_fire()`, and `start()` with an injected clock. `execute` is a test double that records
its calls, writes Run rows like the real one, and can be held on an Event to simulate a long run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from sqlalchemy import select

from headwater.config.model import LoadedProject, Project, Schedule
from headwater.orchestrate.scheduler import CrontabTrigger, Scheduler, due_catch_up, fire_times, run_worker
from headwater.system import Run, ScheduleState, SystemDB

UTC = dt.UTC
NY = "America/New_York"
WAIT = 10  # seconds: generous upper bounds; the tests take milliseconds


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


MONDAY_1PM = utc(2025, 3, 10, 13)  # the schedulers' default "now" in the tests below


def fires(cron: str, tz: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    return fire_times(Schedule(cron=cron, timezone=tz), start, end)


def local(times: list[dt.datetime], tz: str) -> list[str]:
    return [t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M %Z") for t in times]


# --- schedules across daylight-saving changes -----------------------------------------------------


def test_daily_new_york_fires_once_per_local_day_at_seven_across_both_changes() -> None:
    spring = fires("0 7 * * *", NY, utc(2025, 3, 7), utc(2025, 3, 11))  # DST starts Sun 9 March
    assert spring == [utc(2025, 3, 7, 12), utc(2025, 3, 8, 12), utc(2025, 3, 9, 11), utc(2025, 3, 10, 11)]
    autumn = fires("0 7 * * *", NY, utc(2025, 10, 31), utc(2025, 11, 4))  # DST ends Sun 2 November
    assert autumn == [utc(2025, 10, 31, 11), utc(2025, 11, 1, 11), utc(2025, 11, 2, 12), utc(2025, 11, 3, 12)]
    assert local(spring + autumn, NY) == [
        "03-07 07:00 EST", "03-08 07:00 EST", "03-09 07:00 EDT", "03-10 07:00 EDT",
        "10-31 07:00 EDT", "11-01 07:00 EDT", "11-02 07:00 EST", "11-03 07:00 EST",
    ]
    assert all(t.tzinfo is UTC for t in spring + autumn)


def test_time_that_does_not_exist_on_spring_forward_day_fires_once() -> None:
    # 02:30 does not exist on 9 March 2025 in New York (02:00 EST -> 03:00 EDT). APScheduler reads it
    # with the offset from before the change: 02:30 EST = 07:30 UTC = 03:30 EDT. Once, not skipped.
    times = fires("30 2 * * *", NY, utc(2025, 3, 8), utc(2025, 3, 11))
    assert times == [utc(2025, 3, 8, 7, 30), utc(2025, 3, 9, 7, 30), utc(2025, 3, 10, 6, 30)]
    assert local(times, NY) == ["03-08 02:30 EST", "03-09 03:30 EDT", "03-10 02:30 EDT"]
    # APScheduler alone misses that day's fire when it starts inside the hour after the change
    # (03:00 EDT); the trigger searches from before the change, so it does not.
    assert fires("30 2 * * *", NY, utc(2025, 3, 9, 7), utc(2025, 3, 10)) == [utc(2025, 3, 9, 7, 30)]


def test_time_that_happens_twice_on_fall_back_day_fires_once() -> None:
    # 01:30 happens twice on 2 November 2025 in New York (EDT, then EST). APScheduler 3.11 alone
    # fires at both; a schedule with a fixed hour fires at the first only.
    times = fires("30 1 * * *", NY, utc(2025, 11, 1), utc(2025, 11, 4))
    assert local(times, NY) == ["11-01 01:30 EDT", "11-02 01:30 EDT", "11-03 01:30 EST"]
    assert times[1] == utc(2025, 11, 2, 5, 30)
    every_20_min_of_one_am = fires("*/20 1 * * *", NY, utc(2025, 11, 2, 4), utc(2025, 11, 2, 8))
    assert local(every_20_min_of_one_am, NY) == ["11-02 01:00 EDT", "11-02 01:20 EDT", "11-02 01:40 EDT"]


def test_hourly_schedule_keeps_elapsed_time_through_both_changes() -> None:
    # With hour '*' the schedule is about elapsed time, as in cron: both 01:30s run in autumn,
    # and in spring the hour that does not exist is simply not there.
    autumn = fires("30 * * * *", NY, utc(2025, 11, 2, 4), utc(2025, 11, 2, 8))
    assert autumn == [utc(2025, 11, 2, 4, 30), utc(2025, 11, 2, 5, 30), utc(2025, 11, 2, 6, 30), utc(2025, 11, 2, 7, 30)]
    spring = fires("0 * * * *", NY, utc(2025, 3, 9, 5), utc(2025, 3, 9, 9))
    assert local(spring, NY) == ["03-09 01:00 EST", "03-09 03:00 EDT", "03-09 04:00 EDT", "03-09 05:00 EDT"]


def test_london_both_changes() -> None:
    london = "Europe/London"
    spring = fires("30 1 * * *", london, utc(2025, 3, 29), utc(2025, 4, 1))  # 01:00 GMT -> 02:00 BST on 30 March
    assert local(spring, london) == ["03-29 01:30 GMT", "03-30 02:30 BST", "03-31 01:30 BST"]
    autumn = fires("30 1 * * *", london, utc(2025, 10, 25), utc(2025, 10, 28))  # 02:00 BST -> 01:00 GMT on 26 October
    assert local(autumn, london) == ["10-25 01:30 BST", "10-26 01:30 BST", "10-27 01:30 GMT"]
    assert autumn[1] == utc(2025, 10, 26, 0, 30)


def test_sydney_both_changes() -> None:
    sydney = "Australia/Sydney"
    autumn = fires("30 2 * * *", sydney, utc(2025, 4, 4), utc(2025, 4, 7))  # 03:00 AEDT -> 02:00 AEST on 6 April
    assert local(autumn, sydney) == ["04-05 02:30 AEDT", "04-06 02:30 AEDT", "04-07 02:30 AEST"]
    spring = fires("30 2 * * *", sydney, utc(2025, 10, 3), utc(2025, 10, 6))  # 02:00 AEST -> 03:00 AEDT on 5 October
    assert local(spring, sydney) == ["10-04 02:30 AEST", "10-05 03:30 AEDT", "10-06 02:30 AEDT"]


def test_kolkata_has_no_dst_and_a_half_hour_offset() -> None:
    times = fires("0 7 * * *", "Asia/Kolkata", utc(2025, 3, 7), utc(2025, 3, 12))
    assert times == [utc(2025, 3, d, 1, 30) for d in range(7, 12)]
    assert fires("0 7 * * *", "Asia/Kolkata", utc(2025, 11, 1, 2), utc(2025, 11, 3, 1)) == [utc(2025, 11, 2, 1, 30)]


def test_fire_times_is_start_exclusive_end_inclusive_and_splits_add_up() -> None:
    assert fires("0 7 * * *", "UTC", utc(2025, 1, 1, 7), utc(2025, 1, 2, 7)) == [utc(2025, 1, 2, 7)]
    cases = [
        ("30 2 * * *", NY, utc(2025, 3, 8, 12), utc(2025, 3, 10, 12)),
        ("30 1 * * *", NY, utc(2025, 11, 1, 12), utc(2025, 11, 3, 12)),
        ("*/30 * * * *", NY, utc(2025, 11, 2, 3), utc(2025, 11, 2, 9)),
        ("15 1,2 * * *", "Europe/London", utc(2025, 3, 29, 22), utc(2025, 3, 30, 4)),
    ]
    for cron, tz, start, end in cases:
        whole = fires(cron, tz, start, end)
        assert whole == sorted(set(whole)), cron
        moment = start
        while moment < end:
            moment += dt.timedelta(minutes=10)
            assert fires(cron, tz, start, moment) + fires(cron, tz, moment, end) == whole, (cron, moment)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        fire_times(Schedule(cron="0 7 * * *"), dt.datetime(2025, 1, 1), utc(2025, 1, 2))


# --- cron's meaning where APScheduler 3 differs ------------------------------------------------------


def weekdays(cron: str) -> list[str]:
    return [t.strftime("%a") for t in fires(cron, "UTC", utc(2025, 3, 9), utc(2025, 3, 16))]  # Sun 9 .. Sat 15


def test_day_of_week_numbers_are_crons_sunday_first() -> None:
    # APScheduler 3's from_crontab would read these with 0 = Monday.
    assert weekdays("0 7 * * 1-5") == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert weekdays("0 7 * * 0") == ["Sun"]
    assert weekdays("0 7 * * 6,0") == ["Sun", "Sat"]
    assert weekdays("0 7 * * */2") == ["Sun", "Tue", "Thu", "Sat"]
    assert weekdays("0 7 * * mon-fri") == ["Mon", "Tue", "Wed", "Thu", "Fri"]


def test_day_of_week_seven_is_sunday_and_bad_ranges_are_errors() -> None:
    trigger = CrontabTrigger("0 7 * * 7")  # cron allows 7; the config validator does not (yet)
    assert trigger.next_after(utc(2025, 3, 10)) == utc(2025, 3, 16, 7)
    assert CrontabTrigger("0 7 * * 5-7").next_after(utc(2025, 3, 15, 8)) == utc(2025, 3, 16, 7)
    with pytest.raises(ValueError, match="earlier to the later"):
        CrontabTrigger("0 7 * * 5-1")
    with pytest.raises(ValueError, match="not a day of the week"):
        CrontabTrigger("0 7 * * 8")


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    times = fires("0 7 1 * 1", "UTC", utc(2025, 3, 1), utc(2025, 4, 8))
    assert [t.strftime("%a %d") for t in times] == ["Sat 01", "Mon 03", "Mon 10", "Mon 17", "Mon 24", "Mon 31", "Tue 01", "Mon 07"]


# --- catch-up -------------------------------------------------------------------------------------


DAILY_NY = Schedule(cron="0 7 * * *", timezone=NY)


def test_catch_up_after_downtime_over_three_fire_times_is_the_latest() -> None:
    last = utc(2025, 3, 7, 12)  # fired Fri 07:00 EST, then down until Mon 09:00 EDT
    assert due_catch_up(DAILY_NY, last, utc(2025, 3, 10, 13)) == utc(2025, 3, 10, 11)


def test_no_catch_up_without_state_when_off_or_nothing_missed() -> None:
    assert due_catch_up(DAILY_NY, None, utc(2025, 3, 10, 13)) is None
    off = Schedule(cron="0 7 * * *", timezone=NY, catch_up=False)
    assert due_catch_up(off, utc(2025, 3, 7, 12), utc(2025, 3, 10, 13)) is None
    assert due_catch_up(DAILY_NY, utc(2025, 3, 10, 11), utc(2025, 3, 10, 13)) is None
    assert due_catch_up(DAILY_NY, utc(2025, 3, 10, 11, 0, 0, 5), utc(2025, 3, 10, 13)) is None  # fired a moment late
    assert due_catch_up(DAILY_NY, utc(2025, 3, 9, 11), utc(2025, 3, 10, 11)) == utc(2025, 3, 10, 11)  # now is a fire time


def test_catch_up_after_a_long_downtime_is_quick() -> None:
    minutely = Schedule(cron="* * * * *")
    assert due_catch_up(minutely, utc(2024, 1, 1), utc(2025, 1, 1, 0, 0, 30)) == utc(2025, 1, 1)
    leap_day = Schedule(cron="0 7 29 2 *", timezone=NY)
    assert due_catch_up(leap_day, utc(2021, 1, 1), utc(2025, 3, 1)) == utc(2024, 2, 29, 12)


# --- the scheduler --------------------------------------------------------------------------------


class FakeExecute:
    """Stands in for the real `execute`: records calls and writes Run rows like a run would."""

    def __init__(self, db: SystemDB, project: str) -> None:
        self.db = db
        self.project = project
        self.calls: list[tuple[str, str]] = []
        self.gates: dict[str, threading.Event] = {}  # pipeline -> wait for this before finishing
        self.statuses: dict[str, str] = {}  # pipeline -> status to return (default success)
        self.started: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.running: set[str] = set()
        self.max_parallel_same = 0
        self._lock = threading.Lock()

    def __call__(self, pipeline: str, trigger: str) -> str:
        with self._lock:
            assert pipeline not in self.running, f"two runs of {pipeline} at once"
            self.running.add(pipeline)
            self.calls.append((pipeline, trigger))
        with self.db.session() as session:
            run = Run(project=self.project, pipeline=pipeline, status="running", trigger=trigger, started_at=dt.datetime.now(UTC))
            session.add(run)
            session.commit()
        self.started[pipeline].set()
        gate = self.gates.get(pipeline)
        if gate is not None:
            assert gate.wait(WAIT), f"{pipeline} held too long"
        status = self.statuses.get(pipeline, "success")
        with self.db.session() as session:
            run.status, run.finished_at = status, dt.datetime.now(UTC)
            session.merge(run)
            session.commit()
        with self._lock:
            self.running.discard(pipeline)
        return status

    def hold(self, pipeline: str) -> threading.Event:
        self.gates[pipeline] = threading.Event()
        return self.gates[pipeline]


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SystemDB]:
    db = SystemDB(f"sqlite:///{tmp_path / 'system.db'}")
    yield db
    db.close()


def project(tmp_path: Path, pipelines: dict[str, Any]) -> LoadedProject:
    config = Project.model_validate({"name": "acme", "pipelines": pipelines})
    return LoadedProject(root=tmp_path, file=tmp_path / "headwater.yml", config=config)


@pytest.fixture
def scheduler_for(tmp_path: Path, db: SystemDB) -> Iterator[Any]:
    made: list[Scheduler] = []

    def make(pipelines: dict[str, Any], *, now: dt.datetime = MONDAY_1PM, workers: int = 2) -> tuple[Scheduler, FakeExecute, Clock]:
        execute = FakeExecute(db, "acme")
        clock = Clock(now)
        scheduler = Scheduler(project(tmp_path, pipelines), db, execute, clock=clock, workers=workers)
        made.append(scheduler)
        return scheduler, execute, clock

    yield make
    for scheduler in made:
        for gate in getattr(scheduler._execute, "gates", {}).values():
            gate.set()
        scheduler.shutdown(wait=True)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="headwater.scheduler")
    return caplog


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "headwater.scheduler"]


def state(db: SystemDB, pipeline: str) -> dt.datetime | None:
    with db.session() as session:
        row = session.get(ScheduleState, ("acme", pipeline))
        return row.last_fire_time if row else None


def set_state(db: SystemDB, pipeline: str, last_fire: dt.datetime) -> None:
    with db.session() as session:
        session.merge(ScheduleState(project="acme", pipeline=pipeline, last_fire_time=last_fire))
        session.commit()


DAILY = {"schedule": {"cron": "0 7 * * *", "timezone": NY}}


def test_the_apscheduler_job_uses_the_tested_trigger_and_settings(scheduler_for: Any) -> None:
    scheduler, _, _ = scheduler_for({"daily": DAILY, "adhoc": {}})
    scheduler.start()  # APScheduler applies its job defaults when it starts
    job = scheduler._aps.get_job("schedule:daily")
    assert isinstance(job.trigger, CrontabTrigger)
    assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 300)
    assert scheduler._aps.get_job("schedule:adhoc") is None
    # the trigger, driven the way APScheduler drives it, gives exactly fire_times
    start, end = utc(2025, 10, 30), utc(2025, 11, 5)
    chain, fire = [], job.trigger.get_next_fire_time(None, start)
    while fire is not None and fire <= end:
        chain.append(fire.astimezone(UTC))
        fire = job.trigger.get_next_fire_time(fire, end)
    assert chain == fire_times(DAILY_NY, start, end)


def test_next_runs_is_the_next_seven_local_as_utc(scheduler_for: Any) -> None:
    pipelines = {"daily": DAILY, "india": {"schedule": {"cron": "0 7 * * *", "timezone": "Asia/Kolkata"}}, "adhoc": {}}
    scheduler, _, clock = scheduler_for(pipelines, now=utc(2025, 3, 8, 13))  # Sat 08:00 EST
    assert scheduler.next_runs() == {"daily": utc(2025, 3, 9, 11), "india": utc(2025, 3, 9, 1, 30)}  # Sunday is EDT
    assert all(t is not None and t.tzinfo is UTC for t in scheduler.next_runs().values())
    clock.now = utc(2025, 3, 9, 11)  # exactly at the fire time: the next one
    assert scheduler.next_runs()["daily"] == utc(2025, 3, 10, 11)


def test_manual_trigger_runs_once_and_a_second_is_refused_while_running(scheduler_for: Any, db: SystemDB, logs: Any) -> None:
    scheduler, execute, _ = scheduler_for({"daily": DAILY})
    gate = execute.hold("daily")
    assert scheduler.trigger("daily") is True
    assert execute.started["daily"].wait(WAIT)
    assert scheduler.status() == {"daily": "running"}
    assert scheduler.trigger("daily") is False
    gate.set()
    assert scheduler.wait_idle(WAIT)
    assert execute.calls == [("daily", "manual")]
    assert state(db, "daily") is None  # a manual run is not a fire of the schedule
    assert any("daily" in m and "dropped" in m and "already running" in m for m in messages(logs))
    with pytest.raises(KeyError):
        scheduler.trigger("nope")


def test_a_fire_persists_its_time_and_a_fire_while_running_is_dropped(scheduler_for: Any, db: SystemDB, logs: Any) -> None:
    scheduler, execute, clock = scheduler_for({"daily": DAILY})
    gate = execute.hold("daily")
    scheduler._fire("daily")
    assert execute.started["daily"].wait(WAIT)
    assert state(db, "daily") == clock.now
    clock.now += dt.timedelta(days=1)
    scheduler._fire("daily")  # the next day's fire comes while the first run still runs
    gate.set()
    assert scheduler.wait_idle(WAIT)
    assert execute.calls == [("daily", "schedule")]
    assert state(db, "daily") == utc(2025, 3, 10, 13)
    assert any(m.startswith("pipeline daily: schedule run dropped") and "already running" in m for m in messages(logs))
    assert any(m.startswith("pipeline daily: schedule run queued (fired by schedule") for m in messages(logs))


def test_a_fire_while_queued_is_dropped_and_a_slow_pipeline_does_not_block_another(scheduler_for: Any, logs: Any) -> None:
    scheduler, execute, _ = scheduler_for({"slow": DAILY, "quick": DAILY, "other": DAILY}, workers=2)
    gate = execute.hold("slow")
    scheduler._fire("slow")
    assert execute.started["slow"].wait(WAIT)
    scheduler._fire("quick")
    assert execute.started["quick"].wait(WAIT)  # runs while slow still runs
    other_gate = execute.hold("other")
    scheduler._fire("other")
    assert execute.started["other"].wait(WAIT)
    # both workers are busy now: a run of quick waits in the queue, and a second one is refused
    execute.started["quick"].clear()
    quick_gate = execute.hold("quick")
    assert scheduler.trigger("quick") is True
    assert scheduler.status()["quick"] == "queued"
    assert scheduler.trigger("quick") is False
    gate.set()
    other_gate.set()
    quick_gate.set()
    assert scheduler.wait_idle(WAIT)
    assert sorted(execute.calls) == [("other", "schedule"), ("quick", "manual"), ("quick", "schedule"), ("slow", "schedule")]
    assert any(m.startswith("pipeline quick: manual run dropped") and "already queued" in m for m in messages(logs))


def test_first_start_records_state_without_catching_up(scheduler_for: Any, db: SystemDB, logs: Any) -> None:
    scheduler, execute, clock = scheduler_for({"daily": DAILY})
    scheduler.start()
    assert scheduler.wait_idle(WAIT)
    assert execute.calls == []
    assert state(db, "daily") == clock.now
    assert any("daily" in m and "first start" in m for m in messages(logs))


def test_start_after_downtime_queues_one_catch_up_run(scheduler_for: Any, db: SystemDB, logs: Any) -> None:
    set_state(db, "daily", utc(2025, 3, 7, 12))  # fired Fri 07:00; down over Sat, Sun and Mon 07:00
    set_state(db, "off", utc(2025, 3, 7, 12))
    set_state(db, "fresh", utc(2025, 3, 10, 11))  # fired today at 07:00 already
    off = {"schedule": {"cron": "0 7 * * *", "timezone": NY, "catch_up": False}}
    scheduler, execute, clock = scheduler_for({"daily": DAILY, "off": off, "fresh": DAILY}, now=utc(2025, 3, 10, 13))
    scheduler.start()
    assert scheduler.wait_idle(WAIT)
    assert execute.calls == [("daily", "catch_up")]
    assert state(db, "daily") == clock.now
    assert state(db, "off") == utc(2025, 3, 7, 12)
    log = messages(logs)
    assert any(m.startswith("pipeline daily: catch_up run queued") and "2025-03-10T11:00:00+00:00" in m and "catching up once" in m for m in log)
    assert any(m.startswith("pipeline off: missed fire times from 2025-03-08T12:00:00+00:00") and "skipping" in m for m in log)
    assert any(m.startswith("pipeline fresh: no fire time missed") for m in log)
    with pytest.raises(RuntimeError):
        scheduler.start()


def test_a_fire_missed_while_running_late_catches_up_once(scheduler_for: Any, logs: Any) -> None:
    off = {"schedule": {"cron": "0 7 * * *", "timezone": NY, "catch_up": False}}
    scheduler, execute, _ = scheduler_for({"daily": DAILY, "off": off})
    for job_id in ("schedule:daily", "schedule:off"):
        scheduler._on_job_event(JobExecutionEvent(EVENT_JOB_MISSED, job_id, "default", utc(2025, 3, 10, 11)))
    assert scheduler.wait_idle(WAIT)
    assert execute.calls == [("daily", "catch_up")]
    assert any(m.startswith("pipeline off: fire at 2025-03-10T11:00:00+00:00 was missed") for m in messages(logs))


def test_apscheduler_calls_the_job_when_it_is_due(scheduler_for: Any, db: SystemDB) -> None:
    scheduler, execute, clock = scheduler_for({"daily": DAILY})
    scheduler.start()
    scheduler._aps.modify_job("schedule:daily", next_run_time=dt.datetime.now(UTC))  # as if 07:00 had come
    assert execute.started["daily"].wait(WAIT)
    assert scheduler.wait_idle(WAIT)
    assert execute.calls == [("daily", "schedule")]
    assert state(db, "daily") == clock.now
    assert scheduler._aps.get_job("schedule:daily").next_run_time > dt.datetime.now(UTC)


def test_dependents_run_only_when_all_their_after_pipelines_succeeded(scheduler_for: Any, logs: Any) -> None:
    scheduler, execute, _ = scheduler_for({"a": {}, "b": {}, "c": {"after": ["a", "b"]}, "d": {"after": ["c"]}})

    def run(pipeline: str) -> None:
        assert scheduler.trigger(pipeline)
        assert scheduler.wait_idle(WAIT)

    run("a")
    assert execute.calls == [("a", "manual")]  # b never succeeded: c waits
    assert any(m == "pipeline c: not triggered after a: waiting for a newer success of b" for m in messages(logs))
    run("b")
    assert execute.calls[1:] == [("b", "manual"), ("c", "after:b"), ("d", "after:c")]
    run("a")
    assert execute.calls[4:] == [("a", "manual")]  # b's success is older than c's last run
    execute.statuses["b"] = "failed"
    run("b")
    assert execute.calls[5:] == [("b", "manual")]  # failed: nothing after it runs
    del execute.statuses["b"]
    run("b")
    assert execute.calls[6:] == [("b", "manual"), ("c", "after:b"), ("d", "after:c")]
    assert any(m.startswith("pipeline c: after:b run queued (all of a, b succeeded)") for m in messages(logs))


def test_a_dependent_that_was_running_runs_again_when_it_finishes(scheduler_for: Any, logs: Any) -> None:
    scheduler, execute, _ = scheduler_for({"a": {}, "c": {"after": ["a"]}})
    gate = execute.hold("c")
    assert scheduler.trigger("c")
    assert execute.started["c"].wait(WAIT)
    assert scheduler.trigger("a")  # a succeeds while c still runs on a's older data
    execute.started["a"].wait(WAIT)
    while "a" in scheduler.status():
        threading.Event().wait(0.01)
    assert execute.calls == [("c", "manual"), ("a", "manual")]
    gate.set()
    assert scheduler.wait_idle(WAIT)
    assert execute.calls == [("c", "manual"), ("a", "manual"), ("c", "after:a")]
    assert any(m.startswith("pipeline c: a succeeded while it is running") for m in messages(logs))


def test_an_execute_that_raises_counts_as_failed(scheduler_for: Any, logs: Any) -> None:
    def boom(pipeline: str, trigger: str) -> str:
        raise RuntimeError("child process could not start")

    scheduler, _, _ = scheduler_for({"a": {}, "c": {"after": ["a"]}})
    scheduler._execute = boom
    assert scheduler.trigger("a")
    assert scheduler.wait_idle(WAIT)
    assert scheduler.status() == {}
    assert scheduler.trigger("a")  # not stuck as "running"
    assert scheduler.wait_idle(WAIT)
    assert any(m == "pipeline a: manual run finished: failed" for m in messages(logs))


def test_shutdown_waits_for_running_runs_and_drops_queued_ones(scheduler_for: Any, db: SystemDB, logs: Any) -> None:
    scheduler, execute, _ = scheduler_for({"a": DAILY, "b": DAILY}, workers=1)
    scheduler.start()
    gate = execute.hold("a")
    assert scheduler.trigger("a")
    assert execute.started["a"].wait(WAIT)
    assert scheduler.trigger("b")  # waits for the only worker
    stopper = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True})
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive()  # still waiting for a
    assert scheduler.trigger("a") is False
    gate.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert execute.calls == [("a", "manual")]
    with db.session() as session:
        assert session.scalars(select(Run.status).where(Run.pipeline == "a")).all() == ["success"]
    assert not scheduler._aps.running
    assert any(m == "pipeline b: manual run not started: the scheduler is stopping" for m in messages(logs))


def test_shutdown_without_waiting_returns_at_once(scheduler_for: Any) -> None:
    scheduler, execute, _ = scheduler_for({"a": {}})
    gate = execute.hold("a")
    assert scheduler.trigger("a")
    assert execute.started["a"].wait(WAIT)
    scheduler.shutdown(wait=False)
    assert execute.running == {"a"}
    stopper = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True})
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # a second shutdown may still wait
    gate.set()
    stopper.join(WAIT)
    assert not stopper.is_alive() and execute.running == set()


def test_run_worker_catches_up_and_stops_cleanly_on_sigterm(tmp_path: Path, db: SystemDB, logs: Any) -> None:
    loaded = project(tmp_path, {"daily": {"schedule": {"cron": "0 7 * * *"}}})
    set_state(db, "daily", dt.datetime.now(UTC) - dt.timedelta(days=2))
    execute = FakeExecute(db, "acme")
    gate = execute.hold("daily")

    def stop_during_the_run() -> None:
        if execute.started["daily"].wait(WAIT):
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(0.2)
        gate.set()

    previous = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=stop_during_the_run, daemon=True).start()
    run_worker(loaded, db, execute)
    assert execute.calls == [("daily", "catch_up")]
    assert execute.running == set()  # the run finished before run_worker returned
    assert signal.getsignal(signal.SIGTERM) == previous
    assert "received SIGTERM: stopping the scheduler" in messages(logs)
