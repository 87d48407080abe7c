"""Several workers, one schedule: workers sharing a PostgreSQL system database (each with its own copy
of the project folder) never run one pipeline at once, run each scheduled fire exactly once, and a
worker that dies gives up its claim (system/claims.py). On SQLite a claim is always granted."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_process import OutputLines
from demo_project import make_project, recent_runs_of
from test_scheduler import FakeExecute, messages, project, utc

from headwater.config import load_project
from headwater.orchestrate.scheduler import Scheduler
from headwater.system import Run, SystemDB, claims

pytestmark = pytest.mark.postgres

EVERY_MINUTE = {"schedule": {"cron": "* * * * *", "timezone": "UTC"}}


@pytest.fixture
def pg_db(fresh_pg_database: str) -> Iterator[SystemDB]:
    db = SystemDB(fresh_pg_database)
    yield db
    db.close()


def _wait(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:.0f}s: {what}"
        time.sleep(0.05)


def test_a_claim_is_exclusive_across_connections_and_reentrant_in_its_thread(pg_db: SystemDB) -> None:
    with claims.claimed(pg_db, "acme", "daily") as ours:
        assert ours
        with claims.claimed(pg_db, "acme", "daily") as again:  # the supervised run inside the scheduler's claim
            assert again
        result: list[bool] = []

        def other_thread() -> None:
            with claims.claimed(pg_db, "acme", "daily", wait=0.3) as theirs:
                result.append(theirs)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert result == [False]
        assert "pid" in claims.holder(pg_db, "acme", "daily")  # who has it, for the log line
        with claims.claimed(pg_db, "acme", "weekly", wait=0) as other_pipeline:
            assert other_pipeline
    with claims.claimed(pg_db, "acme", "daily", wait=0) as free_again:
        assert free_again


def test_sqlite_claims_are_always_granted(tmp_path: Path) -> None:
    db = SystemDB(f"sqlite:///{tmp_path / 'system.db'}")
    try:
        with claims.claimed(db, "acme", "daily") as first, claims.claimed(db, "acme", "daily") as second:
            assert first and second and not claims.shared(db)
    finally:
        db.close()


def _schedulers(tmp_path: Path, db: SystemDB, now: dt.datetime) -> list[tuple[Scheduler, FakeExecute]]:
    made = []
    for host in ("a", "b"):  # two workers: their own folders, one system database
        folder = tmp_path / host
        folder.mkdir()
        execute = FakeExecute(db, "acme")
        made.append((Scheduler(project(folder, {"daily": EVERY_MINUTE}), db, execute, clock=lambda: now), execute))
    return made


def test_a_fire_run_by_one_worker_is_skipped_by_the_other(tmp_path: Path, pg_db: SystemDB, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="headwater.scheduler")
    (a, run_a), (b, run_b) = _schedulers(tmp_path, pg_db, utc(2025, 3, 10, 13, 0, 1))
    try:
        a._fire("daily")
        assert a.wait_idle(10)
        b._fire("daily")  # the same fire, seen late by the other worker: its run is over
        assert b.wait_idle(10)
        assert len(run_a.calls) == 1 and run_b.calls == []
        assert any("skipped: another worker ran it" in m for m in messages(caplog))
    finally:
        a.shutdown()
        b.shutdown()


def test_a_fire_is_skipped_while_another_worker_holds_the_claim(tmp_path: Path, pg_db: SystemDB, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="headwater.scheduler")
    (a, run_a), _ = _schedulers(tmp_path, pg_db, utc(2025, 3, 10, 13, 0, 1))
    try:
        with claims.claimed(pg_db, "acme", "daily"):  # another worker's run in progress
            a._fire("daily")
            assert a.wait_idle(10)
        assert run_a.calls == []
        assert any("skipped: another worker is running it" in m for m in messages(caplog))
    finally:
        a.shutdown()


# --- real worker processes ------------------------------------------------------------------------

# A worker process: the real scheduler (`run_worker`) with an execute that records a run and holds
# it until a gate file appears, so a test can kill the worker mid-run.
WORKER = """
import datetime as dt, logging, os, sys, time
from pathlib import Path
from headwater.config.model import LoadedProject, Project
from headwater.orchestrate.scheduler import run_worker
from headwater.system import Run, SystemDB

if __name__ == "__main__":
    url, folder, gate = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    config = Project.model_validate({"name": "acme", "pipelines": {"daily": {"schedule": {"cron": "* * * * *", "timezone": "UTC"}}}})
    project = LoadedProject(root=folder, file=folder / "headwater.yml", config=config)
    db = SystemDB(url)

    def execute(pipeline, trigger):
        with db.session() as session:
            run = Run(project="acme", pipeline=pipeline, status="running", trigger=trigger, started_at=dt.datetime.now(dt.UTC), pid=os.getpid())
            session.add(run)
            session.commit()
            print(f"executing run {run.id}", flush=True)
            while not gate.exists():
                time.sleep(0.05)
            run.status, run.finished_at = "success", dt.datetime.now(dt.UTC)
            session.commit()
        return "success"

    run_worker(project, db, execute)
"""


class Worker:
    def __init__(self, tmp_path: Path, name: str, url: str, gate: Path) -> None:
        folder = tmp_path / name
        folder.mkdir()
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        self.name = name
        self.process = subprocess.Popen([sys.executable, str(script), url, str(folder), str(gate)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = OutputLines(self.process)

    def text(self) -> str:
        return self.output.text()

    def count(self, text: str) -> int:
        return self.output.count(text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output.thread.join(10)


def _runs(db: SystemDB) -> list[Run]:
    with db.session() as session:
        return list(session.query(Run).order_by(Run.id))


def test_two_worker_processes_run_each_fire_once_and_a_killed_worker_releases_its_claim(tmp_path: Path, pg_db: SystemDB, fresh_pg_database: str) -> None:
    gate = tmp_path / "gate"
    workers = [Worker(tmp_path, name, fresh_pg_database, gate) for name in ("host-a", "host-b")]
    try:
        for worker in workers:
            _wait(lambda w=worker: w.count("scheduler running for project") == 1, 120, f"{worker.name} started:\n{worker.text()}")
        # The next minute's fire: exactly one worker runs it, the other finds it claimed.
        _wait(lambda: sum(w.count("executing run") for w in workers) == 1, 90, "one worker runs the fire:\n" + "\n".join(w.text() for w in workers))
        holder = next(w for w in workers if w.count("executing run"))
        other = next(w for w in workers if w is not holder)
        _wait(lambda: other.count("run skipped: another worker") == 1, 30, f"the other worker skips the fire:\n{other.text()}")
        assert [(r.trigger, r.status) for r in _runs(pg_db)] == [("schedule", "running")]

        holder.process.send_signal(signal.SIGKILL)  # dies mid-run, holding the claim
        holder.process.wait(timeout=30)
        # The following minute's fire: the survivor gets the claim (the server released the dead one's).
        _wait(lambda: other.count("executing run") == 1, 90, f"the survivor runs the next fire:\n{other.text()}")
        gate.touch()
        _wait(lambda: other.count("schedule run finished: success") == 1, 30, f"the survivor's run ends:\n{other.text()}")
        runs = _runs(pg_db)
        assert [(r.trigger, r.status) for r in runs] == [("schedule", "running"), ("schedule", "success")]
        assert runs[1].pid == other.process.pid
        assert runs[1].started_at - runs[0].started_at >= dt.timedelta(seconds=50)  # a fire a minute later, not the same one again
    finally:
        gate.touch()
        for worker in workers:
            worker.stop()


# --- `headwater run` while a worker runs the pipeline ------------------------------------------------


def _on_shared_db(root: Path, url: str, **pipeline: object) -> Any:
    path = root / "headwater.yml"
    data = yaml.safe_load(path.read_text())
    data["system"] = {"url": url}
    data["pipelines"]["flake_rate"].update(pipeline)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_project(root)


def _headwater_run(root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HEADWATER_NO_DAEMON": "1"}
    return subprocess.Popen([sys.executable, "-m", "headwater.cli.main", "run", "-p", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_headwater_run_waits_for_another_workers_run_of_the_pipeline_then_runs(tmp_path: Path, fresh_pg_database: str, pg_db: SystemDB) -> None:
    demo = _on_shared_db(make_project(tmp_path / "demo", 2_000).root, fresh_pg_database)
    with claims.claimed(pg_db, demo.config.name, "flake_rate"):  # another worker, another folder: its run in progress
        run = _headwater_run(demo.root)
        assert run.stderr is not None
        waiting = run.stderr.readline()
        assert "is being run by headwater" in waiting and "waiting for it to finish" in waiting, waiting
        assert recent_runs_of(demo) == []  # queued: nothing started
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, out + err
    assert [(r.trigger, r.status) for r in recent_runs_of(demo)] == [("cli", "success")]


def test_headwater_run_says_busy_after_its_timeout(tmp_path: Path, fresh_pg_database: str, pg_db: SystemDB) -> None:
    demo = _on_shared_db(make_project(tmp_path / "demo", 200).root, fresh_pg_database, timeout="2s")
    with claims.claimed(pg_db, demo.config.name, "flake_rate"):
        run = _headwater_run(demo.root)
        out, err = run.communicate(timeout=120)
    assert run.returncode == 3, out + err  # ExitCode.BUSY, as behind the writer lock
    assert "Another worker is running pipeline flake_rate" in err and "headwater runs" in err
    assert recent_runs_of(demo) == []


def test_a_run_another_worker_holds_is_not_marked_abandoned(pg_db: SystemDB) -> None:
    """A run holding the writer lock of its own folder knows nothing of other hosts' runs: only runs
    whose pipeline nobody claims (or its own pipeline, which its supervisor claims) are stale."""
    from headwater.orchestrate.recorder import abandon_stale_runs

    with pg_db.session() as session:
        for pipeline in ("daily", "elsewhere", "dead"):
            session.add(Run(project="acme", pipeline=pipeline, status="running", trigger="schedule", started_at=dt.datetime.now(dt.UTC)))
        session.commit()
    with claims.claimed(pg_db, "acme", "elsewhere"), claims.claimed(pg_db, "acme", "daily"):  # another host's live run; this run's own claim
        assert abandon_stale_runs(pg_db, "acme", current="daily") == 2
    with pg_db.session() as session:
        assert {r.pipeline: r.status for r in session.query(Run)} == {"daily": "abandoned", "elsewhere": "running", "dead": "abandoned"}
