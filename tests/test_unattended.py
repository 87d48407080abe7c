"""Pipelines trusted unattended: checks gate publishing, one alert per incident, runs killed or
timed out leave published data intact, transient failures retried, one run at a time."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
import yaml
from cli_process import OutputLines
from demo_project import execute_source, make_project, published_rows, recent_runs_of
from loopback import smtp_server, webhook_server

from headwater.config import load_project
from headwater.orchestrate import supervise
from headwater.orchestrate.supervise import execute
from headwater.services.runs import get_run, log_lines
from headwater.system import open_system_db
from headwater.warehouse import ENGINES, Warehouse


def _edit_config(project, change) -> object:
    """Rewrite headwater.yml through ``change(dict)`` and reload the project."""
    path = project.root / "headwater.yml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_project(project.root)


def _published_state(project) -> tuple[str, str]:
    snapshot = Warehouse(project.root, project.config.warehouse).current_snapshot()
    return snapshot.name, hashlib.sha256(snapshot.read_bytes()).hexdigest()


def _fast(data: dict, **pipeline: object) -> None:
    """No waiting in tests: short backoff; other pipeline settings as given."""
    settings = data["pipelines"]["flake_rate"]
    settings["retries"] = {"attempts": 3, "backoff": "1s", "max_backoff": "2s"}
    settings.update(pipeline)


@pytest.fixture
def demo(tmp_path):
    project = make_project(tmp_path / "demo", 2_000)
    return _edit_config(project, _fast)


@pytest.fixture(params=["fresh", "warm"])
def starts(request):
    """Attempts as `headwater run` starts them (a fresh Python) and as the worker and the web server do
    (forked from the warm server): the supervisor must not be able to tell them apart."""
    if request.param == "warm":
        assert supervise.start_warm_attempts()
    yield request.param
    supervise.stop_warm_attempts()


def _with_alerts(project, mailbox, hooks):
    def change(data: dict) -> None:
        data["alerts"] = [
            {"type": "email", "to": ["team@example.org"], "smtp": {"host": "127.0.0.1", "port": mailbox.port, "security": "none", "from": "hw@example.org"}},
            {"type": "webhook", "url": hooks.url},
        ]
        data["web"] = {"base_url": "https://data.example.org"}

    return _edit_config(project, change)


def test_a_failing_dbt_test_alerts_once_and_publishes_nothing(demo):
    with smtp_server() as mailbox, webhook_server() as hooks:
        project = _with_alerts(demo, mailbox, hooks)
        assert execute(project, None, "schedule").status == "success"
        assert mailbox.messages == [] and hooks.posts == []  # success without an incident: silence
        before, rows_before = _published_state(project), published_rows(project)

        execute_source(project, "UPDATE signup_statuses SET status = 'Maybe' WHERE signup_status_id IN (1, 2, 3)")
        first = execute(project, None, "schedule")
        assert (first.status, first.attempts) == ("failed", 1)  # a failed test is never retried
        assert _published_state(project) == before and published_rows(project) == rows_before
        assert len(mailbox.messages) == 1 and len(hooks.posts) == 1
        mail = mailbox.messages[0]
        body = mail.get_payload(decode=True).decode()
        assert "flake_rate" in mail["Subject"] and "dbt:build" in mail["Subject"]
        assert f"headwater logs {first.run_id}" in body and f"https://data.example.org/runs/{first.run_id}" in body
        assert "accepted_values" in body and "accepted_values" in hooks.posts[0]["text"]

        # the failing rows are kept with the run, as a sample
        db = open_system_db(project)
        try:
            checks = {c.name: c for c in get_run(db, project.config.name, first.run_id).checks}
        finally:
            db.close()
        failed = [c for c in checks.values() if c.status == "fail"]
        assert len(failed) == 1 and failed[0].kind == "dbt_test" and "accepted_values" in failed[0].name
        assert ["Maybe", 3] in json.loads(failed[0].sample)["rows"]  # accepted_values: one row per bad value, with its count

        assert execute(project, None, "schedule").status == "failed"
        assert len(mailbox.messages) == 1 and len(hooks.posts) == 1  # one message per incident

        execute_source(project, "UPDATE signup_statuses SET status = 'Completed' WHERE status = 'Maybe'")
        assert execute(project, None, "schedule").status == "success"
        assert len(mailbox.messages) == 2 and "recovered" in mailbox.messages[1]["Subject"]
        assert len(hooks.posts) == 2 and "recovered" in hooks.posts[1]["text"]


def test_a_failing_reconciliation_keeps_published_data_and_alerts(demo):
    with smtp_server() as mailbox, webhook_server() as hooks:
        project = _with_alerts(demo, mailbox, hooks)
        assert execute(project, None, "cli").status == "success"
        before = _published_state(project)

        # the source reports one sign-up more for a region than the mart can see
        def extra_signup(data: dict) -> None:
            check = data["pipelines"]["flake_rate"]["checks"][0]
            check["left"]["sql"] = check["left"]["sql"].replace("count(*)", "count(*) + (r.region_id = 1)")

        project = _edit_config(project, extra_signup)
        outcome = execute(project, None, "cli")
        assert outcome.status == "failed" and outcome.attempts == 1
        assert _published_state(project) == before
        run = recent_runs_of(project)[0]
        assert "signups_by_region_match_source" in run.error
        db = open_system_db(project)
        try:
            check = next(c for c in get_run(db, project.config.name, run.id).checks if c.name == "signups_by_region_match_source")
        finally:
            db.close()
        assert check.status == "fail" and json.loads(check.sample)["rows"]
        assert len(mailbox.messages) == 1 and "signups_by_region_match_source" in mailbox.messages[0].get_payload(decode=True).decode()
        assert len(hooks.posts) == 1


def _child(project, attempt: int = 1) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "headwater.orchestrate.child", str(project.root), "flake_rate", "cli", str(attempt), "0"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_step(project, step: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it reached the step"
        runs = recent_runs_of(project)
        if runs and runs[0].status == "running" and any(s.name == step and s.status == "running" for s in runs[0].steps):
            return
        time.sleep(0.05)
    raise AssertionError(f"the run never reached {step}")


def _wait_for_log(project, pattern: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Wait until the newest run logs a line matching ``pattern`` (a regular expression)."""
    run_id = recent_runs_of(project)[0].id
    deadline = time.monotonic() + timeout
    db = open_system_db(project)
    try:
        while not any(re.search(pattern, line.message) for line in log_lines(db, run_id)):
            assert process.poll() is None, f"run {run_id} ended before it logged a line like {pattern!r}"
            assert time.monotonic() < deadline, f"run {run_id} logged no line like {pattern!r} within {timeout:.0f}s"
            time.sleep(0.05)
    finally:
        db.close()


def test_sigkill_mid_build_leaves_published_data_and_the_next_run_succeeds(demo):
    assert execute(demo, None, "cli").status == "success"
    before = _published_state(demo)
    process = _child(demo)
    _wait_for_step(demo, "dbt:build", process)
    _wait_for_log(demo, r"\d+ of \d+ OK created", process)  # inside dbt's work: a model built, others to come
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert [s.status for s in recent_runs_of(demo)[0].steps if s.name == "dbt:build"] == ["running"]  # killed mid-build
    assert _published_state(demo) == before
    assert recent_runs_of(demo)[0].status == "running"  # nobody could record the death...

    outcome = execute(demo, None, "cli")
    assert outcome.status == "success"
    killed = recent_runs_of(demo)[1]
    assert killed.status == "abandoned" and "stopped before the run finished" in killed.error  # ...until the next run
    assert _published_state(demo)[0] != before[0]


SUPERVISOR = """
import sys
from pathlib import Path
from headwater.config import load_project
from headwater.orchestrate import supervise

if __name__ == "__main__":
    if sys.argv[2] == "warm":
        assert supervise.start_warm_attempts()
    supervise.execute(load_project(Path(sys.argv[1])), None, "schedule")
"""


def _gone(pid: int, timeout: float) -> bool:
    """Whether ``pid`` has ended (or is a zombie nobody reaped yet) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("start", ["fresh", "warm"])
def test_an_attempt_dies_with_its_supervisor_and_publishes_nothing(demo, start, tmp_path):
    """`headwater run` (or a worker) killed alone: its attempt must not run on and publish. Fresh, the
    attempt is the supervisor's child; warm, the warm server's, which exits when the supervisor dies."""
    script = tmp_path / "supervisor.py"
    script.write_text(SUPERVISOR)
    supervisor = subprocess.Popen([sys.executable, str(script), str(demo.root), start], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_step(demo, "dbt:build", supervisor)
        attempt = recent_runs_of(demo)[0].pid
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
        assert _gone(attempt, timeout=20), "the attempt ran on after its supervisor was killed"
    finally:
        supervisor.kill()
    assert Warehouse(demo.root, demo.config.warehouse).current_snapshot() is None  # nothing published
    assert recent_runs_of(demo)[0].status == "running"
    assert execute(demo, None, "cli").status == "success"
    assert recent_runs_of(demo)[1].status == "abandoned"


def test_the_warm_server_builds_what_every_dbt_start_would():
    from headwater.orchestrate import warm

    # each class dbt validates against on start, found and its schema cached (a dbt upgrade that
    # renames one would silently cost every attempt again: this says which)
    common = [f"{m}.{c}" for m, classes in warm.SCHEMAS.items() for c in classes]
    assert warm.WARMED[: len(common)] == common
    # then the credentials of the warehouses' dbt adapters already imported (the warm server imports its
    # projects' first: tests/test_warm_adapters.py); in this process, whichever an earlier test loaded
    adapters = sorted(a for a in {e.dbt_adapter for e in ENGINES.values()} if a in sys.modules)
    assert warm.WARMED[len(common) :] == [f"{a}.{sys.modules[a].Plugin.credentials.__name__}" for a in adapters]
    assert set(warm.MODULES) <= set(sys.modules)


def _process_status(pid: int) -> tuple[int, int, int]:
    """(parent, process group, session) of a live process, from /proc."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2]), int(fields[3])


def test_an_attempt_is_a_process_of_its_own_session_either_way(demo, starts):
    outcomes = []
    runner = threading.Thread(target=lambda: outcomes.append(execute(demo, None, "schedule")))
    runner.start()
    seen = None
    while runner.is_alive() and seen is None:
        running = [r for r in recent_runs_of(demo) if r.status == "running"]
        if running:
            with contextlib.suppress(FileNotFoundError):
                seen = _process_status(running[0].pid), running[0].pid
        time.sleep(0.01)
    runner.join()
    assert seen is not None, "never saw the attempt running"
    (parent, group, session), pid = seen
    assert group == pid and session == pid  # a stop reaches everything it started
    if starts == "fresh":
        assert parent == os.getpid()
    else:  # forked from the warm server, not from this (threaded) process
        assert parent not in (os.getpid(), 1)
    assert outcomes[0].status == "success"

    # A failing attempt: its exit code and what it printed reach the supervisor.
    (demo.root / "models" / "marts" / "broken.sql").write_text("select * from no_such_relation\n")
    failed = execute(demo, None, "cli")
    assert (failed.status, failed.exit_code, failed.attempts, failed.timed_out) == ("failed", 1, 1, False)
    assert "broken" in failed.stderr and "Fix:" in failed.stderr, failed.stderr


def test_a_run_over_its_timeout_is_stopped_and_fails(demo, starts):
    project = _edit_config(demo, lambda d: _fast(d, timeout="2s"))
    outcome = execute(project, None, "cli")
    assert outcome.status == "failed" and outcome.timed_out  # the CLI then prints the recorded error itself
    run = recent_runs_of(project)[0]
    assert run.status == "failed" and "timeout" in run.error
    assert Warehouse(project.root, project.config.warehouse).current_snapshot() is None  # nothing half-published


def test_a_locked_source_is_transient_and_retried(demo, starts):
    holder = sqlite3.connect(demo.root / "data" / "campaign.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program is writing to the source
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        holder.execute("ROLLBACK")  # ...and finishes while we back off

    outcome = execute(demo, None, "schedule", sleep=sleep)
    holder.close()
    assert (outcome.status, outcome.attempts) == ("success", 2) and naps == [1.0]
    first, second = sorted(recent_runs_of(demo), key=lambda r: r.id)
    assert first.status == "failed" and "locked" in first.error and second.attempt == 2


def test_a_second_run_queues_behind_the_first(demo):
    warehouse = Warehouse(demo.root, demo.config.warehouse)
    lock = warehouse.writer_lock()
    lock.__enter__()
    release = threading.Timer(2.0, lambda: lock.__exit__(None, None, None))
    release.start()
    started = time.monotonic()
    outcome = execute(demo, None, "cli")
    assert (outcome.status, outcome.attempts) == ("success", 1)  # queued, not failed and retried
    assert time.monotonic() - started >= 2.0


def test_two_triggers_of_one_pipeline_never_run_at_once(demo, starts):
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(execute(demo, None, "schedule"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = sorted(recent_runs_of(demo), key=lambda r: r.started_at)
    assert [o.status for o in outcomes] == ["success", "success"] and len(runs) == 2
    assert runs[0].finished_at <= runs[1].started_at  # the second waited for the first


def test_logs_command_prints_the_run(demo):
    outcome = execute(demo, None, "cli")
    result = subprocess.run([sys.executable, "-m", "headwater.cli.main", "logs", str(outcome.run_id), "-p", str(demo.root)], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "published flake_rate_weekly" in result.stdout and f"Run {outcome.run_id}: success" in result.stdout
    db = open_system_db(demo)
    try:
        lines = log_lines(db, outcome.run_id)
        assert len(lines) == len(re.findall(r"^\d\d:\d\d:\d\d ", result.stdout, re.M))  # one printed entry per log line
    finally:
        db.close()


EXISTING_DBT = {
    "dbt_project.yml": "name: shop\nprofile: shop_warehouse\nversion: '1.0'\nconfig-version: 2\nmodels:\n  shop:\n    marts:\n      +materialized: table\n",
    "models/staging/stg_orders.sql": "select id as order_id, customer, amount, status from {{ source('shop', 'orders') }}\n",
    "models/staging/sources.yml": "version: 2\nsources:\n  - name: shop\n    schema: raw_shop\n    tables: [{name: orders}]\n",
    "models/marts/revenue.sql": "select customer, sum(amount) as revenue from {{ ref('stg_orders') }} where status = 'paid' group by customer\n",
    "models/marts/schema.yml": "version: 2\nmodels:\n  - name: revenue\n    columns:\n      - name: customer\n        data_tests: [unique, not_null]\n",
    "snapshots/orders_history.sql": (
        "{% snapshot orders_history %}\n{{ config(target_schema='snapshots', unique_key='order_id', strategy='check', check_cols=['status']) }}\n"
        "select * from {{ ref('stg_orders') }}\n{% endsnapshot %}\n"
    ),
}


def test_an_existing_dbt_project_runs_unchanged(tmp_path):
    dbt_dir = tmp_path / "shop-dbt"
    for name, text in EXISTING_DBT.items():
        (dbt_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (dbt_dir / name).write_text(text)
    before = {p: p.read_bytes() for p in dbt_dir.rglob("*") if p.is_file()}
    root = tmp_path / "hw"
    root.mkdir()
    with sqlite3.connect(root / "shop.db") as con:
        con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, status TEXT)")
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", [(1, "ada", 10, "paid"), (2, "ada", 5, "paid"), (3, "bo", 7, "open")])
    (root / "headwater.yml").write_text("name: shop\nsources:\n  shop: {type: sqlite, path: shop.db}\ndbt:\n  project_dir: ../shop-dbt\npipelines:\n  nightly: {}\n")
    project = load_project(root)
    assert execute(project, None, "cli").status == "success"
    assert _revenue(project) == {"ada": 15.0}

    with sqlite3.connect(root / "shop.db") as con:
        con.execute("UPDATE orders SET status = 'paid' WHERE id = 3")
    assert execute(project, None, "cli").status == "success"
    assert _revenue(project) == {"ada": 15.0, "bo": 7.0}
    assert {p: p.read_bytes() for p in dbt_dir.rglob("*") if p.is_file()} == before  # not one file written into it
    with duckdb.connect(str(Warehouse(project.root, project.config.warehouse).build_path), read_only=True) as con:
        history = con.execute("SELECT order_id, status FROM snapshots.orders_history ORDER BY dbt_valid_from").fetchall()
    assert (3, "open") in history and (3, "paid") in history  # the snapshot kept both versions


def _revenue(project) -> dict[str, float]:
    snapshot = Warehouse(project.root, project.config.warehouse).current_snapshot()
    with duckdb.connect(str(snapshot), read_only=True) as con:
        return dict(con.execute("SELECT customer, revenue FROM revenue").fetchall())


def test_demo_project_declares_a_daily_pipeline_with_checks():
    from headwater.demo import TEMPLATE

    pipeline = yaml.safe_load((TEMPLATE / "headwater.yml").read_text())["pipelines"]["flake_rate"]
    assert pipeline["schedule"] == {"cron": "0 7 * * *", "timezone": "America/New_York"}
    assert {c["type"] for c in pipeline["checks"]} == {"reconcile", "freshness"}



# `headwater worker` with the scheduler's decisions printed: its log lines are how a test sees them.
LOGGED_WORKER = """
import logging, sys
from headwater.cli.main import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    main()
"""


def test_worker_catches_up_once_after_downtime(demo, tmp_path):
    import datetime as dt

    from headwater.system import ScheduleState

    db = open_system_db(demo)
    try:
        with db.session() as session:  # the last 07:00 run was three days ago: three fires were missed
            session.add(ScheduleState(project=demo.config.name, pipeline="flake_rate", last_fire_time=dt.datetime.now(dt.UTC) - dt.timedelta(days=3)))
            session.commit()
    finally:
        db.close()
    script = tmp_path / "worker.py"
    script.write_text(LOGGED_WORKER)
    worker = subprocess.Popen([sys.executable, str(script), "worker", "-p", str(demo.root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = OutputLines(worker)
    try:
        # Every catch-up the start decides on is queued (or dropped) before this line: none can come later.
        output.wait_for("scheduler running for project", seconds=120)
        output.wait_for("pipeline flake_rate: catch_up run finished: success", seconds=300)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        output.thread.join(10)
    log = output.text()
    assert worker.returncode == 0, log
    decided = [line for line in log.splitlines() if re.search(r"pipeline flake_rate: \S+ run (queued|dropped|not queued)", line)]
    assert len(decided) == 1 and "catch_up run queued" in decided[0], log  # once, not three times (nor three tries)
    runs = recent_runs_of(demo)
    assert [(r.trigger, r.status) for r in runs] == [("catch_up", "success")], log
    assert "flake_rate" in log and "0 7 * * *" in log


def test_logs_follow_streams_a_live_run_to_its_end(demo):
    process = _child(demo)
    _wait_for_step(demo, "sync:campaign", process)
    run_id = recent_runs_of(demo)[0].id
    follow = subprocess.run([sys.executable, "-m", "headwater.cli.main", "logs", str(run_id), "--follow", "-p", str(demo.root)], check=False, capture_output=True, text=True, timeout=120)
    assert process.wait(timeout=60) == 0
    assert follow.returncode == 0, follow.stderr
    assert "published flake_rate_weekly" in follow.stdout  # written after `logs` started following
    assert follow.stdout.rstrip().endswith(f"Run {run_id}: success")
