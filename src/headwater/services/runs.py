"""Run history: runs with their steps and check results, log pages, sync and check history.

Every query returns frozen records (`RunRecord`, `StepRecord`, `CheckRecord`, `LogLine`), read in
one session and detached from it, so a front end can render them after the session is closed and
never lazy-loads from the system database. `run_json` is the one machine-readable form of a run
(`headwater runs --json`, `headwater run --json`); `log_text` the one printed form of a log line
(`headwater logs`, the run page), which always goes through `headwater.redact`."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from headwater.redact import redact
from headwater.system import CheckResult, Run, RunLog, RunStep, SystemDB

MAX_ID = 2**63 - 1  # the largest id a database stores: a larger number (from a URL) is no run at all


@dataclass(frozen=True)
class StepRecord:
    id: int
    position: int
    name: str  # sync:campaign | dbt:build | publish
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    rows: int | None
    detail: str | None  # JSON: per-table / per-model figures
    error: str | None

    @property
    def duration(self) -> dt.timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None

    @classmethod
    def of(cls, step: RunStep) -> StepRecord:
        return cls(step.id, step.position, step.name, step.status, step.started_at, step.finished_at, step.rows, step.detail, step.error)


@dataclass(frozen=True)
class CheckRecord:
    id: int
    name: str
    kind: str  # dbt_test | reconcile | freshness
    status: str  # pass | fail | warn | error
    severity: str
    observed: str | None
    expected: str | None
    message: str | None
    sample: str | None  # JSON: {"columns": [...], "rows": [[...]]}

    @classmethod
    def of(cls, check: CheckResult) -> CheckRecord:
        return cls(check.id, check.name, check.kind, check.status, check.severity, check.observed, check.expected, check.message, check.sample)


@dataclass(frozen=True)
class RunRecord:
    id: int
    project: str
    pipeline: str
    status: str  # running | success | failed | abandoned
    trigger: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    rows_synced: int | None
    snapshot: str | None
    error: str | None
    pid: int | None
    attempt: int
    steps: tuple[StepRecord, ...]
    checks: tuple[CheckRecord, ...]

    @property
    def duration(self) -> dt.timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None

    @classmethod
    def of(cls, run: Run) -> RunRecord:
        """The record of a run whose steps and checks were loaded with it (`_WITH_PARTS`)."""
        return cls(
            run.id, run.project, run.pipeline, run.status, run.trigger, run.started_at, run.finished_at, run.rows_synced, run.snapshot, run.error, run.pid, run.attempt or 1,
            tuple(StepRecord.of(s) for s in run.steps), tuple(CheckRecord.of(c) for c in run.checks),
        )  # fmt: skip


@dataclass(frozen=True)
class LogLine:
    id: int
    at: dt.datetime
    level: str
    message: str  # already redacted

    @property
    def text(self) -> str:
        return log_text(self)

    @classmethod
    def of(cls, line: RunLog) -> LogLine:
        return cls(line.id, line.at, line.level, redact(line.message))


# --- the printed and JSON forms ------------------------------------------------------------------


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run as programs read it (`headwater runs --json`, `headwater run --json`)."""
    return {
        "id": run.id,
        "pipeline": run.pipeline,
        "status": run.status,
        "trigger": run.trigger,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": round(run.duration.total_seconds(), 3) if run.duration else None,
        "rows_synced": run.rows_synced,
        "snapshot": run.snapshot,
        "attempt": run.attempt,
        "error": run.error,
    }


LEVEL_AT = slice(9, 14)  # where log_text puts the level: after "HH:MM:SS ", right-aligned in 5


def log_text(line: LogLine) -> str:
    """A log line as `headwater logs` and the run page print it: UTC time, level, redacted message.
    Redacting here as well as when the line was recorded catches values that became secrets later."""
    return f"{line.at.astimezone(dt.UTC):%H:%M:%S} {line.level:>5} {redact(line.message)}"


def published_tables(run: RunRecord | None) -> dict[str, int]:
    """Rows per table a publish step wrote — a successful one, or one that failed after the warehouse
    committed (`HeadwaterError.published`); {} when the run published nothing."""
    for step in run.steps if run else ():
        if step.name == "publish" and step.detail:
            return dict(json.loads(step.detail)["tables"])
    return {}


def table_stats(detail: str | None) -> list[dict[str, Any]]:
    """A sync step's per-table figures: [{table, rows, seconds, mode, quarantined?}], [] if unreadable."""
    try:
        items = json.loads(detail) if detail else []
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and "table" in item]


# --- queries -------------------------------------------------------------------------------------

_WITH_PARTS = (selectinload(Run.steps), selectinload(Run.checks))


def recent_runs(db: SystemDB, project: str, limit: int = 20, *, pipeline: str | None = None, status: str | None = None) -> list[RunRecord]:
    """The project's newest runs, newest first; only one pipeline's, or only those with a status, when asked."""
    query = select(Run).where(Run.project == project).order_by(Run.id.desc()).limit(limit).options(*_WITH_PARTS)
    if pipeline is not None:
        query = query.where(Run.pipeline == pipeline)
    if status is not None:
        query = query.where(Run.status == status)
    with db.session() as session:
        return [RunRecord.of(run) for run in session.scalars(query)]


def get_run(db: SystemDB, project: str, run_id: int) -> RunRecord | None:
    if not 0 < run_id <= MAX_ID:
        return None
    with db.session() as session:
        run = session.scalars(select(Run).where(Run.project == project, Run.id == run_id).options(*_WITH_PARTS)).first()
        return RunRecord.of(run) if run else None


def log_lines(db: SystemDB, run_id: int, after_id: int = 0, limit: int | None = None) -> list[LogLine]:
    """A run's log lines with an id above ``after_id`` (the cursor: the last id shown), oldest first."""
    query = select(RunLog).where(RunLog.run_id == run_id, RunLog.id > after_id).order_by(RunLog.id)
    if limit is not None:
        query = query.limit(limit)
    with db.session() as session:
        return [LogLine.of(line) for line in session.scalars(query)]


@dataclass(frozen=True)
class LogPage:
    run: RunRecord
    lines: list[LogLine]
    last_id: int  # the cursor for the next page
    more: bool  # lines beyond this page are already there


def log_page(db: SystemDB, project: str, run_id: int, after_id: int, size: int) -> LogPage | None:
    """At most ``size`` log lines after ``after_id`` and the run as it is now; None: no such run here."""
    run = get_run(db, project, run_id)
    if run is None:
        return None
    lines = log_lines(db, run_id, after_id, size + 1)
    shown = lines[:size]
    return LogPage(run, shown, shown[-1].id if shown else after_id, len(lines) > size)


@dataclass(frozen=True)
class SyncRecord:
    """One `sync:<source>` step and the run it belongs to."""

    step: StepRecord
    run: RunRecord

    @property
    def tables(self) -> list[dict[str, Any]]:
        return table_stats(self.step.detail)


def sync_history(db: SystemDB, project: str, source: str, limit: int, *, successful: bool = False) -> list[SyncRecord]:
    """The newest ``sync:<source>`` steps of the project's runs, newest first."""
    query = (
        select(RunStep, Run)
        .join(Run, Run.id == RunStep.run_id)
        .where(Run.project == project, RunStep.name == f"sync:{source}")
        .order_by(RunStep.id.desc())
        .limit(limit)
        .options(selectinload(Run.steps), selectinload(Run.checks))
    )
    if successful:
        query = query.where(RunStep.status == "success")
    with db.session() as session:
        return [SyncRecord(StepRecord.of(step), RunRecord.of(run)) for step, run in session.execute(query)]


def latest_check(db: SystemDB, project: str, pipeline: str, kind: str, name: str) -> tuple[CheckRecord, RunRecord] | None:
    """The newest result of one check of a pipeline, with its run; None if it never ran."""
    query = (
        select(CheckResult, Run)
        .join(Run, Run.id == CheckResult.run_id)
        .where(Run.project == project, Run.pipeline == pipeline, CheckResult.kind == kind, CheckResult.name == name)
        .order_by(CheckResult.id.desc())
        .limit(1)
        .options(selectinload(Run.steps), selectinload(Run.checks))
    )
    with db.session() as session:
        found = session.execute(query).first()
        return (CheckRecord.of(found[0]), RunRecord.of(found[1])) if found else None
