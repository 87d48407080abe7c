"""The demo pipeline end to end: the published mart against an independent plain-Python computation,
week boundaries and time zones, and write-audit-publish when something fails."""

from __future__ import annotations

import datetime as dt
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from cli_process import OutputLines, cli_env
from demo_project import AS_OF, assert_matches_reference, campaign_db, execute_source, make_project, published_rows
from pg_warehouse import checksum
from pg_warehouse import rows as pg_rows
from reference import flake_rate_weekly
from sync_harness import random_seed, telling_the_seed, thread_rng
from warehouses import Target

from headwater.errors import ProjectBusy, RunFailed
from headwater.orchestrate import run_pipeline
from headwater.publish import PublishedData
from headwater.services.runs import get_run, recent_runs
from headwater.system import open_system_db
from headwater.warehouse import open_warehouse


@pytest.mark.parametrize(
    ("signups", "timezone"),
    [
        (2_000, "America/New_York"),
        (30_000, "America/New_York"),
        (30_000, "Asia/Kolkata"),  # a half-hour offset, east of UTC
        pytest.param(200_000, "America/Los_Angeles", marks=pytest.mark.slow),
    ],
)
def test_mart_equals_independent_computation(tmp_path, signups, timezone):
    project = make_project(tmp_path / "demo", signups, timezone=timezone)
    outcome = run_pipeline(project)
    assert outcome.run.status == "success"
    expected = flake_rate_weekly(campaign_db(project), timezone=timezone, today=AS_OF)
    assert_matches_reference(published_rows(project), expected)
    assert outcome.published["flake_rate_weekly"] == len(expected)
    # the report spans most of the year behind and the weeks ahead, with exactly one current week
    weeks = {key[0] for key in expected}
    assert min(weeks) <= AS_OF - dt.timedelta(days=300) and max(weeks) > AS_OF
    assert {k[0] for k, v in published_rows(project).items() if v["is_current_week"]} == {dt.date(2026, 11, 14)}


EDGE_ORGANIZER = "Edge Case Organizer"


def _add_edge_cases(db_path, timezone: str) -> dict[int, tuple[str, list[tuple[str, str]]]]:
    """Events at week boundaries and around DST changes, sign-ups with tied and many status changes.

    Returns signup_id -> (event local start, [(status, created_at UTC), ...]) for what was added.
    """
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    local_starts = {
        "fri-late": dt.datetime(2026, 3, 6, 23, 59),  # Friday night: the week of Sat 2026-02-28
        "sat-early": dt.datetime(2026, 3, 7, 0, 0),  # Saturday midnight: a new week
        "dst-start-fri": dt.datetime(2026, 3, 13, 23, 30),  # first Friday after clocks went forward
        "dst-end-sat": dt.datetime(2026, 10, 31, 0, 15),  # the Saturday before clocks go back
        "dst-end-fri": dt.datetime(2026, 11, 6, 23, 45),  # Friday night after clocks went back
    }
    added: dict[int, tuple[str, list[tuple[str, str]]]] = {}
    with sqlite3.connect(db_path) as con:
        region_id = con.execute("SELECT region_id FROM regions ORDER BY region_id LIMIT 1").fetchone()[0]
        location_id = con.execute("SELECT location_id FROM locations WHERE region_id = ? LIMIT 1", (region_id,)).fetchone()[0]
        organizer_id = con.execute("SELECT max(organizer_id) + 1 FROM organizers").fetchone()[0]
        con.execute("INSERT INTO organizers VALUES (?, ?, ?)", (organizer_id, EDGE_ORGANIZER, region_id))
        event_id = con.execute("SELECT max(event_id) FROM events").fetchone()[0]
        signup_id = con.execute("SELECT max(signup_id) FROM signups").fetchone()[0]
        volunteer_id = con.execute("SELECT min(volunteer_id) FROM volunteers").fetchone()[0]
        histories = [
            [("Scheduled", "2026-02-01 10:00:00"), ("No Show", "2026-11-01 10:00:00")],
            # a tie: the greater signup_status_id wins
            [("Scheduled", "2026-02-01 10:00:00"), ("Completed", "2026-11-01 10:00:00"), ("Cancelled", "2026-11-01 10:00:00")],
            # many changes, the latest is not the last inserted by id order of created_at
            [(s, f"2026-02-0{i + 1} 09:00:00") for i, s in enumerate(["Scheduled", "Confirmed", "Left Msg", "Confirmed", "Cancelled", "Scheduled", "Confirmed", "Completed"])],
            [],  # no status at all: counts only in total_signups
        ]
        for label, local in local_starts.items():
            event_id += 1
            utc = local.replace(tzinfo=zone).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            con.execute("INSERT INTO events VALUES (?, 'Canvass', ?, ?, ?)", (event_id, location_id, organizer_id, utc))
            for history in histories:
                signup_id += 1
                last = history[-1][1] if history else "2026-02-01 10:00:00"
                con.execute("INSERT INTO signups VALUES (?, ?, ?, '2026-02-01 10:00:00', ?)", (signup_id, volunteer_id, event_id, last))
                con.executemany("INSERT INTO signup_statuses (signup_id, status, created_at) VALUES (?, ?, ?)", [(signup_id, s, t) for s, t in history])
                added[signup_id] = (label, history)
    return added


@pytest.mark.parametrize("timezone", ["America/New_York", "Australia/Sydney"])
def test_week_boundaries_time_zones_and_status_ties(tmp_path, timezone):
    project = make_project(tmp_path / "demo", 1_000, timezone=timezone)
    _add_edge_cases(campaign_db(project), timezone)
    run_pipeline(project)
    got = published_rows(project)
    assert_matches_reference(got, flake_rate_weekly(campaign_db(project), timezone=timezone, today=AS_OF))

    edge = {key[0]: row for key, row in got.items() if key[2] == EDGE_ORGANIZER}
    # Friday 23:59 and Saturday 00:00 local fall in different weeks, whatever the UTC date is
    assert set(edge) == {dt.date(2026, 2, 28), dt.date(2026, 3, 7), dt.date(2026, 10, 31)}
    per_event = {"no_show": 1, "cancelled": 1, "completed": 1, "total_signups": 4, "scheduled": 0}
    for week, events in {dt.date(2026, 2, 28): 1, dt.date(2026, 3, 7): 2, dt.date(2026, 10, 31): 2}.items():
        for column, count in per_event.items():
            assert edge[week][column] == count * events, (week, column)
        assert edge[week]["total_flakes"] == 2 * events
        assert edge[week]["flake_rate"] == pytest.approx(0.5)


def _snapshot_name(project) -> str:
    snapshot = open_warehouse(project.root, project.config.warehouse).current_snapshot()
    assert snapshot is not None
    return snapshot.name


@pytest.fixture
def published_demo(tmp_path, warehouse: Target):
    """The demo published once, on each warehouse of the matrix (tests/warehouses.py)."""
    project = warehouse.apply(make_project(tmp_path / "demo", 3_000))
    run_pipeline(project)
    return project


def test_failing_dbt_test_leaves_published_data_as_it_was(published_demo, warehouse: Target):
    project = published_demo
    before, first = warehouse.published_state(project), _snapshot_name(project)
    rows_before = published_rows(project)
    # a status outside the accepted values breaks a dbt test in staging; downstream models must not publish
    execute_source(project, "UPDATE signup_statuses SET status = 'Maybe' WHERE signup_status_id = 1")
    with pytest.raises(RunFailed) as failure:
        run_pipeline(project)
    assert "accepted_values" in failure.value.render()
    assert warehouse.published_state(project) == before
    assert published_rows(project) == rows_before

    db = open_system_db(project)
    try:
        failed = recent_runs(db, project.config.name, 1)[0]
        assert failed.status == "failed" and "accepted_values" in failed.error
        steps = {s.name: s.status for s in get_run(db, project.config.name, failed.id).steps}
        assert steps == {"sync:campaign": "success", "sync:roster": "success", "dbt:build": "failed"}
    finally:
        db.close()

    # fixing the data recovers on the next run, which publishes a new snapshot
    execute_source(project, "UPDATE signup_statuses SET status = 'No Show' WHERE signup_status_id = 1")
    assert run_pipeline(project).run.status == "success"
    assert _snapshot_name(project) != first  # a new snapshot (of the same rows as before the bad data)


def test_broken_model_and_missing_source_leave_published_data(published_demo, warehouse: Target):
    project = published_demo
    before = warehouse.published_state(project)
    model = project.root / "models" / "marts" / "flake_rate_weekly.sql"
    good_sql = model.read_text()
    model.write_text(good_sql.replace("total_signups,\n    cast", "total_signups,\n    no_such_column,\n    cast"))
    with pytest.raises(RunFailed, match="dbt build failed"):
        run_pipeline(project)
    assert warehouse.published_state(project) == before

    model.write_text(good_sql)
    campaign_db(project).rename(campaign_db(project).with_suffix(".moved"))
    with pytest.raises(Exception, match="does not exist") as failure:
        run_pipeline(project)
    assert "Fix" in failure.value.render()
    assert warehouse.published_state(project) == before


def test_one_writer_at_a_time(published_demo):
    warehouse = open_warehouse(published_demo.root, published_demo.config.warehouse)
    with warehouse.writer_lock(), pytest.raises(ProjectBusy):
        run_pipeline(published_demo)


def test_readers_keep_reading_while_a_run_publishes(published_demo):
    project = published_demo
    reader = PublishedData(open_warehouse(project.root, project.config.warehouse))
    total = "SELECT sum(total_signups) FROM flake_rate_weekly"
    with reader.cursor() as cur:
        first = cur.execute(total).fetchone()[0]
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_continuously() -> None:
        while not stop.is_set():
            try:
                with reader.cursor() as cur:
                    assert cur.execute(total).fetchone()[0] in (first, first + 1)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                return

    thread = threading.Thread(target=read_continuously)
    thread.start()
    try:
        execute_source(project, "INSERT INTO signups SELECT max(signup_id) + 1, 1, min(event_id), '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM signups")
        run_pipeline(project)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    with reader.cursor() as cur:
        assert cur.execute(total).fetchone()[0] == first + 1
    reader.close()


def test_a_failure_of_the_machine_is_a_failed_run_naming_the_step(tmp_path):
    project = make_project(tmp_path / "demo", 500)
    blocked = project.root / ".headwater" / "warehouse" / "published"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the snapshots folder should be")
    with pytest.raises(RunFailed, match="failed in step publish") as failure:
        run_pipeline(project)
    assert "NotADirectoryError" in failure.value.render() and "published" in failure.value.render()
    db = open_system_db(project)
    try:
        run = recent_runs(db, project.config.name, 1)[0]
        assert run.status == "failed" and "step publish" in run.error
        assert [(s.name, s.status) for s in get_run(db, project.config.name, run.id).steps][-1] == ("publish", "failed")
    finally:
        db.close()


# --- runs killed around publishing, on both warehouses -------------------------------------------------

MART = "flake_rate_weekly"


def _published_mart(project) -> list[tuple]:
    """The mart as the dashboards and exports read it: the current local snapshot (or copy)."""
    reader = PublishedData(open_warehouse(project.root, project.config.warehouse))
    try:
        with reader.cursor() as cur:
            return sorted(cur.execute(f"SELECT * FROM {MART}").fetchall())
    finally:
        reader.close()


def _built_mart(project, warehouse: Target) -> list[tuple]:
    """What dbt built into marts, read through the warehouse's build connection."""
    return sorted(warehouse.query(project.root, f"SELECT * FROM marts.{MART}", settings=project.config.warehouse))


def _bigquery_published_mart(project, warehouse: Target) -> list[tuple]:
    """The mart in the version dataset BigQuery records as current (what the published views read), read as `_built_mart` reads."""
    version = open_warehouse(project.root, project.config.warehouse).current_version()
    assert version is not None, "nothing published in BigQuery"
    return sorted(warehouse.query(project.root, f"SELECT * FROM {version}.{MART}", settings=project.config.warehouse))


def test_runs_killed_at_random_moments_after_dbt_publish_the_old_tables_or_the_new_ones(tmp_path, warehouse: Target):
    """`headwater run`'s attempt process SIGKILLed at a seeded random moment once dbt has finished —
    in the checks, writing the snapshot (PostgreSQL: the dashboards' copy, the swap's transaction),
    switching the pointer, or after the run ended. Each round adds a sign-up first, so the mart dbt
    builds differs from the published one. Readers see the old mart or the new one, never a mix; on
    PostgreSQL the dashboards' copy never runs ahead of `published`, and no staged schema is left; on
    BigQuery the version recorded as current holds the old mart or the new one, and the dashboards'
    copy never runs ahead of it.
    A last run, not killed, publishes what dbt built, and raw equals the source."""
    project = warehouse.apply(make_project(tmp_path / "demo", 500))
    assert run_pipeline(project).run.status == "success"
    seed = random_seed(default=20261208)
    rng = thread_rng(seed, "kills")
    landed: list[tuple] = []
    with telling_the_seed(seed):
        for round_ in range(2):  # each round is a whole run (sync, dbt) before its kill: ~9 s on two cores
            old_local = _published_mart(project)
            old_pg = checksum(warehouse.url, "published", MART) if warehouse.postgres else None
            old_bq = _bigquery_published_mart(project, warehouse) if warehouse.bigquery else None
            execute_source(project, "INSERT INTO signups SELECT max(signup_id) + 1, 1, min(event_id), '2026-03-01 00:00:00', '2026-03-01 00:00:00' FROM signups")
            command = [sys.executable, "-m", "headwater.orchestrate.child", str(project.root), "flake_rate", "cli", "1", "30", "--show-log"]
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
            lines = OutputLines(child)
            try:
                lines.wait_for("Done. PASS=", 120)  # dbt has built the new mart
                delay = rng.uniform(0, 0.6)
                time.sleep(delay)  # the kill's random moment: the behaviour under test
                alive = child.poll() is None
                child.send_signal(signal.SIGKILL)
                child.wait()
            finally:
                child.kill()
                child.wait()
            new = _built_mart(project, warehouse)
            assert new != old_local, "the round's sign-up changed nothing: the test would prove little"
            local = _published_mart(project)
            local_is = "old" if local == old_local else "new" if local == new else None
            landed.append((round_, f"{delay:.3f}s", "killed" if alive else "had ended", local_is))
            assert local_is is not None, f"round {round_}: the dashboards' data is neither the old mart nor the new one: {landed[-1]}\n{lines.text()[-3000:]}"
            if warehouse.postgres:
                assert warehouse.url is not None
                pg = checksum(warehouse.url, "published", MART)
                pg_is = {old_pg: "old", checksum(warehouse.url, "marts", MART): "new"}.get(pg)
                assert pg_is is not None, f"round {round_}: published is neither the old table nor the new one: {landed[-1]}"
                assert (pg_is, local_is) != ("old", "new"), f"round {round_}: the dashboards show what PostgreSQL never published: {landed[-1]}"
                assert [r[0] for r in pg_rows(warehouse.url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'published%' ORDER BY 1")][:1] == ["published"]
                assert not pg_rows(warehouse.url, "SELECT 1 FROM pg_namespace WHERE nspname = 'published__next'"), f"round {round_}: a staged schema was left behind"
            if warehouse.bigquery:  # the version BigQuery records as current holds the old mart or the new one
                bq = _bigquery_published_mart(project, warehouse)
                bq_is = "old" if bq == old_bq else "new" if bq == new else None
                assert bq_is is not None, f"round {round_}: BigQuery's current version is neither the old mart nor the new one: {landed[-1]}"
                assert (bq_is, local_is) != ("old", "new"), f"round {round_}: the dashboards show what BigQuery never recorded as published: {landed[-1]}"

        assert run_pipeline(project, wait_for_lock=30).run.status == "success"  # a killed run's lock goes with its process
        assert _published_mart(project) == _built_mart(project, warehouse)
        source = sqlite3.connect(campaign_db(project))
        try:
            want = sorted(source.execute("SELECT signup_id, event_id FROM signups").fetchall())
        finally:
            source.close()
        assert sorted(warehouse.query(project.root, "SELECT signup_id, event_id FROM raw_campaign.signups", settings=project.config.warehouse)) == want
    print("kills (round, moment, child, dashboards' data):", landed)
