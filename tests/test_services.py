"""The run-history service (`headwater.services.runs`) on its own: the records both front ends
render, the one JSON form of a run, the redacting log-line format, and the log cursor. The pages
and commands built on it are tested in test_ops.py, test_web.py and test_cli.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.services import describe, runs
from headwater.system import CheckResult, Run, RunLog, RunStep, SystemDB

T0 = dt.datetime(2024, 5, 6, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SystemDB]:
    system = SystemDB(f"sqlite:///{tmp_path / 'system.db'}")
    yield system
    system.close()


def add_run(db: SystemDB, *, project: str = "p", pipeline: str = "daily", status: str = "success", logs: tuple[str, ...] = (), error: str | None = None) -> int:
    with db.session() as session:
        finished = None if status == "running" else T0 + dt.timedelta(seconds=12.3456)
        run = Run(project=project, pipeline=pipeline, status=status, trigger="cli", started_at=T0, finished_at=finished, rows_synced=42, snapshot="run-000001.duckdb", error=error, attempt=2)
        session.add(run)
        session.flush()
        session.add(RunStep(run_id=run.id, position=2, name="publish", status="success", started_at=T0, finished_at=T0 + dt.timedelta(seconds=1), detail=json.dumps({"tables": {"mart": 7}})))
        session.add(RunStep(run_id=run.id, position=1, name="sync:crm", status="success", started_at=T0, finished_at=T0 + dt.timedelta(seconds=2), rows=42, detail=json.dumps([{"table": "people", "rows": 42, "quarantined": 3}])))
        session.add(CheckResult(run_id=run.id, name="fresh", kind="freshness", status="pass", severity="error", observed="1h"))
        for n, message in enumerate(logs):
            session.add(RunLog(run_id=run.id, at=T0 + dt.timedelta(seconds=n), level="info", message=message))
        session.commit()
        return run.id


def test_run_json_keeps_every_key_and_value(db: SystemDB) -> None:
    run = runs.get_run(db, "p", add_run(db, error="boom"))
    assert run is not None
    assert runs.run_json(run) == {
        "id": run.id,
        "pipeline": "daily",
        "status": "success",
        "trigger": "cli",
        "started_at": "2024-05-06T09:00:00+00:00",
        "finished_at": "2024-05-06T09:00:12.345600+00:00",
        "duration_seconds": 12.346,
        "rows_synced": 42,
        "snapshot": "run-000001.duckdb",
        "attempt": 2,
        "error": "boom",
    }


def test_a_run_record_is_frozen_and_holds_its_steps_in_order_and_its_checks(db: SystemDB) -> None:
    run = runs.get_run(db, "p", add_run(db))
    assert run is not None
    assert [s.name for s in run.steps] == ["sync:crm", "publish"]
    assert [c.name for c in run.checks] == ["fresh"]
    assert runs.published_tables(run) == {"mart": 7}
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "failed"  # type: ignore[misc]


def test_runs_of_another_project_or_out_of_range_ids_are_not_found(db: SystemDB) -> None:
    run_id = add_run(db, project="other")
    assert runs.get_run(db, "p", run_id) is None
    assert runs.get_run(db, "p", 0) is None and runs.get_run(db, "p", runs.MAX_ID + 1) is None
    assert runs.log_page(db, "p", run_id, 0, 10) is None


def test_recent_runs_filter_by_pipeline_and_status_newest_first(db: SystemDB) -> None:
    first = add_run(db)
    add_run(db, pipeline="hourly")
    third = add_run(db, status="failed")
    assert [r.id for r in runs.recent_runs(db, "p", pipeline="daily")] == [third, first]
    assert [r.id for r in runs.recent_runs(db, "p", 1, pipeline="daily", status="success")] == [first]


def test_log_lines_are_redacted_and_printed_in_one_form(db: SystemDB) -> None:
    run_id = add_run(db, logs=("connecting to postgresql://etl:Hunter2Secret@db/crm",))
    (line,) = runs.log_lines(db, run_id)
    assert "Hunter2Secret" not in line.message
    assert runs.log_text(line) == line.text == "09:00:00  info connecting to postgresql://etl:***@db/crm"
    assert runs.log_text(line)[runs.LEVEL_AT] == " info"


def test_the_log_cursor_pages_through_the_lines(db: SystemDB) -> None:
    run_id = add_run(db, status="running", logs=tuple(f"line {n}" for n in range(1, 6)))
    page = runs.log_page(db, "p", run_id, 0, 2)
    assert page is not None and [line.message for line in page.lines] == ["line 1", "line 2"] and page.more
    page = runs.log_page(db, "p", run_id, page.last_id, 10)
    assert page is not None and [line.message for line in page.lines] == ["line 3", "line 4", "line 5"] and not page.more
    last = runs.log_page(db, "p", run_id, page.last_id, 10)
    assert last is not None and last.lines == [] and last.last_id == page.last_id and last.run.status == "running"


def test_sync_history_and_the_latest_check(db: SystemDB) -> None:
    run_id = add_run(db)
    (sync,) = runs.sync_history(db, "p", "crm", 5)
    assert sync.run.id == run_id and sync.step.rows == 42 and sync.tables == [{"table": "people", "rows": 42, "quarantined": 3}]
    assert describe.quarantined(sync.tables) == 3
    found = runs.latest_check(db, "p", "daily", "freshness", "fresh")
    assert found is not None and found[0].observed == "1h" and found[1].id == run_id
    assert runs.latest_check(db, "p", "hourly", "freshness", "fresh") is None
